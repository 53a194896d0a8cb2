#define _GNU_SOURCE
#include "hl_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// Between the forks and the exec only async-signal-safe calls: the process that forked has
// other threads, whose locks the copies inherit held. _Fork runs no atfork handlers.

static void close_from(int first, int last) {
    if (first > last) return;
    if (syscall(SYS_close_range, (unsigned)first, (unsigned)last, 0) == 0) return;
    int limit = last < 65536 ? last : 65536;
    for (int fd = first; fd <= limit; fd++) close(fd);
}

static void report_and_exit(int report, int code) {
    ssize_t ignored = write(report, &code, sizeof code);
    (void)ignored;
    _exit(127);
}

// Moves the three descriptors above 2 first, so that one of them being 0, 1 or 2 cannot be
// overwritten by another's dup2.
static int place_standard(int in, int out, int err, int report) {
    int sources[3] = {in, out, err};
    for (int index = 0; index < 3; index++) {
        if (sources[index] < 0) continue;
        int moved = fcntl(sources[index], F_DUPFD_CLOEXEC, 3);
        if (moved < 0) return errno;
        sources[index] = moved;
    }
    for (int index = 0; index < 3; index++) {
        if (sources[index] >= 0 && dup2(sources[index], index) < 0) return errno;
    }
    // Everything else goes, the exec-error pipe excepted (close-on-exec: it goes at the exec).
    close_from(3, report - 1);
    close_from(report + 1, ~0U >> 1);
    return 0;
}

static void default_signals(void) {
    struct sigaction action = {0};
    action.sa_handler = SIG_DFL;
    sigemptyset(&action.sa_mask);
    for (int signal = 1; signal < NSIG; signal++) {
        if (signal == SIGKILL || signal == SIGSTOP) continue;
        sigaction(signal, &action, NULL);
    }
}

static void run_program(const char *path, char *const argv[], char *const envp[], int in, int out, int err, int report, pid_t supervisor) {
    // The supervisor is this program's parent; should it go, so does the program.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != supervisor) report_and_exit(report, ECHILD);
    int failed = place_standard(in, out, err, report);
    if (failed != 0) report_and_exit(report, failed);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(path, argv, envp);
    report_and_exit(report, errno);
}

static void supervise(const char *path, char *const argv[], char *const envp[], int in, int out, int err, int report, pid_t parent) {
    setpgid(0, 0);
    default_signals();
    // Every signal stays blocked here: the ones it waits for are taken with sigwaitinfo.
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) report_and_exit(report, errno);
    // The parent may have died before the prctl, and then no signal would come.
    if (getppid() != parent) report_and_exit(report, ESRCH);
    pid_t supervisor = getpid();
    pid_t program = _Fork();
    if (program < 0) report_and_exit(report, errno);
    if (program == 0) run_program(path, argv, envp, in, out, err, report, supervisor);
    // Nothing of the parent's stays open here: not the program's pipes, whose EOF the parent
    // waits for, nor any other thread's.
    close_from(0, ~0U >> 1);
    sigset_t awaited;
    sigemptyset(&awaited);
    sigaddset(&awaited, SIGCHLD);
    sigaddset(&awaited, SIGTERM);
    sigaddset(&awaited, SIGINT);
    sigaddset(&awaited, SIGHUP);
    for (;;) {
        siginfo_t info;
        int signal = sigwaitinfo(&awaited, &info);
        if (signal < 0) continue;
        if (signal != SIGCHLD) {
            // The parent is gone (or someone asked this group to end): the whole group dies.
            kill(0, SIGKILL);
            _exit(137);
        }
        int status = 0;
        pid_t done = waitpid(program, &status, WNOHANG);
        if (done != program) continue;
        if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
        int cause = WTERMSIG(status);
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        sigset_t only;
        sigemptyset(&only);
        sigaddset(&only, cause);
        kill(getpid(), cause);
        sigprocmask(SIG_UNBLOCK, &only, NULL);
        _exit(128 + cause);
    }
}

int hl_spawn_dying_with_parent(pid_t *pid, const char *path, char *const argv[], char *const envp[], int in, int out, int err) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t parent = getpid();
    pid_t supervisor = _Fork();
    if (supervisor == 0) {
        close(report[0]);
        supervise(path, argv, envp, in, out, err, report[1], parent);
    }
    int forked = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(report[1]);
    if (supervisor < 0) {
        close(report[0]);
        return forked;
    }
    int code = 0;
    ssize_t count;
    do { count = read(report[0], &code, sizeof code); } while (count < 0 && errno == EINTR);
    close(report[0]);
    if (count == (ssize_t)sizeof code) {
        int status;
        while (waitpid(supervisor, &status, 0) < 0 && errno == EINTR) {}
        return code == 0 ? EIO : code;
    }
    *pid = supervisor;
    return 0;
}
