import Foundation

struct AuditCommand: Command {
    static let name = "audit"
    static let synopsis = "audit [options]"
    static let summary = "find shadowed and shadowable listeners on this host, now"
    static let options = [
        OptionSpec("--json", "FILE", "write the sockets and findings as JSON (- for stdout, instead of the table)"),
        OptionSpec("--min-severity", "LEVEL", "info (default), warning or alarm: what the table and list show"),
        OptionSpec("--port", "N", "only this port"),
    ]
    static let discussion = """
        Reads /proc/net/{tcp,tcp6,udp,udp6} of the current network namespace (TCP listeners, bound
        UDP sockets) and maps each socket to its process through /proc/PID/fd; as another user you
        see their sockets but not their processes (shown as ?): root sees more. IPV6_V6ONLY and
        bound devices come from NETLINK_SOCK_DIAG; without it a lone [::] is read as dual-stack.
        Process and user names are printed escaped (\\x1b, \\n): they are not this tool's text.
        Findings:
          alarm    interception    a more specific socket of another uid takes a wildcard's traffic
                                   (127.0.0.1 before 0.0.0.0, or ::1 before 127.0.0.1 for "localhost")
          warning  shadowing       the same, between different processes of one uid
          warning  exposure        loopback or wildcard on one family only: the other is free to bind
          info     load-balancing  several sockets on one address and port (SO_REUSEPORT, UDP SO_REUSEADDR)
        The exit status is 1 when an interception or shadowing finding exists, whatever is shown.
        """
    static let examples = ["hijack-lab audit", "hijack-lab audit --min-severity alarm --json findings.json", "hijack-lab audit --port 8080 --json -"]

    static func run(_ arguments: Arguments, in context: CommandContext) -> ExitStatus {
        let console = context.console
        if let extra = arguments.operands.first {
            return usageFailure(name, "audit takes no operands (got \"\(UntrustedText.terminal(extra))\")", console: console)
        }
        let minimum: AuditFinding.Severity
        let port: UInt16?
        do throws(UsageError) {
            minimum = try arguments.choice("--min-severity", AuditFinding.Severity.allCases.map { ($0.rawValue, $0) }) ?? .info
            port = try arguments.integer("--port", range: 1...65535).map { UInt16($0) }
        } catch {
            return usageFailure(name, error.message, console: console)
        }
        let json = arguments.value("--json").map { OutputFile(option: "--json", path: $0) }
        if let problem = json?.problem() { return usageFailure(name, problem, console: console) }

        let report = Audit.run(port: port)
        if json?.isStandardOutput != true { console.out(AuditText.render(report, minimum: minimum)) }
        guard let json else { return ExitStatus(code: report.exitStatus) }
        var files = OutputSet()
        files.stage(String(decoding: JSONFormat.encode(report), as: UTF8.self) + "\n", to: json)
        _ = files.publish(console: console)
        for failure in files.failures { console.err("hijack-lab audit: \(failure)") }
        return files.failures.isEmpty ? ExitStatus(code: report.exitStatus) : .usage
    }
}

/// The one JSON style of every `--json` output: pretty, keys sorted so diffs stay small.
enum JSONFormat {
    static func encode<T: Encodable>(_ value: T) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Plain structs of strings and numbers: encoding cannot fail.
        return (try? encoder.encode(value)) ?? Data("{}".utf8)
    }
}
