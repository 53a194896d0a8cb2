import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import CHijackLab
import Foundation
import Glibc

/// Programs `kernels` runs on the host (dpkg-deb, ldd, xz, qemu), found on PATH.
enum HostTools {
    static func find(_ name: String) -> String? { SearchPath.find(name) }

    struct Result {
        let status: Int32
        /// stdout and stderr together.
        let output: String
    }

    /// Runs a tool to the end (killed at the deadline, then status -1); its output merged.
    static func run(_ executable: String, _ arguments: [String], seconds: Double = 120) -> Result {
        let child: ChildProcess
        do throws(SystemError) {
            child = try ChildProcess(executable: executable, arguments: arguments, mergeStandardError: true, dieWithParent: true)
        } catch {
            return Result(status: -1, output: "cannot start \(executable): \(error)")
        }
        child.closeStdin()
        let deadline = Deadline.after(seconds: seconds)
        let output = child.readAll(until: deadline)
        let status = child.finish(until: deadline)
        guard let output else { return Result(status: -1, output: "\(executable) did not finish within \(Int(seconds)) s") }
        let signal = status & 0x7f
        return Result(status: signal == 0 ? (status >> 8) & 0xff : 128 + signal, output: output)
    }

    /// The shared libraries a dynamically linked executable loads, loader included, as ldd
    /// names them (the paths the loader will look for inside the guest, too).
    static func libraries(of executable: String) -> Swift.Result<[String], KernelsError> {
        guard let ldd = find("ldd") else { return .failure(KernelsError("ldd is not installed (it comes with libc-bin)")) }
        let result = run(ldd, [executable])
        // A static executable: ldd says "not a dynamic executable" and exits 1.
        if result.output.contains("not a dynamic executable") || result.output.contains("statically linked") { return .success([]) }
        guard result.status == 0 else { return .failure(KernelsError("ldd \(executable) failed: \(result.output.prefix(300))")) }
        var paths: [String] = []
        for line in result.output.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            if let arrow = words.firstIndex(of: "=>") {
                guard arrow + 1 < words.count else { continue }
                if words[arrow + 1] == "not" { return .failure(KernelsError("\(executable) needs \(words[0]), which ldd did not find")) }
                if words[arrow + 1].hasPrefix("/") { paths.append(words[arrow + 1]) }
            } else if let first = words.first?.trimmingCharacters(in: .whitespaces), first.hasPrefix("/") {
                paths.append(first)
            }
        }
        return .success(paths)
    }
}

struct KernelsError: Error, CustomStringConvertible {
    let message: String
    /// The guest never said hello: with KVM, the cue to try software emulation instead.
    var beforeBoot = false
    init(_ message: String, beforeBoot: Bool = false) {
        self.message = message
        self.beforeBoot = beforeBoot
    }
    var description: String { message }
}

/// A temp folder that is removed on every exit path. The process removes it itself when it
/// can; for SIGINT, SIGTERM and even SIGKILL, a small guardian process removes it when our end
/// of its stdin closes, which the kernel does when this process ends in any way. The guardian
/// is in its own process group, so a Ctrl-C at the terminal does not reach it.
final class TemporaryFolder {
    let path: String
    private var guardian: pid_t = 0
    private var guardianPipe: Int32 = -1
    private var removed = false

    init() throws(KernelsError) {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/hijack-lab-kernels-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw KernelsError("cannot create a temp folder in \(base): \(SystemError.last("mkdtemp"))") }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        startGuardian()
    }

    deinit { remove() }

    private func startGuardian() {
        guard let shell = HostTools.find("sh") else { return }
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
        if let rm = HostTools.find("rm") { _ = HostTools.run(rm, ["-rf", "--", path]) }
        if guardianPipe >= 0 { Glibc.close(guardianPipe) }
        if guardian > 0 {
            var status: Int32 = 0
            while waitpid(guardian, &status, 0) == -1 && errno == EINTR {}
        }
    }
}
