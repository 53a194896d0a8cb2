#ifndef HL_EXEC_H
#define HL_EXEC_H

/// Replaces this process with `name` from the folder of its own executable, found by the
/// bytes of /proc/self/exe: the folder is opened by those bytes and `name` exec'd relative to
/// it (execveat), so no decoded and re-encoded path ever names what runs. A folder whose
/// name is not UTF-8 works like any other. Returns only on failure: -1 with errno.
int hl_exec_sibling(const char *name, char *const argv[]);

#endif
