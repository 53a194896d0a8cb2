import Dispatch
import Foundation
import Glibc

/// Where the CLI writes; tests pass closures that collect the text.
public struct Console: Sendable {
    public var out: @Sendable (String) -> Void
    public var err: @Sendable (String) -> Void

    public init(out: @escaping @Sendable (String) -> Void, err: @escaping @Sendable (String) -> Void) {
        self.out = out
        self.err = err
    }

    public static let standard = Console(
        out: { text in FileHandle.standardOutput.write(Data((text + "\n").utf8)) },
        err: { text in FileHandle.standardError.write(Data((text + "\n").utf8)) })
}

/// The command line: parses arguments, calls the library, and returns the exit status.
public enum CLI {
    public static let usage = """
    hijack-lab: can another process steal my port? Real processes, real sockets, real answers.

    USAGE
      hijack-lab all  [options]          run every scenario in scenarios/ and write REPORT.md
      hijack-lab run NAME... [options]   run the named scenarios (a report only with --report)
      hijack-lab list [--scenarios DIR]  list the scenarios: name and title
      hijack-lab show NAME [--scenarios DIR]
                                         explain one scenario: sockets, steps, probes, expectation
      hijack-lab audit [options]         find shadowed and shadowable listeners on this host, now
      hijack-lab matrix [options]        every two-socket combination, run for real; writes MATRIX.md
      hijack-lab help                    this text

    OPTIONS (all, run)
      --scenarios DIR   where the scenario files are (default: scenarios)
      --report FILE     write the Markdown report here (all: default REPORT.md)
      --json FILE       also write every outcome as JSON, for scripts
      --timeout SECONDS how long an agent may take to answer one command (default 5)
      --topology netns|loopback
                        where the lab runs. Default: netns when run as root (or with CAP_SYS_ADMIN)
                        and iproute2's `ip` is installed, loopback otherwise
      --verbose         print each step as it starts
      --audit           also run the audit while each scenario's sockets are live, into the report

    AUDIT
      Reads /proc/net/{tcp,tcp6,udp,udp6} of the current network namespace (TCP listeners, bound
      UDP sockets) and maps each socket to its process through /proc/PID/fd; as another user you
      see their sockets but not their processes (shown as ?): root sees more. Findings:
        alarm    interception   a more specific socket of another uid takes a wildcard's traffic
                                (127.0.0.1 before 0.0.0.0, or ::1 before 127.0.0.1 for "localhost")
        warning  shadowing      the same, between different processes of one uid
        warning  exposure       loopback or wildcard on one family only: the other is free to bind
        info     load-balancing several sockets on one address and port (SO_REUSEPORT, UDP SO_REUSEADDR)
      /proc does not show IPV6_V6ONLY: a lone [::] is read as dual-stack.
      --json FILE              write the sockets and findings as JSON
      --min-severity LEVEL     info (default), warning or alarm: what the table and list show
      --port N                 only this port
      Exit status 1 when an interception or shadowing finding exists (whatever is shown), 0 otherwise.

    MATRIX
      Runs every combination of transport (tcp, udp) x first address x second address x first
      options x second options x second user (same, other): 2 x 7 x 7 x 4 x 4 x 2 = 3,136 cases.
      Each case: the first socket binds and listens, then the second; then clients connect to
      127.0.0.1 and ::1 and, from the peer, to the lab interface, and the receiver names itself.
      Addresses: 0.0.0.0, 127.0.0.1, [::], [::]v6only, ::1, ::ffff:127.0.0.1, lab-interface
      Options:   none, SO_REUSEADDR, SO_REUSEPORT, both
      --transport LIST  --addresses LIST  --options LIST  --users LIST (same, other)
                        comma-separated subsets; addresses apply to both sockets
      --report FILE     the grids (default MATRIX.md)     --json FILE   every case, for scripts
      --workers N       parallel lanes, each with its own agents and namespaces (default: cores, at most 2)
      Cases that need the netns topology (lab-interface) or root (another user) are skipped with the reason.
      Exit status 0 when every case ran or was skipped, 1 when any could not finish, 2 for usage errors.

    TOPOLOGIES
      netns     the full lab. Each run makes two private network namespaces: the lab host (lo, and
                lab0 with 198.51.100.1/24 and 2001:db8::1/64) and an external peer (peer0 with
                198.51.100.2/24 and 2001:db8::2/64), joined by a veth pair. Every socket and client
                lives in them; they vanish when the run ends, however it ends.
      loopback  the host's own 127.0.0.1, on free ports. Scenarios that need the peer, the lab
                interface, a bound device or (when not root) another user are skipped, with the reason.

    EACH SCENARIO
      starts one process per socket (victim, attacker, defender or server). Each binds with the
      scenario's options; clients then connect, and each connection is answered by the process
      that accepted it, which writes its identity on it. The report compares who received each
      connection with what the scenario file expects.

    EXIT STATUS
      0  every scenario that ran matched its expectation
      1  some scenario differed from its expectation, or could not finish
      2  usage error, or a scenario file could not be read (the message names file and field)
      130/143  interrupted by SIGINT/SIGTERM; every agent was killed first

    EXAMPLES
      swift run hijack-lab all
      swift run hijack-lab run wildcard-then-loopback-reuseport --json /tmp/out.json
      swift run hijack-lab show per-interface-fix
    """

    /// `agentExecutable` is the binary started in the agent role: normally this program itself.
    public static func run(_ arguments: [String], console: Console = .standard, agentExecutable: String = LabSettings.currentExecutable()) -> Int32 {
        guard let command = arguments.first else {
            console.err(usage)
            return 2
        }
        let rest = Array(arguments.dropFirst())
        switch command {
        case "agent":
            return agent(rest, console: console)
        case "help", "--help", "-h":
            console.out(usage)
            return 0
        case "audit":
            return audit(rest, console: console)
        case "matrix":
            return matrix(rest, console: console, agentExecutable: agentExecutable)
        case "all", "run", "list", "show":
            do throws(UsageError) {
                let options = try Options.parse(rest, command: command)
                if options.help {
                    console.out(usage)
                    return 0
                }
                switch command {
                case "list": return list(options, console: console)
                case "show": return show(options, console: console)
                default: return runScenarios(options, all: command == "all", console: console, agentExecutable: agentExecutable)
                }
            } catch {
                console.err("hijack-lab \(command): \(error.message)\nRun `hijack-lab help` for usage.")
                return 2
            }
        default:
            console.err("hijack-lab: unknown command \"\(command)\". Commands: all, run, list, show, help.")
            return 2
        }
    }

    struct UsageError: Error { var message: String }

    struct Options {
        var scenarios = "scenarios"
        var report: String?
        var json: String?
        var timeout: Double = 5
        var names: [String] = []
        var help = false
        var topology: Topology.Kind?
        var verbose = false
        var audit = false

        static func parse(_ arguments: [String], command: String) throws(UsageError) -> Options {
            var options = Options()
            var index = 0
            func value(_ flag: String) throws(UsageError) -> String {
                index += 1
                guard index < arguments.count, !arguments[index].hasPrefix("--") else { throw UsageError(message: "\(flag) needs a value") }
                return arguments[index]
            }
            while index < arguments.count {
                let argument = arguments[index]
                switch argument {
                case "--scenarios": options.scenarios = try value(argument)
                case "--report" where command == "all" || command == "run": options.report = try value(argument)
                case "--json" where command == "all" || command == "run": options.json = try value(argument)
                case "--timeout" where command == "all" || command == "run":
                    let text = try value(argument)
                    guard let seconds = Double(text), seconds > 0, seconds <= 600 else {
                        throw UsageError(message: "--timeout expects seconds between 0 and 600, got \"\(text)\"")
                    }
                    options.timeout = seconds
                case "--topology" where command == "all" || command == "run":
                    let text = try value(argument)
                    guard let kind = Topology.Kind(rawValue: text) else { throw UsageError(message: "--topology expects netns or loopback, got \"\(text)\"") }
                    options.topology = kind
                case "--verbose" where command == "all" || command == "run": options.verbose = true
                case "--audit" where command == "all" || command == "run": options.audit = true
                case "--help", "-h": options.help = true
                default:
                    if argument.hasPrefix("-") { throw UsageError(message: "unknown option \(argument) for \(command)") }
                    options.names.append(argument)
                }
                index += 1
            }
            switch command {
            case "all", "list":
                if let name = options.names.first { throw UsageError(message: "\(command) takes no scenario names (got \"\(name)\"); use `run NAME`") }
            case "run":
                if options.names.isEmpty && !options.help { throw UsageError(message: "run needs at least one scenario name; `hijack-lab list` shows them") }
            case "show":
                if options.names.count != 1 && !options.help { throw UsageError(message: "show takes exactly one scenario name") }
            default: break
            }
            return options
        }
    }

    // MARK: - Commands

    /// The hidden role the runner starts: `agent --id ID [--netns new|PATH] [--user other] [--lab-hosts]`.
    static func agent(_ arguments: [String], console: Console) -> Int32 {
        var id: String?
        var netns: String?
        var runAsOther = false
        var labHosts = false
        var index = 0
        while index < arguments.count {
            if arguments[index] == "--lab-hosts" {
                labHosts = true
                index += 1
                continue
            }
            switch (arguments[index], index + 1 < arguments.count ? arguments[index + 1] : nil) {
            case ("--id", let value?): id = value
            case ("--netns", let value?): netns = value
            case ("--user", "other"): runAsOther = true
            default:
                console.err("hijack-lab agent is started by the runner itself: agent --id ID [--netns new|PATH] [--user other] [--lab-hosts]")
                return 2
            }
            index += 2
        }
        guard let id else {
            console.err("hijack-lab agent needs --id")
            return 2
        }
        return Agent(id: id, netns: netns, runAsOther: runAsOther, labHosts: labHosts).run()
    }

    static func list(_ options: Options, console: Console) -> Int32 {
        let loaded: (scenarios: [Scenario], errors: [ScenarioError])
        do throws(ScenarioError) {
            loaded = try ScenarioFile.loadDirectory(options.scenarios)
        } catch {
            console.err(error.description)
            return 2
        }
        let width = loaded.scenarios.map(\.name.count).max() ?? 0
        for scenario in loaded.scenarios {
            console.out(scenario.name.padding(toLength: width + 2, withPad: " ", startingAt: 0) + scenario.title)
        }
        for error in loaded.errors { console.err("invalid: \(error)") }
        return loaded.errors.isEmpty ? 0 : 2
    }

    static func show(_ options: Options, console: Console) -> Int32 {
        let name = options.names[0]
        let path = "\(options.scenarios)/\(name).json"
        guard FileManager.default.fileExists(atPath: path) else {
            console.err("hijack-lab show: no scenario \"\(name)\" (looked for \(path)); `hijack-lab list` shows them")
            return 2
        }
        do throws(ScenarioError) {
            console.out(ScenarioText.explain(try ScenarioFile.load(path: path)))
            return 0
        } catch {
            console.err(error.description)
            return 2
        }
    }

    static func runScenarios(_ options: Options, all: Bool, console: Console, agentExecutable: String) -> Int32 {
        let loaded: (scenarios: [Scenario], errors: [ScenarioError])
        do throws(ScenarioError) {
            loaded = try ScenarioFile.loadDirectory(options.scenarios)
        } catch {
            console.err(error.description)
            return 2
        }
        var invalid = loaded.errors
        var selected = loaded.scenarios
        if !all {
            var picked: [Scenario] = []
            for name in options.names {
                if let scenario = loaded.scenarios.first(where: { $0.name == name }) {
                    picked.append(scenario)
                } else if let error = loaded.errors.first(where: { ($0.file as NSString).lastPathComponent == "\(name).json" }) {
                    console.err(error.description)
                    return 2
                } else {
                    console.err("hijack-lab run: no scenario \"\(name)\" in \(options.scenarios)/; `hijack-lab list` shows them")
                    return 2
                }
            }
            selected = picked
            invalid = []
        }
        for error in invalid { console.err("invalid scenario file: \(error)") }

        InterruptGuard.install()
        var topology: Topology
        switch Topology.choose(forced: options.topology) {
        case .success(let chosen): topology = chosen
        case .failure(let unavailable):
            console.err("hijack-lab: \(unavailable.reason)")
            return 2
        }
        var settings = LabSettings(agentExecutable: agentExecutable, topology: topology, replyTimeout: options.timeout)
        settings.auditAll = options.audit
        var runner = Runner(settings: settings)
        do throws(LabError) {
            try runner.prepare()
        } catch {
            guard options.topology == nil, topology.kind == .netns else {
                console.err("hijack-lab: the \(topology.kind.rawValue) topology could not be set up: \(error)")
                return 2
            }
            topology = .loopback(reason: "the host's own loopback, because the private namespaces could not be set up: \(error)")
            console.err("hijack-lab: falling back to loopback: \(error)")
            settings.topology = topology
            runner = Runner(settings: settings)
        }
        console.out("topology: \(topology.kind.rawValue) (\(topology.reason))")
        if options.verbose { runner.onStep = { scenario, step in console.out("  \(scenario): \(step.description)") } }
        var outcomes: [ScenarioOutcome] = []
        for (index, scenario) in selected.enumerated() {
            let started = Deadline.now()
            let outcome = runner.run(scenario)
            let elapsed = (Deadline.now().nanoseconds - started.nanoseconds) / 1_000_000
            outcomes.append(outcome)
            console.out(ScenarioText.progressLine(outcome, index: index + 1, of: selected.count, milliseconds: elapsed))
        }
        runner.shutdown()

        // An interrupted run's last scenario "failed" only because its agents were killed:
        // write no report about it; the signal handler is ending the process with 128+signal.
        if let signal = ChildRegistry.shared.interruption { return 128 + signal }
        let report = LabReport(environment: .current(topology: topology), scenarios: outcomes, invalidFiles: invalid.map(LabReport.InvalidFile.init))
        let reportPath = options.report ?? (all ? "REPORT.md" : nil)
        if let reportPath {
            guard write(MarkdownReport.render(report), to: reportPath, console: console) else { return 2 }
            console.out("wrote \(reportPath)")
        }
        if let json = options.json {
            guard write(String(decoding: JSONReport.render(report), as: UTF8.self) + "\n", to: json, console: console) else { return 2 }
            console.out("wrote \(json)")
        }
        let status = report.exitStatus
        let differing = outcomes.filter { $0.status != .skipped && !$0.matchesExpectation }.map(\.name)
        if !differing.isEmpty { console.out("differed from expectation or could not finish: \(differing.joined(separator: ", "))") }
        return status
    }

    static func matrix(_ arguments: [String], console: Console, agentExecutable: String) -> Int32 {
        var filter = MatrixFilter()
        var report = "MATRIX.md"
        var json: String?
        var forced: Topology.Kind?
        var timeout = 5.0
        var workers: Int?
        var index = 0
        func fail(_ message: String) -> Int32 {
            console.err("hijack-lab matrix: \(message)\nRun `hijack-lab help` for usage.")
            return 2
        }
        while index < arguments.count {
            let flag = arguments[index]
            if flag == "--help" || flag == "-h" {
                console.out(usage)
                return 0
            }
            guard index + 1 < arguments.count, !arguments[index + 1].hasPrefix("--") else { return fail("\(flag) needs a value (or is not an option)") }
            let value = arguments[index + 1]
            switch flag {
            case "--transport":
                switch MatrixFilter.parseList(value, flag: flag, parse: { Transport(rawValue: $0) }, allowed: ["tcp", "udp"]) {
                case .success(let list): filter.transports = list
                case .failure(let problem): return fail(problem.reason)
                }
            case "--addresses":
                switch MatrixFilter.parseList(value, flag: flag, parse: { name in MatrixEndpoint.standard.first { $0.label == name } },
                                              allowed: MatrixEndpoint.standard.map(\.label)) {
                case .success(let list): filter.addresses = list
                case .failure(let problem): return fail(problem.reason)
                }
            case "--options":
                let parse = { (name: String) -> MatrixOptions? in MatrixOptions(rawValue: name) ?? MatrixOptions.allCases.first { $0.short == name } }
                switch MatrixFilter.parseList(value, flag: flag, parse: parse, allowed: ["none", "SO_REUSEADDR", "SO_REUSEPORT", "both"]) {
                case .success(let list): filter.options = list
                case .failure(let problem): return fail(problem.reason)
                }
            case "--users":
                switch MatrixFilter.parseList(value, flag: flag, parse: { SocketUser(rawValue: $0) }, allowed: ["same", "other"]) {
                case .success(let list): filter.users = list
                case .failure(let problem): return fail(problem.reason)
                }
            case "--report": report = value
            case "--json": json = value
            case "--topology":
                guard let kind = Topology.Kind(rawValue: value) else { return fail("--topology expects netns or loopback, got \"\(value)\"") }
                forced = kind
            case "--timeout":
                guard let seconds = Double(value), seconds > 0, seconds <= 600 else { return fail("--timeout expects seconds between 0 and 600, got \"\(value)\"") }
                timeout = seconds
            case "--workers":
                guard let count = Int(value), (1...16).contains(count) else { return fail("--workers expects 1 to 16, got \"\(value)\"") }
                workers = count
            default:
                return fail("unknown option \(flag)")
            }
            index += 2
        }
        let topology: Topology
        switch Topology.choose(forced: forced) {
        case .success(let chosen): topology = chosen
        case .failure(let unavailable): return fail(unavailable.reason)
        }
        InterruptGuard.install()
        let settings = LabSettings(agentExecutable: agentExecutable, topology: topology, replyTimeout: timeout, connectTimeout: 1)
        let runner = workers.map { MatrixRunner(settings: settings, workers: $0) } ?? MatrixRunner(settings: settings)
        let cases = filter.cases
        let baselines = filter.baselines
        console.out("topology: \(topology.kind.rawValue) (\(topology.reason)); \(cases.count) cases and \(baselines.count) baselines on \(runner.workers) lanes")
        let step = max(1, cases.count / 10)
        runner.onProgress = { done, total in
            if done % step == 0 || done == total { console.out("[\(String(repeating: " ", count: String(total).count - String(done).count))\(done)/\(total)] cases") }
        }
        let started = Deadline.now()
        let outcomes = runner.run(cases)
        runner.onProgress = nil
        // Baselines use ports of their own, above the cases' ports.
        let alone = runner.run(baselines, portBase: 40_000)
        let elapsed = Double(Deadline.now().nanoseconds - started.nanoseconds) / 1e9
        if let signal = ChildRegistry.shared.interruption { return 128 + signal }
        let result = MatrixResult(environment: .current(topology: topology), destinations: runner.destinationLabels, cases: outcomes, baselines: alone)
        guard write(MatrixReport.render(result), to: report, console: console) else { return 2 }
        console.out("wrote \(report) (\(result.takeovers.count) cases in which the second socket takes traffic from the first) in \(elapsed.formatted(.number.precision(.fractionLength(2)))) s")
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            guard let data = try? encoder.encode(result), write(String(decoding: data, as: UTF8.self) + "\n", to: json, console: console) else { return 2 }
            console.out("wrote \(json)")
        }
        for failure in (outcomes + alone).filter({ $0.status == .error }).prefix(5) {
            console.err("could not finish: \(failure.matrixCase.transport.rawValue) \(failure.matrixCase.first.label) / \(failure.matrixCase.second?.label ?? "alone"): \(failure.error ?? "")")
        }
        return result.exitStatus
    }

    static func audit(_ arguments: [String], console: Console) -> Int32 {
        var json: String?
        var minimum = AuditFinding.Severity.info
        var port: UInt16?
        var index = 0
        while index < arguments.count {
            let flag = arguments[index]
            let value = index + 1 < arguments.count ? arguments[index + 1] : nil
            switch flag {
            case "--help", "-h":
                console.out(usage)
                return 0
            case "--json" where value != nil: json = value
            case "--min-severity" where value != nil:
                guard let level = AuditFinding.Severity(rawValue: value!) else {
                    console.err("hijack-lab audit: --min-severity expects info, warning or alarm, got \"\(value!)\"")
                    return 2
                }
                minimum = level
            case "--port" where value != nil:
                guard let number = UInt16(value!), number > 0 else {
                    console.err("hijack-lab audit: --port expects a port from 1 to 65535, got \"\(value!)\"")
                    return 2
                }
                port = number
            default:
                console.err("hijack-lab audit: unknown or incomplete option \(flag). Options: --json FILE, --min-severity LEVEL, --port N")
                return 2
            }
            index += 2
        }
        let report = Audit.run(port: port)
        console.out(AuditText.render(report, minimum: minimum))
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            guard let data = try? encoder.encode(report), write(String(decoding: data, as: UTF8.self) + "\n", to: json, console: console) else { return 2 }
        }
        return report.exitStatus
    }

    static func write(_ text: String, to path: String, console: Console) -> Bool {
        do {
            // Atomic for files, so an interrupted run never leaves half a report; a device or
            // pipe (/dev/null, /dev/stdout) cannot be replaced by a rename and is written as is.
            var status = stat()
            let special = stat(path, &status) == 0 && (status.st_mode & S_IFMT) != S_IFREG
            try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: special ? [] : .atomic)
            return true
        } catch {
            console.err("hijack-lab: cannot write \(path): \(error.localizedDescription)")
            return false
        }
    }
}

extension LabReport.Environment {
    static func current(topology: Topology) -> LabReport.Environment {
        var names = utsname()
        uname(&names)
        let release = withUnsafeBytes(of: &names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return LabReport.Environment(
            kernel: "Linux \(release)", uid: geteuid(), topology: topology.kind, topologyReason: topology.reason,
            date: Date().formatted(.iso8601))
    }
}

/// Kills every agent on SIGINT or SIGTERM before the process exits, so an interrupted run
/// leaves nothing behind. Agents also exit on their own when the runner's pipe closes.
/// Installed once per process and never removed: a guard that came and went with each
/// run would race between runs in one process (as in the tests).
enum InterruptGuard {
    private static let installation: Void = {
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                ChildRegistry.shared.closeAndKillAll(signal: signalNumber)
                let message = "hijack-lab: interrupted by \(signalNumber == SIGINT ? "SIGINT" : "SIGTERM"); every agent was killed\n"
                _ = message.withCString { write(2, $0, strlen($0)) }
                // _exit: no atexit handlers or stdio flushing racing the main thread.
                _exit(128 + signalNumber)
            }
            source.resume()
            sources.append(source)
        }
    }()
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    static func install() { _ = installation }
}
