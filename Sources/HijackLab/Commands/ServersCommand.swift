import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation
import Glibc

/// `hijack-lab servers [NAME...]`: the real servers of servers/, as shipped and with their fix.
struct ServersCommand: Command {
    static let name = "servers"
    static let synopsis = "servers [NAME...] [options]"
    static let summary = CommandIndex.summary(of: name)
    static let folderOption = OptionSpec("--servers", "DIR", "where the server files are (default: servers)")
    static let options = [
        folderOption,
        OptionSpec("--report", "FILE", "also write the \"Servers as shipped\" Markdown here (- for stdout)"),
        OptionSpec("--json", "FILE", "also write every run as JSON, for scripts (- for stdout)"),
        OptionSpec("--timeout", "SECONDS", "how long a client or an agent may take to answer (default 2, at most 600)"),
        OptionSpec("--verbose", nil, "print each step as it starts (on stderr)"),
    ]
    static let discussion = """
        Runs each real server of the catalog (every servers/*.json, or the ones named) inside a
        lab of its own: two private network namespaces, never the host's. Each starts as its
        package's unit starts it (as root when it binds and then drops to its account, or as
        its account), in the foreground, on its shipped default port, with every file in a temp
        folder. Then the lab's agents, as the server's account, as the owner of its sockets
        (root, where that differs) and as another account, try the binds that the rules say
        could take its traffic, and one they say fails. Real clients connect from the lab host
        (127.0.0.1, ::1, localhost) and from the external peer (198.51.100.1, 2001:db8::1); the
        receiver of each TCP connection is the process that holds the accepted socket (sock_diag
        and /proc), of each datagram whoever answered. Then the server starts again with its
        file's fix, and the same attacks are repeated.

        A server whose package is not installed is listed as skipped, with its apt-get line.
        Needs root and iproute2's `ip`. Adding a server is one file: see servers/README.md.
        """
    static let exitStatusHelp = """
        EXIT STATUS
          0    every server ran, every receiver was confirmed, the kernel agreed with every
               prediction, and every fix held (or none could run here: each is listed as skipped)
          1    a server could not finish, a receiver could not be confirmed, the kernel
               disagreed with a prediction, or a fix did not hold
          2    usage error, a server file that could not be read, or an output that could not be written
          130  interrupted by SIGINT, 143 by SIGTERM; every server and agent was killed and the
               temp folder removed
        """
    static let examples = [
        "sudo hijack-lab servers",
        "sudo hijack-lab servers haproxy unbound --report -",
        "sudo hijack-lab servers --json - | python3 -m json.tool",
    ]

    static func run(_ arguments: Arguments, in context: CommandContext) -> ExitStatus {
        let console = context.console
        let timeout: Double
        do throws(UsageError) {
            timeout = try arguments.seconds("--timeout", default: 2, range: 0.001...600)
        } catch {
            return usageFailure(name, error.message, console: console)
        }
        let folder = arguments.value("--servers") ?? "servers"
        let catalog: [ServerSpec]
        switch ServerCatalog.load(folder, names: arguments.operands) {
        case .success(let loaded): catalog = loaded
        case .failure(let problem):
            console.err("hijack-lab servers: \(problem.message)")
            return .usage
        }
        let report = arguments.value("--report").map { OutputFile(option: "--report", path: $0) }
        let json = arguments.value("--json").map { OutputFile(option: "--json", path: $0) }
        if let refused = OutputFile.refuse([report, json], command: name, console: console) { return refused }

        InterruptGuard.install()
        let evidence = ServerCatalog.run(catalog, agentExecutable: context.agentExecutable, timeout: timeout, verbose: arguments.flag("--verbose"), console: console)
        if let signal = ChildRegistry.shared.interruption { return .interrupted(signal: signal) }
        for outcome in evidence.servers { console.out(ServersReport.terminalLine(outcome)) }
        for skipped in evidence.skipped { console.out(UntrustedText.terminal("\(skipped.name): skipped, \(skipped.reason) (\(skipped.install))")) }
        if let unavailable = evidence.unavailable { console.err("hijack-lab servers: no server ran: \(unavailable)") }

        var files = OutputSet()
        if let report { files.stage(ServersReport.standalone(evidence), to: report) }
        if let json { files.stage(String(decoding: JSONFormat.encode(evidence), as: UTF8.self) + "\n", to: json) }
        guard let written = files.publish(console: console) else { return .interrupted(signal: ChildRegistry.shared.interruption ?? SIGINT) }
        for output in written where !output.isStandardOutput { console.err("wrote \(output.shown)") }
        for failure in files.failures { console.err("hijack-lab servers: \(failure)") }
        let status = ExitStatus(code: evidence.exitStatus)
        return files.failures.isEmpty ? status : status.worst(.usage)
    }
}

/// Loading and running the catalog, for `servers` and `all`.
enum ServerCatalog {
    static func load(_ folder: String, names: [String]) -> Result<[ServerSpec], UsageError> {
        let loaded: (servers: [ServerSpec], errors: [ScenarioError])
        do throws(ScenarioError) {
            loaded = try ServerFile.loadDirectory(folder)
        } catch {
            return .failure(UsageError(message: error.description))
        }
        if let error = loaded.errors.first { return .failure(UsageError(message: "invalid server file: \(error)")) }
        guard !names.isEmpty else { return .success(loaded.servers) }
        var picked: [ServerSpec] = []
        for name in names {
            guard let server = loaded.servers.first(where: { $0.name == name }) else {
                var message = "no server \"\(UntrustedText.terminal(name))\" in \(folder)"
                if let close = Suggestion.closest(to: name, among: loaded.servers.map(\.name)) { message += "; did you mean \(close)?" }
                return .failure(UsageError(message: message + " (there: " + loaded.servers.map(\.name).joined(separator: ", ") + ")"))
            }
            if !picked.contains(where: { $0.name == name }) { picked.append(server) }
        }
        return .success(picked)
    }

    static func run(_ catalog: [ServerSpec], agentExecutable: String, timeout: Double, verbose: Bool, console: Console) -> ServersEvidence {
        if let unavailable = ServerLab.unavailable() {
            return ServersEvidence(servers: [], skipped: catalog.map { .init(name: $0.name, package: $0.package, reason: unavailable) }, unavailable: unavailable)
        }
        let status = ProcNet.read(DpkgStatus.path)
        var runnable: [(ServerSpec, String)] = []
        var skipped: [ServersEvidence.Skipped] = []
        for spec in catalog {
            if let missing = ServerLab.missing(spec, status: status) {
                skipped.append(.init(name: spec.name, package: spec.package, reason: missing))
            } else {
                runnable.append((spec, DpkgStatus.version(of: spec.package, in: status ?? "") ?? "?"))
            }
        }
        var settings = LabSettings(agentExecutable: agentExecutable, topology: .netns(reason: "the servers' own labs"), replyTimeout: max(timeout, 5), connectTimeout: timeout)
        settings.auditAll = false
        let lab = ServerLab(settings: settings)
        if verbose { lab.onProgress = { console.err("  " + UntrustedText.terminal($0)) } }
        var outcomes: [ServerOutcome] = []
        let temporary: TemporaryFolder
        do throws(LabError) {
            temporary = try TemporaryFolder(prefix: "hijack-lab-servers")
        } catch {
            return ServersEvidence(servers: [], skipped: skipped, unavailable: error.description)
        }
        defer { temporary.remove() }
        // The servers' accounts must reach their own folders inside it.
        chmod(temporary.path, 0o755)
        for (index, (spec, version)) in runnable.enumerated() {
            if ChildRegistry.shared.interruption != nil { break }
            let started = Deadline.now()
            let outcome = lab.run(spec, version: version, folder: temporary.path)
            outcomes.append(outcome)
            let milliseconds = (Deadline.now().nanoseconds - started.nanoseconds) / 1_000_000
            let verdict = outcome.isClean ? "clean" : "NOT CLEAN (see the report)"
            console.err("[\(index + 1)/\(runnable.count)] \(UntrustedText.terminal(spec.name)): \(verdict), \(milliseconds) ms")
        }
        return ServersEvidence(servers: outcomes, skipped: skipped)
    }
}
