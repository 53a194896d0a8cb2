import CHijackLab
import Glibc

/// A child process with a pipe to its stdin and one from its stdout, read line by line
/// with deadlines. Its stderr is the runner's, so a crash message reaches the user.
package final class ChildProcess {
    package let pid: pid_t
    private var stdinFD: Int32
    private var stdoutFD: Int32
    private var buffer: [UInt8] = []
    /// How much of `buffer` holds no newline: a reply of megabytes (an audit of a busy
    /// namespace) arrives 4 KB at a time, and rescanning it all each time is quadratic.
    private var scanned = 0
    private var reaped = false
    /// Started with `dieWithParent`: `pid` is the supervisor, which exits just after the child.
    private var supervised = false

    /// `mergeStandardError` sends the child's stderr into the same pipe as its stdout, for
    /// tools whose complaints belong in the reply (ip); agents keep the runner's stderr.
    ///
    /// `dieWithParent` starts it under a supervisor that the kernel tells when this process
    /// ends, SIGKILL included, and that then kills the child's whole process group (qemu,
    /// dpkg-deb and its tar): nothing outlives a killed `kernels` run. The thread that starts
    /// such a child must outlive it (the kernel watches that thread), as it does when it reads
    /// and reaps the child itself; `pid` is then the supervisor's, which leads the group and
    /// exits with the child's status.
    package init(executable: String, arguments: [String], mergeStandardError: Bool = false, dieWithParent: Bool = false) throws(SystemError) {
        var toChild: [Int32] = [-1, -1]
        var fromChild: [Int32] = [-1, -1]
        guard hl_pipe_cloexec(&toChild) == 0 else { throw SystemError.last("pipe2") }
        guard hl_pipe_cloexec(&fromChild) == 0 else {
            Glibc.close(toChild[0]); Glibc.close(toChild[1])
            throw SystemError.last("pipe2")
        }

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let (status, call) = dieWithParent
            ? (hl_spawn_dying_with_parent(&child, executable, argv, environ, toChild[0], fromChild[1], mergeStandardError ? fromChild[1] : -1), "execve")
            : Self.spawn(&child, executable, argv, stdin: toChild[0], stdout: fromChild[1], mergeStandardError: mergeStandardError)
        Glibc.close(toChild[0])
        Glibc.close(fromChild[1])
        guard status == 0 else {
            Glibc.close(toChild[1]); Glibc.close(fromChild[0])
            throw SystemError(call: call, code: status)
        }
        pid = child
        stdinFD = toChild[1]
        stdoutFD = fromChild[0]
        supervised = dieWithParent
        ChildRegistry.shared.add(child)
    }

    /// posix_spawn with the child's pipes as its stdin and stdout, and nothing else inherited;
    /// the status (0 or an errno) and the call it came from.
    private static func spawn(_ child: inout pid_t, _ executable: String, _ argv: [UnsafeMutablePointer<CChar>?],
                              stdin: Int32, stdout: Int32, mergeStandardError: Bool) -> (Int32, String) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 clears close-on-exec on the copies. Every other descriptor is closed in the
        // child: posix_spawn passes on whatever lacks O_CLOEXEC, and this process may have
        // inherited such descriptors from whoever started it (a shell's `exec 7</etc/shadow`).
        // An agent then holds only its pipes and what it opens itself.
        var planned = posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        if planned == 0 { planned = posix_spawn_file_actions_adddup2(&actions, stdout, 1) }
        if planned == 0, mergeStandardError { planned = posix_spawn_file_actions_adddup2(&actions, stdout, 2) }
        if planned == 0 { planned = hl_spawn_close_from(&actions, 3) }
        guard planned == 0 else { return (planned, "posix_spawn_file_actions") }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group: Ctrl-C reaches the runner, which then kills the group.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGPIPE, SIGHUP] { sigaddset(&defaults, signal) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        return (posix_spawn(&child, executable, &actions, &attributes, argv, environ), "posix_spawn")
    }

    deinit { killAndReap() }

    /// The child's stdout until it closes it, or up to the deadline (then nil).
    package func readAll(until deadline: Deadline) -> String? {
        var lines: [String] = []
        while true {
            do throws(SystemError) {
                guard let line = try readLine(until: deadline) else { return lines.joined(separator: "\n") }
                lines.append(line)
            } catch {
                return nil
            }
        }
    }

    package func send(_ line: String) throws(SystemError) {
        try writeAll(stdinFD, bytes: Array((line + "\n").utf8))
    }

    /// The next line from the child, or nil when it closed its stdout. Throws ETIMEDOUT at the deadline.
    package func readLine(until deadline: Deadline) throws(SystemError) -> String? {
        while true {
            if let newline = buffer[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                scanned = 0
                return line
            }
            scanned = buffer.count
            guard stdoutFD >= 0 else { return nil }
            guard try waitFor(stdoutFD, events: Int16(POLLIN), until: deadline) else { throw SystemError(call: "read", code: ETIMEDOUT) }
            // An audit reply of a busy namespace is megabytes on one line: read it in large pieces.
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let count = try Syscall.read(stdoutFD, into: &chunk)
            if count > 0 {
                buffer += chunk[..<count]
            } else {
                Glibc.close(stdoutFD)
                stdoutFD = -1
            }
        }
    }

    /// Whatever the child wrote next, as it came (no line is awaited, so an endless line cannot
    /// grow a buffer here), or nil when it closed its stdout. Throws ETIMEDOUT at the deadline.
    package func readBytes(until deadline: Deadline) throws(SystemError) -> [UInt8]? {
        if !buffer.isEmpty {
            defer { buffer.removeAll(); scanned = 0 }
            return buffer
        }
        guard stdoutFD >= 0 else { return nil }
        guard try waitFor(stdoutFD, events: Int16(POLLIN), until: deadline) else { throw SystemError(call: "read", code: ETIMEDOUT) }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let count = try Syscall.read(stdoutFD, into: &chunk)
        guard count > 0 else {
            Glibc.close(stdoutFD)
            stdoutFD = -1
            return nil
        }
        chunk.removeSubrange(count...)
        return chunk
    }

    /// Closes the child's stdin (its cue to exit), waits until it closes stdout, and reaps it.
    /// Past the deadline it is killed. Returns the wait status.
    @discardableResult
    package func finish(until deadline: Deadline) -> Int32 {
        closeStdin()
        while (try? readLine(until: deadline)).flatMap({ $0 }) != nil {}
        // Closed stdout usually means exiting; a child that closed it and lingers is killed
        // so the blocking wait below cannot hang. It is unreaped, so the group is still ours.
        // A supervisor exits only once it has seen its child exit, a moment after the child
        // closed stdout: it gets that moment (up to 2 s), or its child's status would be lost.
        if supervised, !hasExited() { awaitExit(until: min(deadline, Deadline.after(seconds: 2))) }
        if !hasExited() { kill(-pid, SIGKILL) }
        return reap()
    }

    /// Waits until the child has exited (not reaping it), or up to the deadline.
    private func awaitExit(until deadline: Deadline) {
        let fd = hl_pidfd_open(pid)
        guard fd >= 0 else { return }
        defer { Glibc.close(fd) }
        _ = try? waitFor(fd, events: Int16(POLLIN), until: deadline)
    }

    /// Whether the child has exited, without reaping it.
    private func hasExited() -> Bool {
        var info = siginfo_t()
        return waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info._sifields._sigchld.si_pid == pid
    }

    package func killAndReap() {
        guard !reaped else { return }
        kill(-pid, SIGKILL)
        closeStdin()
        reap()
    }

    package func closeStdin() {
        if stdinFD >= 0 { Glibc.close(stdinFD); stdinFD = -1 }
    }

    @discardableResult
    private func reap() -> Int32 {
        guard !reaped else { return 0 }
        // Wait for the exit without reaping, leave the registry, then reap: the pid stays
        // ours for as long as the registry might still signal its group.
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) == -1 && errno == EINTR {}
        ChildRegistry.shared.remove(pid)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        reaped = true
        if stdoutFD >= 0 { Glibc.close(stdoutFD); stdoutFD = -1 }
        // No kill after this point: a reaped pid, and so its group id, may already be reused.
        return status
    }
}
