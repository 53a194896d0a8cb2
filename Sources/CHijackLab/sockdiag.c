#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include "hl_sockdiag.h"

static long long monotonic_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* The kernel fills one dump message of at most 32 KB (SKB_WITH_OVERHEAD(32768)); twice that
 * leaves room whatever a later kernel does, and a read never truncates a message. */
enum { answer_size = 65536 };

/* 1 when the answer is complete (NLMSG_DONE), 0 when more follows, -1 with errno. */
static int read_answer(const char *buffer, int length, uint8_t protocol, hl_diag_each each, void *context) {
    for (const struct nlmsghdr *header = (const struct nlmsghdr *)buffer; NLMSG_OK(header, length);
         header = NLMSG_NEXT(header, length)) {
        if (header->nlmsg_type == NLMSG_DONE) return 1;
        if (header->nlmsg_type == NLMSG_ERROR) {
            const struct nlmsgerr *failure = NLMSG_DATA(header);
            errno = header->nlmsg_len >= NLMSG_LENGTH(sizeof *failure) && failure->error < 0 ? -failure->error : EPROTO;
            return -1;
        }
        if (header->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
        if (header->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
            errno = EPROTO;
            return -1;
        }
        const struct inet_diag_msg *message = NLMSG_DATA(header);
        struct hl_diag_socket socket = {
            .inode = message->idiag_inode,
            .uid = message->idiag_uid,
            .bound_device = message->id.idiag_if,
            .local_port = ntohs(message->id.idiag_sport),
            .remote_port = ntohs(message->id.idiag_dport),
            .family = message->idiag_family,
            .state = message->idiag_state,
            .v6only = -1,
            .protocol = protocol,
        };
        size_t size = message->idiag_family == AF_INET6 ? 16 : 4;
        memcpy(socket.local, message->id.idiag_src, size);
        memcpy(socket.remote, message->id.idiag_dst, size);
        /* The kernel adds INET_DIAG_SKV6ONLY to every AF_INET6 socket, unasked. */
        int left = (int)(header->nlmsg_len - NLMSG_LENGTH(sizeof *message));
        for (const struct rtattr *attribute = (const struct rtattr *)(message + 1); RTA_OK(attribute, left);
             attribute = RTA_NEXT(attribute, left)) {
            if (attribute->rta_type == INET_DIAG_SKV6ONLY && RTA_PAYLOAD(attribute) >= 1) {
                socket.v6only = *(const uint8_t *)RTA_DATA(attribute) != 0;
            }
        }
        each(&socket, context);
    }
    return 0;
}

int hl_sock_diag_dump(int family, int protocol, uint32_t states, int timeout_ms, hl_diag_each each, void *context) {
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) return -1;
    struct {
        struct nlmsghdr header;
        struct inet_diag_req_v2 body;
    } request;
    memset(&request, 0, sizeof request);
    request.header.nlmsg_len = sizeof request;
    request.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.header.nlmsg_seq = 1;
    request.body.sdiag_family = (uint8_t)family;
    request.body.sdiag_protocol = (uint8_t)protocol;
    request.body.idiag_states = states;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    char *buffer = malloc(answer_size);
    int result = -1;
    if (buffer == NULL) {
        errno = ENOMEM;
    } else if (sendto(fd, &request, sizeof request, 0, (struct sockaddr *)&kernel, sizeof kernel) == (ssize_t)sizeof request) {
        long long deadline = monotonic_ms() + timeout_ms;
        for (;;) {
            long long left = deadline - monotonic_ms();
            struct pollfd ready = { .fd = fd, .events = POLLIN };
            int polled = left > 0 ? poll(&ready, 1, (int)left) : 0;
            if (polled < 0 && errno == EINTR) continue;
            if (polled == 0) errno = ETIMEDOUT;
            if (polled <= 0) break;
            ssize_t count = recv(fd, buffer, answer_size, 0);
            if (count < 0 && errno == EINTR) continue;
            if (count == 0) errno = EPROTO;
            if (count <= 0) break;
            int state = read_answer(buffer, (int)count, (uint8_t)protocol, each, context);
            if (state != 0) {
                result = state == 1 ? 0 : -1;
                break;
            }
        }
    }
    int saved = errno;
    free(buffer);
    close(fd);
    errno = saved;
    return result;
}

/* The position of `value` in `sorted`, or -1. */
static long position(const uint64_t *sorted, size_t count, uint64_t value) {
    size_t low = 0, high = count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (sorted[middle] < value) low = middle + 1;
        else if (sorted[middle] > value) high = middle;
        else return (long)middle;
    }
    return -1;
}

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static int option(int fd, int level, int name, int32_t *value) {
    int number = 0;
    socklen_t length = sizeof number;
    if (getsockopt(fd, level, name, &number, &length) != 0) return -errno;
    *value = number;
    return 0;
}

int hl_read_socket_options(int fd, struct hl_socket_options *options) {
    int failed;
    if ((failed = option(fd, SOL_SOCKET, SO_REUSEADDR, &options->reuse_address)) != 0) return failed;
    if ((failed = option(fd, SOL_SOCKET, SO_REUSEPORT, &options->reuse_port)) != 0) return failed;
    if ((failed = option(fd, SOL_SOCKET, SO_TYPE, &options->type)) != 0) return failed;
    if ((failed = option(fd, SOL_SOCKET, SO_PROTOCOL, &options->protocol)) != 0) return failed;
    /* The family, where sock_diag gave it, is the socket's own: one call fewer per socket. */
    if (options->domain == 0 && (failed = option(fd, SOL_SOCKET, SO_DOMAIN, &options->domain)) != 0) return failed;
    options->v6only = -1;
    if (options->domain == AF_INET6 && (failed = option(fd, IPPROTO_IPV6, IPV6_V6ONLY, &options->v6only)) != 0) return failed;
    char device[sizeof options->device + 1];
    socklen_t length = sizeof options->device;
    memset(device, 0, sizeof device);
    if (getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device, &length) != 0) return -errno;
    memcpy(options->device, device, sizeof options->device);
    options->device[sizeof options->device - 1] = 0;
    return 1;
}

/* One process's pidfd, opened when its first asked-for socket is found, and closed when the
   scan leaves the process: -1 not yet opened, or -errno when it could not be. */
struct process_pidfd {
    long pid;
    int fd;
};

static void open_pidfd(struct process_pidfd *process) {
    if (process->fd != -1) return;
    int fd = (int)syscall(SYS_pidfd_open, (pid_t)process->pid, 0);
    process->fd = fd >= 0 ? fd : -errno;
}

/* Reads one descriptor's options through a copy; the process's pidfd is already open (or
   failed, its -errno then the answer). */
static void read_copy(const struct process_pidfd *process, int descriptor, struct hl_socket_options *options) {
    if (process->fd < 0) {
        options->state = process->fd;
        return;
    }
    int copy = (int)syscall(SYS_pidfd_getfd, process->fd, descriptor, 0);
    if (copy < 0) {
        options->state = -errno;
        return;
    }
    /* O_CLOEXEC is set on the copy by the kernel; it is closed at once whatever was read. */
    int read = hl_read_socket_options(copy, options);
    close(copy);
    options->state = read;
}

/* One descriptor of a process: its number, the position of its inode among those asked for
   (-1 if none), and the options read from it. `skipped`: not read because another descriptor
   of the same socket was being read or had been (its claim). */
struct entry {
    int fd;
    int skipped;
    long found;
    uint64_t inode;
    struct hl_socket_options read;
};

/* What the scan shares between its threads. `claims` holds one flag per inode asked for: the
   first descriptor to claim an inode reads its options, and gives the claim back when the read
   failed, so that a later owner may try; the rest skip it. Nothing else is written by two
   threads. */
struct scan {
    const uint64_t *inodes;
    size_t count;
    /* Read only while collecting: each inode's family, as the caller set it. */
    const struct hl_socket_options *options;
    atomic_uchar *claims;
};

struct share {
    int folder;
    /* Opened before two threads share it; opened here at the first socket asked for when one
       thread reads the process (`lazy`), so that a process holding none costs no pidfd. */
    struct process_pidfd *process;
    int lazy;
    const struct scan *scan;
    struct entry *entries;
    size_t from, to;
};

/* readlink each descriptor of entries[from..<to], and read the options of those asked for
   that no other descriptor has claimed. Touches only its own entries. */
static void resolve(struct share *share) {
    char name[16], link[64];
    const struct scan *scan = share->scan;
    for (size_t i = share->from; i < share->to; i++) {
        struct entry *entry = &share->entries[i];
        entry->found = -1;
        snprintf(name, sizeof name, "%d", entry->fd);
        ssize_t length = readlinkat(share->folder, name, link, sizeof link);
        /* "socket:[12345]": anything else (files, pipes, anon inodes) is not a socket. */
        if (length < 10 || length >= (ssize_t)sizeof link || memcmp(link, "socket:[", 8) != 0 || link[length - 1] != ']') continue;
        uint64_t inode = 0;
        ssize_t index = 8;
        for (; index < length - 1 && link[index] >= '0' && link[index] <= '9'; index++) inode = inode * 10 + (uint64_t)(link[index] - '0');
        entry->found = index == length - 1 ? position(scan->inodes, scan->count, inode) : -1;
        entry->inode = inode;
        if (entry->found < 0 || scan->options == NULL) continue;
        if (atomic_exchange(&scan->claims[entry->found], 1) != 0) {
            entry->skipped = 1;
            continue;
        }
        entry->read.domain = scan->options[entry->found].domain;
        if (share->lazy) open_pidfd(share->process);
        read_copy(share->process, entry->fd, &entry->read);
        if (entry->read.state != 1) atomic_store(&scan->claims[entry->found], 0);
    }
}

static void *resolve_thread(void *share) {
    resolve(share);
    return NULL;
}

/* A process with this many descriptors has them read by two threads, each half of them:
   the readlinks and the copies are independent, and a server holding thousands of
   listeners is where the audit's time goes. */
enum { shared_from = 1024 };

/* What one process held of the sockets asked for, in /proc's order of its descriptors. */
struct process_result {
    long pid;
    struct entry *found;
    size_t count;
    /* Its descriptors could not be read (EACCES, and no thread's either): the scan is incomplete. */
    int unreadable;
    /* /proc/PID/comm, read as soon as its descriptors were, where it holds a socket asked for:
       the name is the process's that held them, not a later one's with its pid. */
    char command[64];
    int named;
};

/* Reads /proc/PID/comm into result->command, NUL-terminated. */
static void name_process(int proc, struct process_result *result) {
    char path[64];
    snprintf(path, sizeof path, "%ld/comm", result->pid);
    int fd = openat(proc, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t count;
    do {
        count = read(fd, result->command, sizeof result->command - 1);
    } while (count < 0 && errno == EINTR);
    close(fd);
    if (count < 0) return;
    result->command[count] = 0;
    result->named = 1;
}

/* Collects the asked-for sockets in the descriptor folder at `path` (under /proc) into
   `result`, the pidfd opened only when a socket asked for is found. Returns how many
   descriptors the folder listed, or -1 with errno when it cannot be opened. */
static long collect_in(int proc, const char *path, struct process_pidfd *process, const struct scan *scan, struct process_result *result) {
    int folder = openat(proc, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (folder < 0) return -1;
    DIR *fds = fdopendir(folder);
    if (fds == NULL) {
        close(folder);
        return -1;
    }
    size_t listed = 0, capacity = 0;
    struct entry *entries = NULL;
    struct dirent *fd;
    while ((fd = readdir(fds)) != NULL) {
        if (fd->d_name[0] < '0' || fd->d_name[0] > '9') continue;
        if (listed == capacity) {
            capacity = capacity == 0 ? 64 : capacity * 2;
            struct entry *grown = realloc(entries, capacity * sizeof *entries);
            if (grown == NULL) break;
            entries = grown;
        }
        memset(&entries[listed], 0, sizeof *entries);
        entries[listed++].fd = atoi(fd->d_name);
    }
    struct share whole = { dirfd(fds), process, 1, scan, entries, 0, listed };
    pthread_t helper;
    int helped = 0;
    if (listed >= shared_from) {
        if (scan->options != NULL) open_pidfd(process);
        whole.lazy = 0;
        struct share second = whole;
        second.from = listed / 2;
        whole.to = listed / 2;
        helped = pthread_create(&helper, NULL, resolve_thread, &second) == 0;
        if (!helped) whole.to = listed;
        resolve(&whole);
        if (helped) pthread_join(helper, NULL);
    } else {
        resolve(&whole);
    }
    /* Only the sockets asked for are kept, in a block of their size: a process of thousands
       of descriptors and one socket asked for holds one entry until the scan ends. */
    size_t kept = 0;
    for (size_t i = 0; i < listed; i++) {
        if (entries[i].found >= 0) entries[kept++] = entries[i];
    }
    if (kept == 0) {
        free(entries);
        entries = NULL;
    } else if (kept < listed) {
        struct entry *fitted = realloc(entries, kept * sizeof *entries);
        if (fitted != NULL) entries = fitted;
    }
    result->found = entries;
    result->count = kept;
    closedir(fds);
    return (long)listed;
}

/* One process: its descriptors, or where its folder is empty or refused, those of one of
   its threads. */
static void collect_process(int proc, const struct scan *scan, struct process_result *result) {
    char path[64];
    snprintf(path, sizeof path, "%ld/fd", result->pid);
    struct process_pidfd process_fd = { .pid = result->pid, .fd = -1 };
    long listed = collect_in(proc, path, &process_fd, scan, result);
    int refused = listed < 0 && errno == EACCES;
    if (listed > 0 || (listed < 0 && !refused)) {
        if (process_fd.fd >= 0) close(process_fd.fd);
        if (result->count > 0) name_process(proc, result);
        return;
    }
    /* An empty folder is a leader whose thread exited (pthread_exit in main) or a kernel
       thread; a refused one may be the same leader, whose fd folder the kernel gives to
       root once it has no memory map to take an owner from. The descriptors, shared by
       every thread, are then read through a live one; only when none can be read is
       the answer incomplete. */
    free(result->found);
    result->found = NULL;
    result->count = 0;
    snprintf(path, sizeof path, "%ld/task", result->pid);
    int tasks_fd = openat(proc, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *tasks = tasks_fd < 0 ? NULL : fdopendir(tasks_fd);
    if (tasks == NULL) {
        if (tasks_fd >= 0) close(tasks_fd);
        if (process_fd.fd >= 0) close(process_fd.fd);
        result->unreadable = refused;
        return;
    }
    int read_one = 0;
    struct dirent *task;
    char *end;
    while ((task = readdir(tasks)) != NULL) {
        long tid = strtol(task->d_name, &end, 10);
        if (task->d_name[0] < '1' || task->d_name[0] > '9' || *end != 0 || tid == result->pid) continue;
        snprintf(path, sizeof path, "%ld/task/%ld/fd", result->pid, tid);
        /* One live thread is enough, and the one tried speaks for the rest: threads share
           their owner, so a refusal would repeat for every one of a thousand threads. */
        read_one = collect_in(proc, path, &process_fd, scan, result) >= 0;
        break;
    }
    closedir(tasks);
    if (process_fd.fd >= 0) close(process_fd.fd);
    result->unreadable = refused && !read_one;
    if (result->count > 0) name_process(proc, result);
}

struct worker {
    int proc;
    const struct scan *scan;
    struct process_result *results;
    size_t processes;
    atomic_size_t *next;
};

/* Takes processes one at a time until none is left: two workers share the list, each
   process whole (a large one splits its own descriptors, above). */
static void *collect_thread(void *argument) {
    struct worker *worker = argument;
    for (;;) {
        size_t index = atomic_fetch_add(worker->next, 1);
        if (index >= worker->processes) return NULL;
        collect_process(worker->proc, worker->scan, &worker->results[index]);
    }
}

int hl_socket_owners(const uint64_t *inodes, size_t count, hl_owner_each each, void *context) {
    return hl_socket_owners_options(inodes, count, each, context, NULL);
}

int hl_socket_owners_options(const uint64_t *inodes, size_t count, hl_owner_each each, void *context, struct hl_socket_options *options) {
    DIR *proc = opendir("/proc");
    if (proc == NULL) return -1;
    size_t processes = 0, capacity = 0;
    struct process_result *results = NULL;
    struct dirent *process;
    while ((process = readdir(proc)) != NULL) {
        char *end;
        long pid = strtol(process->d_name, &end, 10);
        if (process->d_name[0] < '1' || process->d_name[0] > '9' || *end != 0 || pid > 0x7fffffff) continue;
        if (processes == capacity) {
            capacity = capacity == 0 ? 256 : capacity * 2;
            struct process_result *grown = realloc(results, capacity * sizeof *results);
            if (grown == NULL) {
                free(results);
                closedir(proc);
                errno = ENOMEM;
                return -1;
            }
            results = grown;
        }
        memset(&results[processes], 0, sizeof *results);
        results[processes++].pid = pid;
    }
    atomic_uchar *claims = options == NULL || count == 0 ? NULL : calloc(count, sizeof *claims);
    if (options != NULL && count > 0 && claims == NULL) {
        free(results);
        closedir(proc);
        errno = ENOMEM;
        return -1;
    }
    /* Two workers over the processes, this thread one of them: a host's thousands of small
       processes cost two cores half the time, as one large process's descriptors do. */
    struct scan scan = { inodes, count, options, claims };
    atomic_size_t next = 0;
    struct worker worker = { dirfd(proc), &scan, results, processes, &next };
    pthread_t helper;
    int helped = processes > 1 && pthread_create(&helper, NULL, collect_thread, &worker) == 0;
    collect_thread(&worker);
    if (helped) pthread_join(helper, NULL);

    /* In /proc's order, on this thread: the callback, and the first owner's options that could be read. */
    int complete = 1;
    int retry = 0;
    for (size_t p = 0; p < processes; p++) {
        struct process_result *result = &results[p];
        if (result->unreadable) complete = 0;
        for (size_t i = 0; i < result->count; i++) {
            struct entry *entry = &result->found[i];
            each((int)result->pid, entry->inode, result->named ? result->command : NULL, context);
            if (options == NULL) continue;
            struct hl_socket_options *kept = &options[entry->found];
            if (entry->skipped) retry = 1;
            else if (kept->state != 1 && entry->read.state != 0) *kept = entry->read;
        }
    }
    /* A descriptor skipped for a claim whose read then failed: read it now, in order, where
       no owner gave the options. */
    for (size_t p = 0; retry && p < processes; p++) {
        struct process_result *result = &results[p];
        struct process_pidfd process_fd = { .pid = result->pid, .fd = -1 };
        for (size_t i = 0; i < result->count; i++) {
            struct entry *entry = &result->found[i];
            struct hl_socket_options *kept = &options[entry->found];
            if (!entry->skipped || kept->state == 1) continue;
            open_pidfd(&process_fd);
            if (process_fd.fd < 0) continue;
            /* Long after the listing: the copy is read only if it is still the same socket (the
               descriptor's number, or the pid, may have been reused since). */
            int copy = (int)syscall(SYS_pidfd_getfd, process_fd.fd, entry->fd, 0);
            if (copy < 0) continue;
            struct stat status;
            if (fstat(copy, &status) == 0 && S_ISSOCK(status.st_mode) && (uint64_t)status.st_ino == entry->inode) {
                entry->read.domain = kept->domain;
                entry->read.state = hl_read_socket_options(copy, &entry->read);
                if (entry->read.state != 0) *kept = entry->read;
            }
            close(copy);
        }
        if (process_fd.fd >= 0) close(process_fd.fd);
    }
    for (size_t p = 0; p < processes; p++) free(results[p].found);
    free(results);
    free(claims);
    closedir(proc);
    return complete;
}

int hl_malloc_fix_mmap_threshold(void) {
    return mallopt(M_MMAP_THRESHOLD, 128 * 1024);
}
