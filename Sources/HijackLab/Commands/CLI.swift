import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Glibc

/// The command line: finds the command, reads its arguments, and returns the exit status.
/// `main.swift` only calls `CLI.run`.
public enum CLI {
    public static let version = "0.5.0"

    static let commands: [any Command.Type] = [
        AllCommand.self, RunCommand.self, ListCommand.self, ShowCommand.self, CheckCommand.self,
        AuditCommand.self, MatrixCommand.self,
    ]

    /// `agentExecutable` is the binary started in the agent role: normally this program itself.
    public static func run(_ arguments: [String], console: Console = .standard,
                           agentExecutable: String = LabSettings.currentExecutable()) -> Int32 {
        // A closed stdout or stderr must show up as EPIPE on a write, not kill the run
        // before it has written its files.
        signal(SIGPIPE, SIG_IGN)
        reserveStandardDescriptors()
        var status = dispatch(arguments, context: CommandContext(console: console, agentExecutable: agentExecutable))
        // Data that was asked for and did not arrive (a full disk, a closed stdout) is a failure;
        // a reader that stopped early (`| head`) is not.
        if let code = console.outFailure(), code != EPIPE {
            console.err("hijack-lab: cannot write stdout: \(SystemError(call: "write", code: code))")
            status = status.worst(.usage)
        }
        return status.code
    }

    /// A run started with stdout or stderr closed (`>&-`) would hand fd 1 or 2 to the first
    /// pipe it opens, and its progress would then go into an agent's stdin. /dev/null takes
    /// any of 0, 1 and 2 that is closed, so those numbers are never reused.
    /// A closed stdout stays a failure for anything written to it: data asked for on stdout
    /// (`--json -`) must not vanish into /dev/null with exit status 0.
    static func reserveStandardDescriptors() {
        for fd in Int32(0)...2 where fcntl(fd, F_GETFD) == -1 && errno == EBADF {
            let opened = open("/dev/null", O_RDWR)
            if opened >= 0, opened != fd { close(opened) }
            if fd == 1 { StandardStream.output.markClosed() }
        }
    }

    static func dispatch(_ arguments: [String], context: CommandContext) -> ExitStatus {
        let console = context.console
        guard let first = arguments.first else {
            console.err(overview)
            return .usage
        }
        let rest = Array(arguments.dropFirst())
        switch first {
        case "--version", "version":
            console.out("hijack-lab \(version)")
            return .success
        case "help", "--help", "-h":
            guard let topic = rest.first, topic != "help" else {
                console.out(overview)
                return .success
            }
            guard rest.count == 1 else {
                console.err("hijack-lab help: takes one command (got \(rest.count)); `hijack-lab help` lists them")
                return .usage
            }
            guard let command = command(named: topic) else { return unknownCommand(topic, console: console) }
            console.out(command.help)
            return .success
        case "agent":
            return AgentEntry.run(rest, console: console)
        default:
            guard let command = command(named: first) else { return unknownCommand(first, console: console) }
            let parsed: Arguments
            do throws(UsageError) {
                parsed = try Arguments(rest, command: command.name, options: command.options)
            } catch {
                return usageFailure(command.name, error.message, console: console)
            }
            if parsed.help {
                console.out(command.help)
                return .success
            }
            return command.run(parsed, in: context)
        }
    }

    static func command(named name: String) -> (any Command.Type)? {
        commands.first { $0.name == name }
    }

    static func unknownCommand(_ name: String, console: Console) -> ExitStatus {
        var message = "hijack-lab: unknown command \"\(UntrustedText.terminal(name))\""
        if let close = Suggestion.closest(to: name, among: commands.map { $0.name } + ["help"]) { message += "; did you mean \(close)?" }
        console.err(message + "\nCommands: " + commands.map { $0.name }.joined(separator: ", ") + ", help. Run `hijack-lab help` for more.")
        return .usage
    }

    /// `hijack-lab help`: what the tool is, its commands, and what every command shares.
    static var overview: String {
        let width = commands.map { $0.name.count }.max() ?? 0
        let list = commands.map { "  " + $0.name + String(repeating: " ", count: width - $0.name.count + 3) + $0.summary }
        return """
            hijack-lab \(version): can another process steal my port? Real processes, real sockets, real answers.

            USAGE
              hijack-lab COMMAND [options]
              hijack-lab help COMMAND     one command's options and examples (also: COMMAND --help)
              hijack-lab --version

            COMMANDS
            \(list.joined(separator: "\n"))

            EACH SCENARIO
              starts one process per socket (victim, attacker, defender or server). Each binds with the
              scenario's options; clients then connect, and each connection is answered by the process
              that accepted it, which writes its identity on it. The report compares who received each
              connection with what the scenario file expects.

            TOPOLOGIES
              netns     the full lab, the default as root (or with CAP_SYS_ADMIN) with iproute2's `ip`.
                        Each run makes two private network namespaces: the lab host (lo, and lab0 with
                        198.51.100.1/24 and 2001:db8::1/64) and an external peer (peer0, 198.51.100.2/24
                        and 2001:db8::2/64), joined by a veth pair. They vanish when the run ends.
              loopback  the host's own 127.0.0.1, on free ports. Scenarios that need the peer, the lab
                        interface, a bound device or (when not root) another user are skipped, with the
                        reason. If the default netns cannot be built, the run says so on stderr and at
                        the top of the report before it falls back to loopback.

            OUTPUT
              Data goes to stdout, progress and messages to stderr. FILE `-` means stdout. Every output
              path is checked before the first agent starts; files are written to a temp file and
              renamed, all together at the end, so an interrupted run leaves them all old.
              Host names in probes resolve only from the lab's own hosts file, never through DNS.

            \(ExitStatus.helpText)

            EXAMPLES
              hijack-lab all                                   every scenario; writes REPORT.md
              hijack-lab all --json - | python3 -m json.tool   the outcomes as JSON on stdout
              hijack-lab run wildcard-then-loopback-reuseport
              hijack-lab show per-interface-fix
              hijack-lab audit --min-severity warning
            """
    }
}
