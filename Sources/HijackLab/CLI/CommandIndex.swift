import Glibc
import HijackSystem

/// Every command's name and one-line summary, and the overview `hijack-lab help` prints. The
/// front answers help from here without starting the Foundation half of the tool; each
/// command's own type takes its summary from here, so the two never differ.
package enum CommandIndex {
    package static let version = "0.6.0"

    package static let entries: [(name: String, summary: String)] = [
        ("all", "run every scenario in scenarios/ and write REPORT.md"),
        ("run", "run the named scenarios (a report only with --report)"),
        ("list", "list the scenarios: name and title"),
        ("show", "explain one scenario: sockets, steps, probes, expectation"),
        ("check", "validate scenario files without running them"),
        ("try", "your own bind: who can take its traffic, with which bind, and the fix, from real sockets"),
        ("audit", "find shadowed and shadowable listeners on this host, now"),
        ("matrix", "every two-socket combination, run for real; writes MATRIX.md"),
        ("servers", "real servers (nginx, HAProxy, Redis, dnsmasq...) as shipped: who can take their traffic, and their fix shown holding"),
        ("kernels", "run the scenarios (and the matrix) on other Linux kernels under qemu; writes KERNELS.md"),
    ]

    package static var names: [String] { entries.map(\.name) }

    package static func summary(of name: String) -> String {
        entries.first { $0.name == name }?.summary ?? ""
    }

    package static func unknownCommand(_ name: String, console: Console) -> ExitStatus {
        var message = "hijack-lab: unknown command \"\(UntrustedText.terminal(name))\""
        if let close = Suggestion.closest(to: name, among: names + ["help"]) { message += "; did you mean \(close)?" }
        console.err(message + "\nCommands: " + names.joined(separator: ", ") + ", help. Run `hijack-lab help` for more.")
        return .usage
    }

    /// `hijack-lab help`: what the tool is, its commands, and what every command shares.
    package static var overview: String {
        let width = entries.map { $0.name.count }.max() ?? 0
        let list = entries.map { "  " + $0.name + String(repeating: " ", count: width - $0.name.count + 3) + $0.summary }
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
              renamed, all together at the end, so an interrupted run leaves them all old. What
              is at an output's name never steers the write: a symlink there is replaced, not
              followed; a FIFO or device is written only when named as one (`-`, /dev/stdout,
              /dev/fd/N), and gives up after 30 s without progress.
              Host names in probes resolve only from the lab's own hosts file, never through DNS.

            \(ExitStatus.helpText)

            EXAMPLES
              hijack-lab all                                   every scenario; writes REPORT.md
              hijack-lab all --json - | python3 -m json.tool   the outcomes as JSON on stdout
              hijack-lab run wildcard-then-loopback-reuseport
              hijack-lab show per-interface-fix
              hijack-lab try '[::]:8443' --options SO_REUSEPORT   your own bind: who can take it, and the fix
              hijack-lab audit --min-severity warning
            """
    }
}

/// What every run of the tool shares, front or full: a closed stdout or stderr must not kill it
/// or hand its descriptor number to a pipe, and data asked for that did not arrive is exit 2.
package enum ToolSession {
    package static func run(console: Console, _ body: () -> ExitStatus) -> Int32 {
        // A closed stdout or stderr must show up as EPIPE on a write, not kill the run
        // before it has written its files.
        signal(SIGPIPE, SIG_IGN)
        reserveStandardDescriptors()
        var status = body()
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
    package static func reserveStandardDescriptors() {
        for fd in Int32(0)...2 where fcntl(fd, F_GETFD) == -1 && errno == EBADF {
            let opened = open("/dev/null", O_RDWR)
            if opened >= 0, opened != fd { close(opened) }
            if fd == 1 { StandardStream.output.markClosed() }
        }
    }

    /// The one reading of a command line, front and full alike: --version, help, the agent
    /// role, or one of `commands`.
    package static func route(_ arguments: [String], among commands: [any Command.Type], context: CommandContext) -> ExitStatus {
        let console = context.console
        guard let first = arguments.first else {
            console.err(CommandIndex.overview)
            return .usage
        }
        let rest = Array(arguments.dropFirst())
        let named = { (name: String) in commands.first { $0.name == name } }
        switch first {
        case "--version", "version":
            guard rest.isEmpty else {
                console.err("hijack-lab \(first): takes nothing after it (got \(UntrustedText.terminal(rest.joined(separator: " "))))")
                return .usage
            }
            console.out("hijack-lab \(CommandIndex.version)")
            return .success
        case "agent":
            return AgentEntry.run(rest, console: console)
        case "launch":
            return LaunchEntry.run(rest, console: console)
        case "help", "--help", "-h":
            guard let topic = rest.first, topic != "help" else {
                console.out(CommandIndex.overview)
                return .success
            }
            guard rest.count == 1 else {
                console.err("hijack-lab help: takes one command (got \(rest.count)); `hijack-lab help` lists them")
                return .usage
            }
            guard let command = named(topic) else { return CommandIndex.unknownCommand(topic, console: console) }
            console.out(command.help)
            return .success
        default:
            guard let command = named(first) else { return CommandIndex.unknownCommand(first, console: console) }
            return dispatch(command, rest, context: context)
        }
    }

    /// Reads a command's options and runs it, or prints its help.
    package static func dispatch(_ command: any Command.Type, _ arguments: [String], context: CommandContext) -> ExitStatus {
        let parsed: Arguments
        do throws(UsageError) {
            parsed = try Arguments(arguments, command: command.name, options: command.options)
        } catch {
            return usageFailure(command.name, error.message, console: context.console)
        }
        if parsed.help {
            context.console.out(command.help)
            return .success
        }
        return command.run(parsed, in: context)
    }
}
