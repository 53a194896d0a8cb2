import HijackAgent
import HijackAudit
import HijackSystem
import Glibc
import Synchronization

/// Where the CLI writes: `out` for the data that was asked for, `err` for progress and
/// messages. Tests pass closures that collect the text.
public struct Console: Sendable {
    public var out: @Sendable (String) -> Void
    public var err: @Sendable (String) -> Void
    /// The errno of a failed write to `out` (nil for none), so a command can tell a data
    /// output that did not arrive from a reader that merely stopped early (EPIPE).
    package var outFailure: @Sendable () -> Int32? = { nil }

    public init(out: @escaping @Sendable (String) -> Void, err: @escaping @Sendable (String) -> Void) {
        self.out = out
        self.err = err
    }

    public static let standard: Console = {
        var console = Console(out: { StandardStream.output.write($0 + "\n") }, err: { StandardStream.error.write($0 + "\n") })
        console.outFailure = { StandardStream.output.failedWith }
        return console
    }()
}

/// stdout or stderr, written with write(2). A reader that went away (`| head -1`, `>&-`)
/// ends the output quietly: the run goes on and still writes its files. SIGPIPE is ignored
/// by the CLI, so the closed pipe shows up here as EPIPE instead of killing the process.
package final class StandardStream: Sendable {
    package static let output = StandardStream(fd: 1)
    package static let error = StandardStream(fd: 2)

    package let fd: Int32
    private let failure = Atomic<Int32>(0)

    package init(fd: Int32) { self.fd = fd }

    /// The errno of the first failed write, or nil while every write went through.
    package var failedWith: Int32? {
        let code = failure.load(ordering: .relaxed)
        return code == 0 ? nil : code
    }

    private let closedAtStart = Atomic<Bool>(false)

    /// The descriptor was closed when the process started (`>&-`): a write to it fails with
    /// EBADF, though a stream nobody writes to never fails.
    package func markClosed() {
        closedAtStart.store(true, ordering: .relaxed)
    }

    package func write(_ text: String) {
        guard failure.load(ordering: .relaxed) == 0 else { return }
        if closedAtStart.load(ordering: .relaxed) {
            failure.store(EBADF, ordering: .relaxed)
            return
        }
        if let code = writeAll(fd, Array(text.utf8)) {
            failure.store(code, ordering: .relaxed)
        }
    }
}
