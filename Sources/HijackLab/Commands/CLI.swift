import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Glibc

/// The command line: finds the command, reads its arguments, and returns the exit status.
/// `main.swift` only calls `CLI.run`.
public enum CLI {
    public static let version = CommandIndex.version

    static let commands: [any Command.Type] = [
        AllCommand.self, RunCommand.self, ListCommand.self, ShowCommand.self, CheckCommand.self, TryCommand.self,
        AuditCommand.self, MatrixCommand.self, KernelsCommand.self, ServersCommand.self,
    ]

    /// `agentExecutable` is the binary started in the agent role: normally this program itself.
    public static func run(_ arguments: [String], console: Console = .standard,
                           agentExecutable: String = LabSettings.defaultAgentExecutable()) -> Int32 {
        ToolSession.run(console: console) {
            dispatch(arguments, context: CommandContext(console: console, agentExecutable: agentExecutable))
        }
    }

    static func dispatch(_ arguments: [String], context: CommandContext) -> ExitStatus {
        ToolSession.route(arguments, among: commands, context: context)
    }
}
