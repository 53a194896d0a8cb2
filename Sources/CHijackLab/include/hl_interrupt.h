#ifndef HL_INTERRUPT_H
#define HL_INTERRUPT_H

// The runner's children and what a SIGINT or SIGTERM does to them. It lives in C because the
// handler must be async-signal-safe: no lock, no allocation, no thread. A guard that needed a
// thread (as a Dispatch signal source does) hung when the process limit was used up.

/// Records a child that leads its own process group. Returns 0, or -1 when the table is full
/// (the caller then kills the child itself). A child added after the kill-all is killed at once.
int hl_children_add(int pid);

/// Forgets a child before it is reaped; returns only when no kill-all is scanning the table,
/// so a pid that is reaped and reused afterwards can never be signalled by mistake.
void hl_children_remove(int pid);

/// SIGKILL to every recorded group, and to every group added from now on. Returns how many
/// groups were signalled.
int hl_children_kill_all(void);

/// Installs the SIGINT and SIGTERM handler (once): it kills every child group, says so on
/// stderr and ends the process with 128 + the signal. Returns 0 or -1 with errno.
int hl_interrupt_install(void);

/// The signal that is ending the process, or 0.
int hl_interrupt_signal(void);

/// Records a temp file that the signal handler unlinks if the process goes down before the
/// file is renamed into place. Returns a slot for hl_temporary_remove, or -1 (table full).
int hl_temporary_add(const char *path);
void hl_temporary_remove(int slot);

/// Brackets the renames that publish a run's files: a signal that arrives in between waits
/// until the last hl_commit_end, so that the files are all old or all new. Only renames belong
/// inside: nothing that can block. hl_commit_begin returns 0, or non-zero when the process is
/// already going down (publish nothing then). Several publishers may be inside at once.
int hl_commit_begin(void);
void hl_commit_end(void);

#endif
