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
        AllCommand.self, RunCommand.self, ListCommand.self, ShowCommand.self, CheckCommand.self,
        AuditCommand.self, MatrixCommand.self, KernelsCommand.self,
    ]

    /// `agentExecutable` is the binary started in the agent role: normally this program itself.
    public static func run(_ arguments: [String], console: Console = .standard,
                           agentExecutable: String = LabSettings.defaultAgentExecutable()) -> Int32 {
        ToolSession.run(console: console) {
            dispatch(arguments, context: CommandContext(console: console, agentExecutable: agentExecutable))
        }
    }

    static func dispatch(_ arguments: [String], context: CommandContext) -> ExitStatus {
        let console = context.console
        guard let first = arguments.first else {
            console.err(CommandIndex.overview)
            return .usage
        }
        let rest = Array(arguments.dropFirst())
        switch first {
        case "--version", "version":
            console.out("hijack-lab \(version)")
            return .success
        case "help", "--help", "-h":
            guard let topic = rest.first, topic != "help" else {
                console.out(CommandIndex.overview)
                return .success
            }
            guard rest.count == 1 else {
                console.err("hijack-lab help: takes one command (got \(rest.count)); `hijack-lab help` lists them")
                return .usage
            }
            guard let command = command(named: topic) else { return CommandIndex.unknownCommand(topic, console: console) }
            console.out(command.help)
            return .success
        case "agent":
            return AgentEntry.run(rest, console: console)
        default:
            guard let command = command(named: first) else { return CommandIndex.unknownCommand(first, console: console) }
            return ToolSession.dispatch(command, rest, context: context)
        }
    }

    static func command(named name: String) -> (any Command.Type)? {
        commands.first { $0.name == name }
    }

    static var overview: String { CommandIndex.overview }
}
