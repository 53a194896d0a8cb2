#ifndef HL_SPAWN_H
#define HL_SPAWN_H

#include <sys/types.h>

/// Starts `path` (argv, envp) with `in`, `out` and `err` as its fds 0-2 (`err` -1: this
/// process's stderr) and nothing else open, under a supervisor: a forked copy of this process
/// that never execs, leads the new process group, and is the program's parent. The kernel sends
/// the supervisor SIGTERM when the thread that called this exits, the whole process's death
/// (SIGKILL included) among them (PR_SET_PDEATHSIG; getppid() after it closes the race with a
/// parent that died first); the supervisor then SIGKILLs its group: the program and whatever
/// the program started (dpkg-deb's tar, tar's xz), not only the child. A program that exits
/// makes the supervisor exit with the same status, or die of the same signal (without a core).
///
/// The caller must keep the calling thread alive while the child runs, as a synchronous
/// spawn, read and reap on one thread does. Returns 0 with `*pid` the supervisor's pid (the
/// group's id), or an errno (the exec's own, when the program could not be started).
int hl_spawn_dying_with_parent(pid_t *pid, const char *path, char *const argv[], char *const envp[], int in, int out, int err);

#endif
