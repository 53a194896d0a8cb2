import Foundation
import CHijackLab
import Glibc
import Testing
@testable import HijackCLI
@testable import HijackSystem

/// The first constructor (hl_early.c): the front starts, and reads its arguments, where /proc
/// is not mounted, as a guest's init is started. These run the front of the configuration the
/// test bundle was built in, so `swift test -c release` checks the static release front.
@Suite("Start without /proc")
struct EarlyStartTests {
    static let unshare: String? = ["/usr/bin/unshare", "/bin/unshare"].first { (path: String) in access(path, X_OK) == 0 }
    static let canUnmountProc = geteuid() == 0 && unshare != nil

    /// Runs the front under `unshare FLAGS sh -c 'umount -l /proc; exec FRONT ARGS'`, with a
    /// deadline; its stdout and stderr together, and its exit status.
    static func runWithoutProc(_ flags: [String], _ arguments: [String]) throws -> (output: String, status: Int32) {
        let script = "umount -l /proc || exit 99; exec \"$0\" \"$@\""
        let child = try ChildProcess(executable: try #require(unshare), arguments: flags + ["sh", "-c", script, TestLab.toolExecutable] + arguments,
                                     mergeStandardError: true)
        child.closeStdin()
        let deadline = Deadline.after(seconds: 20)
        let output = child.readAll(until: deadline)
        let status = child.finish(until: deadline)
        return (try #require(output, "the front did not finish within 20 s"), status)
    }

    @Test("Without /proc, the front starts (no abort before main) and sees its arguments",
          .enabled(if: canUnmountProc, "needs root and unshare(1) to unmount /proc in a mount namespace of its own"),
          arguments: [["--version"], ["help", "audit"]])
    func withoutProc(arguments: [String]) throws {
        let (output, status) = try Self.runWithoutProc(["-m"], arguments)
        #expect(status == 0, "exit status \(status >> 8), signal \(status & 0x7f): \(output)")
        #expect(!output.contains("Unable to obtain Swift runtime path"))
        if arguments == ["--version"] {
            #expect(output == "hijack-lab \(CommandIndex.version)")
        } else {
            #expect(output.hasPrefix("hijack-lab audit: "))
        }
    }

    @Test("As pid 1 without /proc (a guest's init), the front mounts /proc before the runtime needs it",
          .enabled(if: canUnmountProc, "needs root and unshare(1) for a pid and mount namespace of its own"))
    func asPidOne() throws {
        let (output, status) = try Self.runWithoutProc(["-m", "-p", "-f"], ["--version"])
        #expect(status == 0, "exit status \(status >> 8), signal \(status & 0x7f): \(output)")
        #expect(output == "hijack-lab \(CommandIndex.version)")
    }

    @Test("The arguments the constructor kept are the process's own")
    func savedArguments() {
        #expect(hl_saved_argc() == CommandLine.argc)
        #expect(ProcessArguments.commandLine == Array(CommandLine.arguments.dropFirst()))
    }
}
