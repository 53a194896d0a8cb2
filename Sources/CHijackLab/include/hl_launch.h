#ifndef HL_LAUNCH_H
#define HL_LAUNCH_H

/// Starts a real server (issue 22) in the lab: enters the network namespace `netns_fd`, makes
/// a new PID namespace, and forks the server into it as its init (pid 1 there), so that when
/// it dies the kernel kills every process it started (workers, helpers). The child dies with
/// this process (PR_SET_PDEATHSIG, SIGKILL, set again after any change of uid), changes to
/// `dir`, takes `log_path` as its stdout and stderr and /dev/null as its stdin, drops to
/// `uid`/`gid` with no groups when `uid` is not -1, and execs `program`.
///
/// Writes "pid N\n" (the child's pid as this process sees it) to `report_fd` once the child
/// exists; a child that fails before its exec writes "failed STEP ERRNO\n" there instead and
/// exits 127. Then waits for the child. Returns its wait status, or -1 with errno when this
/// process could not start it (setns, unshare, fork), naming the step in `*step`.
int hl_launch(int netns_fd, int uid, int gid, const char *dir, const char *log_path, const char *program,
              char *const argv[], char *const envp[], int report_fd, const char **step);

#endif
