#ifndef CHIJACKLAB_H
#define CHIJACKLAB_H

#include <spawn.h>
#include <stdint.h>

#include "hl_early.h"
#include "hl_exec.h"
#include "hl_guest.h"
#include "hl_interrupt.h"
#include "hl_launch.h"
#include "hl_sockdiag.h"
#include "hl_spawn.h"

/// The symbolic name of an errno value ("EADDRINUSE"), or NULL when glibc has none.
const char *hl_errno_name(int code);

/// Moves the calling thread into a new, empty network namespace. Returns 0 or -1 with errno.
int hl_unshare_net(void);

/// Moves the calling thread into the network namespace behind `fd`. Returns 0 or -1 with errno.
int hl_setns_net(int fd);

/// Asks the kernel to send `signal` to this process when its parent thread exits.
int hl_set_parent_death_signal(int signal);

/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants (a server's init, once its launcher
/// is gone) come to this process, which reaps them instead of leaving them to the host's init.
int hl_set_child_subreaper(void);

/// pipe2(O_CLOEXEC): no child spawned by another thread can inherit either end.
int hl_pipe_cloexec(int fds[2]);

/// pidfd_open(2): a descriptor that polls readable once process `pid` has exited.
int hl_pidfd_open(int pid);

/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34+, hidden behind _GNU_SOURCE): the
/// child closes every descriptor from `from` up, whatever the parent left without O_CLOEXEC.
int hl_spawn_close_from(posix_spawn_file_actions_t *actions, int from);

/// The calling thread's capability sets, as 64-bit masks (bit n is capability n). 0 or -1 with errno.
int hl_capget(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable);

/// Sets the calling thread's capability sets. 0 or -1 with errno.
int hl_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable);

/// 1 if `capability` is in the bounding set, 0 if not, -1 with errno (EINVAL past the last one).
int hl_capbset_read(int capability);

/// Removes `capability` from the bounding set (needs CAP_SETPCAP). 0 or -1 with errno.
int hl_capbset_drop(int capability);

/// Empties the ambient set. 0 or -1 with errno.
int hl_cap_ambient_clear_all(void);

/// Adds `capability` (permitted and inheritable already) to the ambient set. 0 or -1 with errno.
int hl_cap_ambient_raise(int capability);

/// PR_SET_NO_NEW_PRIVS: no later execve can grant privileges (setuid bits, file capabilities). 0 or -1 with errno.
int hl_set_no_new_privs(void);

#endif
