import Glibc

/// A point on the monotonic clock after which a wait gives up.
public struct Deadline: Sendable, Comparable {
    public var nanoseconds: UInt64

    package init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    public static func now() -> Deadline {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Deadline(nanoseconds: UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec))
    }

    public static func after(seconds: Double) -> Deadline {
        Deadline(nanoseconds: now().nanoseconds + UInt64(max(0, seconds) * 1e9))
    }

    /// Milliseconds left, for poll(2): never negative, rounded up so a wait is never cut short.
    public var pollTimeout: Int32 {
        let now = Deadline.now().nanoseconds
        guard nanoseconds > now else { return 0 }
        return Int32(min((nanoseconds - now + 999_999) / 1_000_000, UInt64(Int32.max)))
    }

    public var hasPassed: Bool { Deadline.now() >= self }

    public static func < (lhs: Deadline, rhs: Deadline) -> Bool { lhs.nanoseconds < rhs.nanoseconds }
}

/// Waits until `fd` is ready for `events` or the deadline passes. Returns false on timeout.
package func waitFor(_ fd: Int32, events: Int16, until deadline: Deadline) throws(SystemError) -> Bool {
    var entry = pollfd(fd: fd, events: events, revents: 0)
    while true {
        let count = poll(&entry, 1, deadline.pollTimeout)
        if count > 0 { return true }
        if count == 0 { return false }
        if errno != EINTR { throw SystemError.last("poll") }
    }
}
