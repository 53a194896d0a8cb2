#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include "hl_early.h"

// The prefix the host looks for in a guest's console (GuestBoot): the init's own words.
#define INIT_PREFIX "hijack-lab guest-init: "

static int saved_argc;
static char *const *saved_argv;
static int proc_state;
static int failed_errno;

int hl_saved_argc(void) { return saved_argc; }
char *const *hl_saved_argv(void) { return saved_argv; }
int hl_early_proc_state(void) { return proc_state; }
int hl_early_errno(void) { return failed_errno; }

static int proc_is_mounted(void) {
    char byte;
    return readlink("/proc/self/exe", &byte, 1) > 0;
}

static void say(const char *text) {
    size_t length = strlen(text);
    while (length > 0) {
        ssize_t written = write(2, text, length);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) return;
        text += written;
        length -= (size_t)written;
    }
}

// glibc hands every .init_array function (argc, argv, envp), in a static executable as in a
// dynamic one.
__attribute__((constructor(101)))
static void hl_early_start(int argc, char **argv, char **envp) {
    (void)envp;
    saved_argc = argc;
    saved_argv = argv;
    if (proc_is_mounted()) return;
    if (getpid() == 1) {
        // A fresh initramfs: the kernel gave pid 1 the console as fds 0-2 only if the archive
        // holds /dev/console. Mounting /proc is the init's first job anyway; here it comes
        // before the runtime needs it.
        mkdir("/proc", 0555);
        if (mount("proc", "/proc", "proc", 0, "") == 0 && proc_is_mounted()) {
            proc_state = 1;
            return;
        }
        failed_errno = errno;
        const char *name = strerrorname_np(failed_errno);
        say(INIT_PREFIX "cannot mount /proc before the Swift runtime starts: ");
        say(name ? name : "unknown errno");
        say("; starting without it\n");
    }
    // Without /proc the runtime cannot find swift-backtrace (nor could the backtracer read a
    // crashed process's maps), and looking for it aborts: give it a path so that it does not
    // look, and leave backtracing off, as the runtime itself does when it finds none.
    setenv("SWIFT_BACKTRACE", "enable=no,swift-backtrace=", 1);
    proc_state = 2;
}
