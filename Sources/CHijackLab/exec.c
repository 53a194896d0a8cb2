#define _GNU_SOURCE
#include "hl_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

int hl_exec_sibling(const char *name, char *const argv[]) {
    char path[PATH_MAX + 1];
    ssize_t length = readlink("/proc/self/exe", path, PATH_MAX);
    if (length <= 0) return -1;
    /* A full buffer may be a cut path: never exec relative to a folder that is not ours. */
    if (length >= PATH_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    path[length] = 0;
    char *slash = strrchr(path, '/');
    if (slash == NULL) {
        errno = ENOENT;
        return -1;
    }
    if (slash == path) slash++;
    *slash = 0;
    int folder = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (folder < 0) return -1;
    syscall(SYS_execveat, folder, name, argv, environ, 0);
    int saved = errno;
    close(folder);
    errno = saved;
    return -1;
}
