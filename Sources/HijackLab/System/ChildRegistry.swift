import CHijackLab
import Glibc

/// Every child the lab has started and not yet reaped, so that a signal or a failure
/// anywhere can still kill them all. The table lives in C (CHijackLab/interrupt.c): the
/// SIGINT and SIGTERM handler walks it, and a handler may take no lock.
public final class ChildRegistry: Sendable {
    public static let shared = ChildRegistry()

    private init() {}

    /// Each child leads its own process group. A full table (4,096 live children) cannot
    /// guard the child, so it is killed at once rather than left unguarded.
    package func add(_ pid: pid_t) {
        if hl_children_add(pid) != 0 { kill(-pid, SIGKILL) }
    }

    /// The signal that is taking the process down, if one is. It is set before any child is
    /// killed, so a thread that saw a child die because of it will find it here.
    public var interruption: Int32? {
        let signal = hl_interrupt_signal()
        return signal == 0 ? nil : signal
    }

    /// Called only while the child is still unreaped, so its pid cannot have been reused.
    package func remove(_ pid: pid_t) { hl_children_remove(pid) }

    /// SIGKILL to every child's process group, and from now on to any child started later.
    public func closeAndKillAll() { _ = hl_children_kill_all() }
}
