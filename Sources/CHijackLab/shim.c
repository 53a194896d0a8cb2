#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sched.h>
#include <string.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "CHijackLab.h"

const char *hl_errno_name(int code) { return strerrorname_np(code); }

int hl_unshare_net(void) { return unshare(CLONE_NEWNET); }

int hl_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }

int hl_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0, 0, 0); }

int hl_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int hl_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int hl_pidfd_open(int pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int hl_spawn_close_from(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

/* Raw capget/capset with the 64-bit (version 3) layout: two 32-bit words per set. */
int hl_capget(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &header, data) == -1) return -1;
    *effective = (uint64_t)data[1].effective << 32 | data[0].effective;
    *permitted = (uint64_t)data[1].permitted << 32 | data[0].permitted;
    *inheritable = (uint64_t)data[1].inheritable << 32 | data[0].inheritable;
    return 0;
}

int hl_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {
        { .effective = (uint32_t)effective, .permitted = (uint32_t)permitted, .inheritable = (uint32_t)inheritable },
        { .effective = (uint32_t)(effective >> 32), .permitted = (uint32_t)(permitted >> 32), .inheritable = (uint32_t)(inheritable >> 32) },
    };
    return (int)syscall(SYS_capset, &header, data);
}

int hl_capbset_read(int capability) { return prctl(PR_CAPBSET_READ, (unsigned long)capability, 0, 0, 0); }

int hl_capbset_drop(int capability) { return prctl(PR_CAPBSET_DROP, (unsigned long)capability, 0, 0, 0); }

int hl_cap_ambient_clear_all(void) { return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); }

int hl_cap_ambient_raise(int capability) { return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, (unsigned long)capability, 0, 0); }

int hl_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }
