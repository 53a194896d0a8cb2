import HijackAgent
import HijackAudit
import HijackSystem
import CHijackLab

/// Kills every agent on SIGINT or SIGTERM before the process exits with 128 + the signal,
/// so an interrupted run leaves nothing behind. Agents also exit on their own when the
/// runner's pipe closes. The handler is plain C (CHijackLab/interrupt.c): it needs no
/// thread, so it works even when the process limit is used up, and no lock.
package enum InterruptGuard {
    package static func install() {
        // sigaction fails only for an invalid signal number; the two used here are valid.
        _ = hl_interrupt_install()
    }
}
