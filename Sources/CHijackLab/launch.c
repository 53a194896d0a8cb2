#define _GNU_SOURCE
#include "hl_launch.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* In the child, before exec: say which step failed, and end. Only async-signal-safe calls. */
static void fail(int report_fd, const char *step) {
    int code = errno;
    char line[128];
    int length = snprintf(line, sizeof line, "failed %s %d\n", step, code);
    if (length > 0) (void)!write(report_fd, line, (size_t)length);
    _exit(127);
}

/* The parent-death signal, and a check that the parent did not die before it was set. The
   parent is outside the child's PID namespace, where getppid() says 0 whatever happens, so the
   check is a pipe whose write end only the parent holds: a hang-up means the parent is gone. */
static void die_with(int alive_fd, int report_fd) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail(report_fd, "prctl(PR_SET_PDEATHSIG)");
    struct pollfd parent = { .fd = alive_fd, .events = POLLIN };
    if (poll(&parent, 1, 0) != 0) _exit(127);
}

int hl_launch(int netns_fd, int uid, int gid, const char *dir, const char *log_path, const char *program,
              char *const argv[], char *const envp[], int report_fd, const char **step) {
    *step = "setns(CLONE_NEWNET)";
    if (setns(netns_fd, CLONE_NEWNET) != 0) return -1;
    *step = "unshare(CLONE_NEWPID)";
    if (unshare(CLONE_NEWPID) != 0) return -1;
    int alive[2];
    *step = "pipe2";
    if (pipe2(alive, O_CLOEXEC) != 0) return -1;
    *step = "fork";
    pid_t child = fork();
    if (child < 0) return -1;
    if (child == 0) {
        close(alive[1]);
        /* The report goes on its own descriptor, closed by the exec: fd 1 becomes the log. */
        report_fd = fcntl(report_fd, F_DUPFD_CLOEXEC, 3);
        if (report_fd < 0) _exit(127);
        die_with(alive[0], report_fd);
        if (chdir(dir) != 0) fail(report_fd, "chdir");
        int input = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (input < 0) fail(report_fd, "open(/dev/null)");
        int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log < 0) fail(report_fd, "open(log)");
        if (dup2(input, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0) fail(report_fd, "dup2");
        if (uid != -1) {
            if (setgroups(0, NULL) != 0) fail(report_fd, "setgroups(0)");
            if (setgid((gid_t)gid) != 0) fail(report_fd, "setgid");
            if (setuid((uid_t)uid) != 0) fail(report_fd, "setuid");
            if (getuid() != (uid_t)uid || geteuid() != (uid_t)uid || getgid() != (gid_t)gid) {
                errno = EPERM;
                fail(report_fd, "setuid");
            }
            /* A change of uid clears the parent-death signal. */
            die_with(alive[0], report_fd);
        }
        execve(program, argv, envp);
        fail(report_fd, "execve");
    }
    close(alive[0]);
    char line[64];
    int length = snprintf(line, sizeof line, "pid %d\n", (int)child);
    if (length > 0) (void)!write(report_fd, line, (size_t)length);
    int status = 0;
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    return status;
}
