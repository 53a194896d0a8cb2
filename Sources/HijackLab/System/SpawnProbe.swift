import Glibc

/// A hidden role for the tests, never listed in help: `hijack-lab __spawn-dying-with-parent
/// PROGRAM ARGS...` starts PROGRAM as `kernels` starts qemu and dpkg-deb (ChildProcess with
/// `dieWithParent`), says `child PID`, relays the program's output line by line, and waits for
/// it. A test SIGKILLs this process and checks that the program, and what it started, went too.
public enum SpawnProbe {
    public static let argument = "__spawn-dying-with-parent"

    public static func isRequested() -> Bool {
        ProcessArguments.commandLine.first == argument && ProcessArguments.commandLine.count >= 2
    }

    public static func run() -> Int32 {
        // Exactly as given: a program named by bytes that are not UTF-8 is refused, never run
        // by its decoded spelling.
        let exact = Array(ProcessArguments.exactCommandLine.dropFirst())
        guard exact.allSatisfy({ $0 != nil }) else {
            say("an argument is not UTF-8; nothing was started\n")
            return 2
        }
        let words = exact.map { $0! }
        let child: ChildProcess
        do throws(SystemError) {
            child = try ChildProcess(executable: words[0], arguments: Array(words.dropFirst()), mergeStandardError: true, dieWithParent: true)
        } catch {
            say("cannot start \(UntrustedText.terminal(words[0])): \(error)\n")
            return 127
        }
        say("child \(child.pid)\n")
        while let line = try? child.readLine(until: Deadline.after(seconds: 3600)) { say(line + "\n") }
        let status = child.finish(until: Deadline.after(seconds: 5))
        return (status >> 8) & 0xff
    }

    private static func say(_ text: String) {
        _ = Array(text.utf8).withUnsafeBytes { GuestInit.writeAll(1, $0) }
    }
}
