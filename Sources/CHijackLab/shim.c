#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "CHijackLab.h"

const char *hl_errno_name(int code) { return strerrorname_np(code); }

int hl_unshare_net(void) { return unshare(CLONE_NEWNET); }

int hl_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }

int hl_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0, 0, 0); }

int hl_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int hl_pidfd_open(int pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int hl_private_hosts_file(const char *content_path) {
    if (unshare(CLONE_NEWNS) == -1) return -1;
    /* Private propagation, so the bind mount below never shows outside this namespace. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == -1) return -1;
    return mount(content_path, "/etc/hosts", NULL, MS_BIND, NULL);
}
