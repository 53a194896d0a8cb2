import HijackAgent
import HijackAudit
import HijackSystem

/// What every command shares: where it writes, and which binary plays the agent.
package struct CommandContext {
    package let console: Console
    package let agentExecutable: String

    package init(console: Console, agentExecutable: String) {
        self.console = console
        self.agentExecutable = agentExecutable
    }
}

/// One subcommand, in swift-argument-parser's one-type-per-command shape: it declares its
/// options and help, and `run` gets them already read.
package protocol Command: Sendable {
    static var name: String { get }
    /// `all [options]`, for the usage line.
    static var synopsis: String { get }
    /// One line, for the command list.
    static var summary: String { get }
    static var options: [OptionSpec] { get }
    /// What the command does, in a few paragraphs.
    static var discussion: String { get }
    static var examples: [String] { get }
    /// The EXIT STATUS part of its help; most commands share ExitStatus.helpText.
    static var exitStatusHelp: String { get }
    static func run(_ arguments: Arguments, in context: CommandContext) -> ExitStatus
}

extension Command {
    package static var examples: [String] { [] }
    package static var exitStatusHelp: String { ExitStatus.helpText }

    /// `hijack-lab help NAME` and `NAME --help`: this command only.
    package static var help: String {
        var text = "hijack-lab \(name): \(summary)\n\nUSAGE\n  hijack-lab \(synopsis)\n"
        if !discussion.isEmpty { text += "\n" + discussion + "\n" }
        if !options.isEmpty { text += "\nOPTIONS\n" + options.map(\.helpLine).joined(separator: "\n") + "\n" }
        text += "\n" + exitStatusHelp + "\n"
        if !examples.isEmpty { text += "\nEXAMPLES\n" + examples.map { "  " + $0 }.joined(separator: "\n") + "\n" }
        return text
    }
}

/// Reports a usage error the same way for every command, and returns its status.
package func usageFailure(_ command: String, _ message: String, console: Console) -> ExitStatus {
    console.err("hijack-lab \(command): \(message)\nRun `hijack-lab help \(command)` for usage.")
    return .usage
}
