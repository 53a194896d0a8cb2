#include "hl_interrupt.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define HL_MAX_CHILDREN 4096
#define HL_MAX_TEMPORARIES 16
#define HL_PATH_BYTES 4096

static _Atomic int children[HL_MAX_CHILDREN];
static _Atomic int closed;
static _Atomic int scanning;
/// 0 running, n > 0 publishing (n publishers at once), -1 going down.
static _Atomic int state;
static _Atomic int received;
static _Atomic int deferred;

/// Temp files that a signal must not strand: 0 free, 1 being filled, 2 holds a path.
static _Atomic int temporary_state[HL_MAX_TEMPORARIES];
static char temporary_path[HL_MAX_TEMPORARIES][HL_PATH_BYTES];

int hl_temporary_add(const char *path) {
    size_t length = strlen(path);
    if (length >= HL_PATH_BYTES) return -1;
    for (int slot = 0; slot < HL_MAX_TEMPORARIES; slot++) {
        int free_slot = 0;
        if (atomic_compare_exchange_strong(&temporary_state[slot], &free_slot, 1)) {
            memcpy(temporary_path[slot], path, length + 1);
            atomic_store(&temporary_state[slot], 2);
            return slot;
        }
    }
    return -1;
}

void hl_temporary_remove(int slot) {
    if (slot >= 0 && slot < HL_MAX_TEMPORARIES) atomic_store(&temporary_state[slot], 0);
}

int hl_children_add(int pid) {
    for (int slot = 0; slot < HL_MAX_CHILDREN; slot++) {
        int empty = 0;
        if (atomic_compare_exchange_strong(&children[slot], &empty, pid)) {
            if (atomic_load(&closed)) kill(-pid, SIGKILL);
            return 0;
        }
    }
    return -1;
}

void hl_children_remove(int pid) {
    for (int slot = 0; slot < HL_MAX_CHILDREN; slot++) {
        int expected = pid;
        if (atomic_compare_exchange_strong(&children[slot], &expected, 0)) break;
    }
    while (atomic_load(&scanning) > 0) sched_yield();
}

int hl_children_kill_all(void) {
    int killed = 0;
    atomic_fetch_add(&scanning, 1);
    atomic_store(&closed, 1);
    for (int slot = 0; slot < HL_MAX_CHILDREN; slot++) {
        int pid = atomic_load(&children[slot]);
        if (pid > 0 && kill(-pid, SIGKILL) == 0) killed++;
    }
    atomic_fetch_sub(&scanning, 1);
    return killed;
}

static void go_down(int signal_number) {
    int killed = hl_children_kill_all();
    // A temp file already renamed into place is gone from its old name: unlink fails, harmlessly.
    for (int slot = 0; slot < HL_MAX_TEMPORARIES; slot++) {
        if (atomic_load(&temporary_state[slot]) == 2) unlink(temporary_path[slot]);
    }
    // Only a run that had agents says it killed them (a plain audit --watch has none).
    const char *message = signal_number == SIGINT
        ? (killed > 0 ? "hijack-lab: interrupted by SIGINT; every agent was killed\n" : "hijack-lab: interrupted by SIGINT\n")
        : (killed > 0 ? "hijack-lab: interrupted by SIGTERM; every agent was killed\n" : "hijack-lab: interrupted by SIGTERM\n");
    ssize_t ignored = write(2, message, strlen(message));
    (void)ignored;
    _exit(128 + signal_number);
}

static void on_signal(int signal_number) {
    int saved = errno;
    int expected = 0;
    if (atomic_compare_exchange_strong(&state, &expected, -1)) {
        atomic_store(&received, signal_number);
        go_down(signal_number);
    }
    if (expected > 0) {
        // Renames are under way: they finish, and the last publisher goes down after them.
        int none = 0;
        atomic_compare_exchange_strong(&deferred, &none, signal_number);
    }
    errno = saved;
}

int hl_interrupt_install(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    action.sa_flags = SA_RESTART;
    sigfillset(&action.sa_mask);
    if (sigaction(SIGINT, &action, NULL) == -1) return -1;
    if (sigaction(SIGTERM, &action, NULL) == -1) return -1;
    // A parent may have started us with them blocked (the mask survives exec): Ctrl-C must work.
    sigset_t wanted;
    sigemptyset(&wanted);
    sigaddset(&wanted, SIGINT);
    sigaddset(&wanted, SIGTERM);
    return sigprocmask(SIG_UNBLOCK, &wanted, NULL);
}

int hl_interrupt_signal(void) { return atomic_load(&received); }

int hl_commit_begin(void) {
    for (;;) {
        int current = atomic_load(&state);
        if (current < 0) {
            int signal_number = atomic_load(&received);
            return signal_number != 0 ? signal_number : -1;
        }
        if (atomic_compare_exchange_weak(&state, &current, current + 1)) return 0;
    }
}

void hl_commit_end(void) {
    if (atomic_fetch_sub(&state, 1) != 1) return;
    int pending = atomic_exchange(&deferred, 0);
    if (pending != 0) {
        int expected = 0;
        if (atomic_compare_exchange_strong(&state, &expected, -1)) {
            atomic_store(&received, pending);
            go_down(pending);
        }
    }
}
