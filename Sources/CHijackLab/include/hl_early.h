#ifndef HL_EARLY_H
#define HL_EARLY_H

// Work that must happen before the Swift runtime starts. A static executable's runtime asks
// /proc/self/exe for its own path in a constructor (its backtracer looks for swift-backtrace
// beside it), and Swift's CommandLine reads /proc/self/cmdline: where /proc is not mounted,
// as for a guest's init, the first aborts the process before main and the second sees no
// arguments. A constructor of ours runs first (priority 101, before every default-priority
// constructor), keeps argv as the kernel gave it, and makes /proc unnecessary or present.

/// The process's argc and argv as they reached the first constructor, byte for byte.
int hl_saved_argc(void);
char *const *hl_saved_argv(void);

/// What the first constructor did about a missing /proc, for the init to report: 0 when
/// /proc was there, 1 when it mounted it (pid 1), 2 when it could not and turned the runtime's
/// backtracer off instead; `hl_early_errno` is the errno of the failed step, or 0.
int hl_early_proc_state(void);
int hl_early_errno(void);

#endif
