import HijackAgent
import HijackSystem

/// The hidden role the runner starts; `Agent(arguments:)` reads its command line.
package enum AgentEntry {
    package static func run(_ arguments: [String], console: Console) -> ExitStatus {
        do throws(Agent.ArgumentError) {
            return ExitStatus(code: try Agent(arguments: arguments).run())
        } catch {
            console.err(error.description)
            return .usage
        }
    }
}
