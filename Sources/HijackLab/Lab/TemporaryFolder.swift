import HijackAgent
import HijackSystem
import CHijackLab
import Foundation
import Glibc

/// A temp folder that is removed on every exit path. The process removes it itself when it
/// can; for SIGINT, SIGTERM and even SIGKILL, a small guardian process removes it when our end
/// of its stdin closes, which the kernel does when this process ends in any way. The guardian
/// is in its own process group, so a Ctrl-C at the terminal does not reach it.
final class TemporaryFolder {
    let path: String
    private var guardian: pid_t = 0
    private var guardianPipe: Int32 = -1
    private var removed = false

    init(prefix: String) throws(LabError) {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw .setup("cannot create a temp folder in \(base): \(SystemError.last("mkdtemp"))") }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        startGuardian()
    }

    deinit { remove() }

    private func startGuardian() {
        guard let shell = SearchPath.find("sh") else { return }
        var fds: [Int32] = [-1, -1]
        guard hl_pipe_cloexec(&fds) == 0 else { return }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[0], 0)
        _ = hl_spawn_close_from(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        // The guardian outlives the signal that ends us: it ignores SIGINT and SIGHUP.
        var ignored = sigset_t()
        sigemptyset(&ignored)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &ignored)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK))
        let script = "trap '' INT HUP TERM; cat >/dev/null; rm -rf -- \"$1\""
        let words: [String] = [shell, "-c", script, "hijack-lab-cleanup", path]
        let argv = words.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        if posix_spawn(&child, shell, &actions, &attributes, argv, environ) == 0 {
            guardian = child
            guardianPipe = fds[1]
        } else {
            Glibc.close(fds[1])
        }
        Glibc.close(fds[0])
    }

    /// Removes the folder now and waits for the guardian, so that nothing is left when this returns.
    func remove() {
        guard !removed else { return }
        removed = true
        if let rm = SearchPath.find("rm"), let child = try? ChildProcess(executable: rm, arguments: ["-rf", "--", path], mergeStandardError: true, dieWithParent: true) {
            _ = child.readAll(until: .after(seconds: 60))
            _ = child.finish(until: .after(seconds: 5))
        }
        if guardianPipe >= 0 { Glibc.close(guardianPipe) }
        if guardian > 0 {
            var status: Int32 = 0
            while waitpid(guardian, &status, 0) == -1 && errno == EINTR {}
        }
    }
}
