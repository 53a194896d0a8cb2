#include "hl_interrupt.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define HL_MAX_CHILDREN 4096

static _Atomic int children[HL_MAX_CHILDREN];
static _Atomic int closed;
static _Atomic int scanning;
/// 0 running, 1 publishing files, 2 going down.
static _Atomic int state;
static _Atomic int received;
static _Atomic int deferred;

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

void hl_children_kill_all(void) {
    atomic_fetch_add(&scanning, 1);
    atomic_store(&closed, 1);
    for (int slot = 0; slot < HL_MAX_CHILDREN; slot++) {
        int pid = atomic_load(&children[slot]);
        if (pid > 0) kill(-pid, SIGKILL);
    }
    atomic_fetch_sub(&scanning, 1);
}

static void go_down(int signal_number) {
    atomic_store(&received, signal_number);
    hl_children_kill_all();
    const char *message = signal_number == SIGINT
        ? "hijack-lab: interrupted by SIGINT; every agent was killed\n"
        : "hijack-lab: interrupted by SIGTERM; every agent was killed\n";
    ssize_t ignored = write(2, message, strlen(message));
    (void)ignored;
    _exit(128 + signal_number);
}

static void on_signal(int signal_number) {
    int saved = errno;
    int expected = 0;
    if (atomic_compare_exchange_strong(&state, &expected, 2)) go_down(signal_number);
    if (expected == 1) {
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
    return 0;
}

int hl_interrupt_signal(void) { return atomic_load(&received); }

int hl_commit_begin(void) {
    int expected = 0;
    if (atomic_compare_exchange_strong(&state, &expected, 1)) return 0;
    return atomic_load(&received);
}

void hl_commit_end(void) {
    int expected = 1;
    atomic_compare_exchange_strong(&state, &expected, 0);
    int pending = atomic_exchange(&deferred, 0);
    if (pending != 0) {
        expected = 0;
        if (atomic_compare_exchange_strong(&state, &expected, 2)) go_down(pending);
    }
}
