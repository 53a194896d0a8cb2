#ifndef CHIJACKLAB_H
#define CHIJACKLAB_H

#include "hl_interrupt.h"

/// The symbolic name of an errno value ("EADDRINUSE"), or NULL when glibc has none.
const char *hl_errno_name(int code);

/// Moves the calling thread into a new, empty network namespace. Returns 0 or -1 with errno.
int hl_unshare_net(void);

/// Moves the calling thread into the network namespace behind `fd`. Returns 0 or -1 with errno.
int hl_setns_net(int fd);

/// Asks the kernel to send `signal` to this process when its parent thread exits.
int hl_set_parent_death_signal(int signal);

/// pipe2(O_CLOEXEC): no child spawned by another thread can inherit either end.
int hl_pipe_cloexec(int fds[2]);

/// pidfd_open(2): a descriptor that polls readable once process `pid` has exited.
int hl_pidfd_open(int pid);

/// Gives the calling thread a private mount namespace in which `content_path` is bind-mounted
/// over /etc/hosts: the lab host's own hosts file. Returns 0 or -1 with errno.
int hl_private_hosts_file(const char *content_path);

#endif
