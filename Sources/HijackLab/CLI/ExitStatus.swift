import HijackAgent
import HijackAudit
import HijackSystem

/// What the process exit status tells a script. The numbers are a public interface: the
/// help text and the README list them, and a test holds them to it.
public enum ExitStatus: Equatable, Sendable {
    /// Everything that ran matched its expectation (or, for audit, no interception or shadowing).
    case success
    /// The kernel did something else than a scenario expected, a run could not finish,
    /// or (audit) an interception, shadowing or unexpected-owner alarm exists.
    case differs
    /// A usage error, an unreadable scenario file, an output that could not be written, or a
    /// lab that could not be set up at all.
    case usage
    /// audit: nothing was found, but part of the host could not be read (another user's
    /// namespaces, when not root), so "nothing" is not the whole answer.
    case incomplete
    /// Ended by SIGINT or SIGTERM, after every agent was killed: 128 + the signal.
    case interrupted(signal: Int32)
    /// Any other status, as a child role (the agent) returns it.
    case other(Int32)

    public var code: Int32 {
        switch self {
        case .success: 0
        case .differs: 1
        case .usage: 2
        case .incomplete: 3
        case .interrupted(let signal): 128 + signal
        case .other(let code): code
        }
    }

    package init(code: Int32) {
        switch code {
        case 0: self = .success
        case 1: self = .differs
        case 2: self = .usage
        case 3: self = .incomplete
        case 129...159: self = .interrupted(signal: code - 128)
        default: self = .other(code)
        }
    }

    /// The stronger of two: usage over differs over incomplete over success.
    package func worst(_ other: ExitStatus) -> ExitStatus {
        switch (self, other) {
        case (.interrupted, _): self
        case (_, .interrupted): other
        case (.usage, _), (_, .usage), (.other, _), (_, .other): .usage
        case (.differs, _), (_, .differs): .differs
        case (.incomplete, _), (_, .incomplete): .incomplete
        default: .success
        }
    }

    package static let helpText = """
        EXIT STATUS
          0    every scenario that ran matched its expectation (audit: no interception, shadowing or
               unexpected owner)
          1    some scenario differed from its expectation or could not finish (audit: an interception,
               shadowing or unexpected-owner alarm exists; matrix: some case could not finish)
          2    usage error, a scenario file that could not be read, an output that could not be written,
               or a lab that could not be set up (forced --topology, no processes left)
          3    audit: none of those found, but some namespaces or processes could not be read
               (--all-netns as an ordinary user), or an --expect owner could not be checked: run it as
               root for the whole host
          126  hijack-lab-full, which runs every command but help, audit and the agents, cannot be run
          127  hijack-lab-full is not beside hijack-lab (`swift build` builds both)
          130  interrupted by SIGINT, 143 by SIGTERM (128 + the signal); every agent was killed first.
               Output files are all as they were, or, if the signal came while they were being
               renamed into place, all new: never a mix
        """
}
