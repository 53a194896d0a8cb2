#ifndef HL_SOCKDIAG_H
#define HL_SOCKDIAG_H

#include <stddef.h>
#include <stdint.h>

/// One socket as NETLINK_SOCK_DIAG (or a row of /proc/net) describes it: fixed-size fields
/// only, so that tens of thousands of them cost no allocation each.
struct hl_diag_socket {
    uint64_t inode;
    uint32_t uid;
    /// The interface index of SO_BINDTODEVICE, 0 when unbound.
    uint32_t bound_device;
    /// Host byte order.
    uint16_t local_port;
    uint16_t remote_port;
    /// AF_INET or AF_INET6: how many bytes of `local` and `remote` count (4 or 16).
    uint8_t family;
    /// The kernel's TCP state number (LISTEN is 10; a bound UDP socket is CLOSE, 7).
    uint8_t state;
    /// IPV6_V6ONLY: 1 or 0, or -1 where the kernel did not say (IPv4 sockets, /proc).
    int8_t v6only;
    /// IPPROTO_TCP or IPPROTO_UDP.
    uint8_t protocol;
    /// Network byte order, as in the kernel's socket.
    uint8_t local[16];
    uint8_t remote[16];
};

typedef void (*hl_diag_each)(const struct hl_diag_socket *socket, void *context);

/// One SOCK_DIAG_BY_FAMILY dump (struct inet_diag_req_v2) of `family` (AF_INET, AF_INET6) and
/// `protocol` (IPPROTO_TCP, IPPROTO_UDP) for the sockets whose state bit is in `states`
/// (1 << TCP_LISTEN, ...), in the current network namespace. Calls `each` once per socket.
/// Returns 0, or -1 with errno: the kernel's own error when it has no sock_diag for the
/// protocol (ENOENT), ETIMEDOUT when no answer came within `timeout_ms`, EPROTO for an
/// answer it could not read.
int hl_sock_diag_dump(int family, int protocol, uint32_t states, int timeout_ms, hl_diag_each each, void *context);

/// `command`: the process's /proc/PID/comm as read right after its descriptors (newline and
/// all, NUL-terminated), or NULL where it could not be read.
typedef void (*hl_owner_each)(int pid, uint64_t inode, const char *command, void *context);

/// One pass over /proc/PID/fd of every process: for each descriptor that is a socket whose
/// inode is in `inodes` (sorted ascending), calls `each(pid, inode, command)`, in /proc's order of
/// processes and of their descriptors, on the calling thread. Two threads read the processes
/// (one of them the caller's), and a process of 1,024 descriptors or more splits its own
/// between two; every call of `each` comes after the reading. Returns 1 when every process's descriptors could be
/// read, 0 when some could not (EACCES: another user's, when not root), -1 with errno when
/// /proc itself could not be read.
int hl_socket_owners(const uint64_t *inodes, size_t count, hl_owner_each each, void *context);

/// A socket's options, read with getsockopt from a copy of its owner's descriptor.
struct hl_socket_options {
    /// 1 once read; 0 when no owner of the socket was seen; else -errno of the step that failed
    /// (pidfd_open, pidfd_getfd: EPERM without ptrace access, ENOSYS before Linux 5.6).
    int32_t state;
    int32_t reuse_address;
    int32_t reuse_port;
    /// IPV6_V6ONLY, or -1 for a socket that is not AF_INET6.
    int32_t v6only;
    /// SO_TYPE, SO_PROTOCOL and SO_DOMAIN's values. A `domain` already set (AF_INET or
    /// AF_INET6, as sock_diag reported the socket's family) is kept, and SO_DOMAIN not asked.
    int32_t type;
    int32_t protocol;
    int32_t domain;
    /// SO_BINDTODEVICE's name, empty when unbound (IFNAMSIZ bytes, NUL-terminated).
    char device[16];
};

/// hl_socket_owners, and for each inode also its options in `options[i]` (one per inode, at
/// its position in `inodes`), read from the first of its owners that lets a copy be taken:
/// one pidfd per process (pidfd_open), one pidfd_getfd per descriptor of an inode asked for,
/// the getsockopt calls, and the copy closed at once. The copy is never bound, listened on,
/// read, written or changed. `options` NULL reads none (hl_socket_owners). A `domain` set in
/// `options[i]` on entry is taken as that socket's family, and SO_DOMAIN is then not asked.
int hl_socket_owners_options(const uint64_t *inodes, size_t count, hl_owner_each each, void *context, struct hl_socket_options *options);

/// The options of one descriptor of this process (a test's own socket), as above: 1 or -errno.
int hl_read_socket_options(int fd, struct hl_socket_options *options);

/// Fixes malloc's threshold for serving an allocation by its own mmap at 128 KB, glibc's
/// starting value, which it otherwise raises to the size of each such block freed: then the
/// audit's large arrays, made and dropped phase by phase, stay in the heap and keep their
/// pages. Fixed, each returns its pages when freed (about 3 MB of peak at 50,000 sockets).
/// Returns mallopt's answer: 1 done, 0 not.
int hl_malloc_fix_mmap_threshold(void);

#endif
