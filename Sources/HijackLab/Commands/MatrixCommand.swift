import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation
import Glibc

struct MatrixCommand: Command {
    static let name = "matrix"
    static let synopsis = "matrix [options]"
    static let summary = CommandIndex.summary(of: name)
    static let options = [
        OptionSpec("--transport", "LIST", "tcp, udp (comma-separated subset)"),
        OptionSpec("--addresses", "LIST", "a subset of: " + MatrixEndpoint.standard.map(\.label).joined(separator: ", ")),
        OptionSpec("--options", "LIST", "a subset of: none, SO_REUSEADDR, SO_REUSEPORT, both"),
        OptionSpec("--users", "LIST", "same, other: who owns the second socket"),
        OptionSpec("--first", "SPEC", "the first socket alone: ADDRESS or ADDRESS/OPTIONS, comma-separated (e.g. '[::]/SO_REUSEPORT')"),
        OptionSpec("--second", "SPEC", "the second socket alone, likewise (--addresses and --options filter both)"),
        OptionSpec("--report", "FILE", "the grids (default MATRIX.md for the full matrix; - for stdout)"),
        OptionSpec("--json", "FILE", "every case, for scripts (- for stdout)"),
        OptionSpec("--audit", nil, "also audit the lab host in every case while its sockets are live; scores the audit against what the kernel did"),
    ] + laneOptions
    /// Where matrix lanes run and how long they wait: shared with `try`, which runs on them too.
    static let laneOptions = [
        OptionSpec("--topology", "netns|loopback", "where the lab runs (default: netns as root with `ip`)"),
        OptionSpec("--timeout", "SECONDS", "how long an agent may take to answer one command (default 5)"),
        OptionSpec("--workers", "N", "parallel lanes, each with its own agents and namespaces (default: cores, at most 2)"),
    ]
    static let discussion = """
        Runs every combination of transport x first address x second address x first options x
        second options x second user: 2 x 8 x 8 x 4 x 4 x 2 = 4,096 cases. Each case: the first
        socket binds and listens, then the second; then clients connect to 127.0.0.1 and ::1 and,
        from the peer, to the lab interface's IPv4 and IPv6 addresses, and the receiver names
        itself. Cases that need the netns topology (lab-interface, lab-interface6) or root
        (another user) are skipped with the reason.
        --addresses and --options choose for both sockets at once; --first and --second choose
        for one socket each, so a service's own bind can be held fixed against every second one.
        A filtered run (any of --transport, --addresses, --options, --users, --first, --second) writes no MATRIX.md
        unless --report names a file, so the committed grid is never replaced by a partial one.
        Progress goes to stderr. Exit status 1 when any case could not finish.
        """
    static let examples = [
        "hijack-lab matrix",
        "hijack-lab matrix --transport udp --addresses 0.0.0.0,127.0.0.1 --options SO_REUSEADDR --report -",
        "hijack-lab matrix --json /tmp/matrix.json --report /tmp/MATRIX.md",
        "hijack-lab matrix --first '[::]/SO_REUSEPORT' --transport tcp --report -",
    ]

    static func run(_ arguments: Arguments, in context: CommandContext) -> ExitStatus {
        let console = context.console
        if let extra = arguments.operands.first {
            return usageFailure(name, "matrix takes no operands (got \"\(UntrustedText.terminal(extra))\")", console: console)
        }
        var filter = MatrixFilter()
        let forced: Topology.Kind?
        let timeout: Double
        let workers: Int?
        do throws(UsageError) {
            if let list = try list("--transport", arguments, parse: { Transport(rawValue: $0) }, allowed: ["tcp", "udp"]) { filter.transports = list }
            if let list = try list("--addresses", arguments, parse: { name in MatrixEndpoint.standard.first { $0.label == name } },
                                   allowed: MatrixEndpoint.standard.map(\.label)) { filter.addresses = list }
            let parseOptions = { (name: String) -> MatrixOptions? in MatrixOptions(rawValue: name) ?? MatrixOptions.allCases.first { $0.short == name } }
            if let list = try list("--options", arguments, parse: parseOptions, allowed: ["none", "SO_REUSEADDR", "SO_REUSEPORT", "both"]) { filter.options = list }
            if let list = try list("--users", arguments, parse: { SocketUser(rawValue: $0) }, allowed: ["same", "other"]) { filter.users = list }
            let specs = MatrixEndpoint.standard.map { $0.label + "[/none|SO_REUSEADDR|SO_REUSEPORT|both]" }
            if let list = try list("--first", arguments, parse: MatrixFilter.SocketChoice.init(parsing:), allowed: specs) { filter.first = list }
            if let list = try list("--second", arguments, parse: MatrixFilter.SocketChoice.init(parsing:), allowed: specs) { filter.second = list }
            forced = try arguments.choice("--topology", Topology.Kind.allCases.map { ($0.rawValue, $0) })
            timeout = try arguments.seconds("--timeout", default: 5, range: 0.001...600)
            workers = try arguments.integer("--workers", range: 1...16)
        } catch {
            return usageFailure(name, error.message, console: console)
        }
        let filtered = ["--transport", "--addresses", "--options", "--users", "--first", "--second"].contains { arguments.value($0) != nil }
        let report = (arguments.value("--report") ?? (filtered ? nil : "MATRIX.md")).map { OutputFile(option: "--report", path: $0) }
        let json = arguments.value("--json").map { OutputFile(option: "--json", path: $0) }
        // The heat maps go next to a Markdown file (not to stdout): their names are known now,
        // so they are checked with the other outputs.
        let pictures = (report?.isRegularFile == true ? report : nil).map { report in
            filter.transports.flatMap { transport in filter.users.map { user in
                OutputFile(option: "--report", path: OutputFile.folder(of: report.path) + "/" + MatrixSVG.fileName(transport, user))
            } }
        } ?? []
        if let refused = OutputFile.refuse([report, json] + pictures, command: name, console: console) { return refused }

        InterruptGuard.install()
        let topology: Topology
        switch Topology.choose(forced: forced) {
        case .success(let chosen): topology = chosen
        case .failure(let unavailable): return usageFailure(name, unavailable.reason, console: console)
        }
        let settings = LabSettings(agentExecutable: context.agentExecutable, topology: topology, replyTimeout: timeout, connectTimeout: 1)
        let runner = workers.map { MatrixRunner(settings: settings, workers: $0) } ?? MatrixRunner(settings: settings)
        let cases = filter.cases
        let baselines = filter.baselines
        console.err("topology: \(topology.kind.rawValue) (\(topology.reason)); \(cases.count) cases and \(baselines.count) baselines on \(runner.workers) lanes")
        let step = max(1, cases.count / 10)
        let started = Deadline.now()
        let outcomes = runner.run(cases, audit: arguments.flag("--audit")) { done, total in
            if done % step == 0 || done == total { console.err("[\(String(repeating: " ", count: String(total).count - String(done).count))\(done)/\(total)] cases") }
        }
        // Baselines use ports of their own, above the cases' ports.
        // A socket alone has nothing to take: its baseline needs no audit.
        let alone = runner.run(baselines, portBase: 40_000)
        let elapsed = Double(Deadline.now().nanoseconds - started.nanoseconds) / 1e9
        if let signal = ChildRegistry.shared.interruption { return .interrupted(signal: signal) }
        var result = MatrixResult(environment: .current(topology: topology), destinations: runner.destinationLabels, cases: outcomes, baselines: alone)
        result.audit = result.auditScore
        result.predictions = result.predictionScore
        var files = OutputSet()
        if let report {
            let svgs = report.isRegularFile ? MatrixSVG.render(result) : []
            files.stage(MatrixReport.render(result, pictures: svgs), to: report)
            for svg in svgs { files.stage(svg.svg, to: OutputFile(option: "--report", path: OutputFile.folder(of: report.path) + "/" + svg.fileName)) }
        }
        if let json { files.stage(String(decoding: JSONFormat.encode(result), as: UTF8.self) + "\n", to: json) }
        guard let written = files.publish(console: console) else { return .interrupted(signal: ChildRegistry.shared.interruption ?? SIGINT) }
        for output in written where !output.isStandardOutput { console.err("wrote \(output.shown)") }
        for failure in files.failures { console.err("hijack-lab matrix: \(failure)") }
        if report == nil { console.err("a filtered matrix writes no MATRIX.md; --report FILE (or -) writes its grids") }
        console.err("\(outcomes.count) cases in \(elapsed.formatted(.number.precision(.fractionLength(2)))) s: \(result.takeovers.count) in which the second socket takes traffic from the first")
        if let score = result.audit {
            console.err("audit: recall \(MatrixReport.percent(score.recall)) (\(score.caught) of \(score.takes) take-overs flagged), precision \(MatrixReport.percent(score.precision)) (\(score.falseAlarmCount) false alarms in \(score.alarms) flagged cases)")
        }
        if let score = result.predictions {
            console.err("audit predictions: \(MatrixReport.percent(score.agreement)) agree with the kernel over \(score.cases) cases (\(score.disagreements.count) disagreements, \(score.unsettled) left out)")
        }
        for failure in (outcomes + alone).filter({ $0.status == .error }).prefix(5) {
            console.err("could not finish: \(failure.matrixCase.transport.rawValue) \(failure.matrixCase.first.label) / \(failure.matrixCase.second?.label ?? "alone"): \(failure.error ?? "")")
        }
        let status = ExitStatus(code: result.exitStatus)
        return files.failures.isEmpty ? status : status.worst(.usage)
    }

    private static func list<T>(_ flag: String, _ arguments: Arguments, parse: (String) -> T?, allowed: [String]) throws(UsageError) -> [T]? {
        guard let value = arguments.value(flag) else { return nil }
        switch MatrixFilter.parseList(value, flag: flag, parse: parse, allowed: allowed) {
        case .success(let list): return list
        case .failure(let problem): throw UsageError(message: problem.reason)
        }
    }
}
