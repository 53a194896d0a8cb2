import HijackAudit
import HijackSystem
import Glibc

/// A process as /proc names it: its pid and its start time in clock ticks since boot.
/// A pid can be reused once a process is reaped; the pair cannot.
public struct ProcessIdentity: Hashable, Sendable, CustomStringConvertible {
    public var pid: pid_t
    /// nil when the process was already gone at the time of reading.
    public var startTime: UInt64?

    public init(of pid: pid_t) {
        self.pid = pid
        startTime = Self.stat(pid)?.startTime
    }

    /// True while this very process exists and has not exited (a zombie counts as exited).
    public var isRunning: Bool {
        guard let startTime, let now = Self.stat(pid) else { return false }
        return now.startTime == startTime && now.state != "Z" && now.state != "X"
    }

    public var description: String { "pid \(pid)" }

    /// State and start time from /proc/PID/stat: the fields after "(comm)" begin with the
    /// state, and the start time is the 20th of them (field 22 of the whole line).
    package static func stat(_ pid: pid_t) -> (state: String, startTime: UInt64)? {
        guard let text = ProcNet.read("/proc/\(pid)/stat"),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let start = UInt64(fields[19]) else { return nil }
        return (String(fields[0]), start)
    }
}
