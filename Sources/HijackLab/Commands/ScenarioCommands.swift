import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Dispatch
import Foundation
import Glibc
import Synchronization

/// The options `all` and `run` share.
enum LabOptions {
    static let scenarios = OptionSpec("--scenarios", "DIR", "where the scenario files are (default: scenarios)")
    static let shared: [OptionSpec] = [
        scenarios,
        OptionSpec("--json", "FILE", "also write every outcome as JSON, for scripts (- for stdout)"),
        OptionSpec("--timeout", "SECONDS", "how long an agent may take to answer one command (default 5, at most 600)"),
        OptionSpec("--deadline", "SECONDS", "how long one whole scenario may take, probes included (default 60, at most 3600)"),
        OptionSpec("--topology", "netns|loopback", "where the lab runs (default: netns as root with `ip`, loopback otherwise)"),
        OptionSpec("--verbose", nil, "print each step as it starts (on stderr)"),
        OptionSpec("--audit", nil, "also audit the lab while each scenario's sockets are live, into the report"),
    ]
    static let limits = "LIMITS\n" + (ScenarioLimits.summary + [
        "a scenario that runs past --deadline is stopped, its agents killed, and reported as not finished",
    ]).map { "  " + $0 }.joined(separator: "\n")
}

struct AllCommand: Command {
    static let name = "all"
    static let synopsis = "all [options]"
    static let summary = CommandIndex.summary(of: name)
    static let options = LabOptions.shared + [
        OptionSpec("--report", "FILE", "where the Markdown report goes (default REPORT.md; - for stdout)"),
        ServersCommand.folderOption,
    ]
    static let discussion = """
        Runs every scenario file in the folder, one real process per socket, and writes REPORT.md.
        Then, as root in the netns topology, it runs the real servers of servers/ whose packages
        are installed (as `hijack-lab servers` does) for the report's "Servers as shipped"
        section; each missing package is listed there as skipped, with its apt-get line.
        Progress, one line per scenario and a closing count, goes to stderr; stdout carries only
        what --report - or --json - asks for. A file that cannot be read is listed in the report
        and on stderr, and the others still run.

        \(LabOptions.limits)
        """
    static let examples = [
        "hijack-lab all",
        "hijack-lab all --json - | python3 -m json.tool",
        "hijack-lab all --scenarios my-scenarios --report /tmp/REPORT.md",
    ]

    static func run(_ arguments: Arguments, in context: CommandContext) -> ExitStatus {
        if let name = arguments.operands.first {
            return usageFailure(self.name, "all takes no scenario names (got \"\(UntrustedText.terminal(name))\"); use `hijack-lab run NAME`", console: context.console)
        }
        return ScenarioRun.execute(arguments, command: name, names: nil, defaultReport: "REPORT.md", in: context)
    }
}

struct RunCommand: Command {
    static let name = "run"
    static let synopsis = "run NAME... [options]"
    static let summary = CommandIndex.summary(of: name)
    static let options = LabOptions.shared + [OptionSpec("--report", "FILE", "also write the Markdown report here (- for stdout)")]
    static let discussion = """
        Runs the named scenarios from the folder, as `all` does, and writes no report unless
        --report names one: a partial run never replaces the committed REPORT.md.

        \(LabOptions.limits)
        """
    static let examples = [
        "hijack-lab run wildcard-then-loopback-reuseport",
        "hijack-lab run per-interface-fix --json /tmp/out.json",
        "hijack-lab run bindtodevice-shadow --audit --report -",
    ]

    static func run(_ arguments: Arguments, in context: CommandContext) -> ExitStatus {
        guard !arguments.operands.isEmpty else {
            return usageFailure(name, "run needs at least one scenario name; `hijack-lab list` shows them", console: context.console)
        }
        return ScenarioRun.execute(arguments, command: name, names: arguments.operands, defaultReport: nil, in: context)
    }
}

/// `all` and `run`: load, check outputs, run, then publish every file together.
enum ScenarioRun {
    static func execute(_ arguments: Arguments, command: String, names: [String]?, defaultReport: String?,
                        in context: CommandContext) -> ExitStatus {
        let console = context.console
        let folder = arguments.value("--scenarios") ?? "scenarios"
        let timeout: Double
        let deadline: Double
        let forced: Topology.Kind?
        do throws(UsageError) {
            timeout = try arguments.seconds("--timeout", default: 5, range: 0.001...600)
            deadline = try arguments.seconds("--deadline", default: 60, range: 0.001...3600)
            forced = try arguments.choice("--topology", Topology.Kind.allCases.map { ($0.rawValue, $0) })
        } catch {
            return usageFailure(command, error.message, console: console)
        }

        let loaded: (scenarios: [Scenario], errors: [ScenarioError])
        do throws(ScenarioError) {
            loaded = try ScenarioFile.loadDirectory(folder)
        } catch {
            console.err(error.description)
            return .usage
        }
        var invalid = loaded.errors
        var selected = loaded.scenarios
        if let names {
            switch ScenarioPicker.pick(names, from: loaded, folder: folder) {
            case .success(let picked): selected = picked
            case .failure(let problem):
                console.err("hijack-lab \(command): \(problem.message)")
                return .usage
            }
            invalid = []
        }
        for error in invalid { console.err("invalid scenario file: \(error)") }

        let report = (arguments.value("--report") ?? defaultReport).map { OutputFile(option: "--report", path: $0) }
        let json = arguments.value("--json").map { OutputFile(option: "--json", path: $0) }
        if let refused = OutputFile.refuse([report, json], command: command, console: console) { return refused }
        // A server folder named on the command line must be readable before anything runs.
        if names == nil, let folder = arguments.value("--servers"), case .failure(let problem) = ServerCatalog.load(folder, names: []) {
            console.err("hijack-lab \(command): \(problem.message)")
            return .usage
        }

        InterruptGuard.install()
        var topology: Topology
        switch Topology.choose(forced: forced) {
        case .success(let chosen): topology = chosen
        case .failure(let unavailable):
            console.err("hijack-lab: \(unavailable.reason)")
            return .usage
        }
        var settings = LabSettings(agentExecutable: context.agentExecutable, topology: topology, replyTimeout: timeout)
        settings.scenarioDeadline = deadline
        settings.auditAll = arguments.flag("--audit")
        // One host client per lane: with the audit's capabilities only if something audits.
        settings.scenariosAudit = selected.contains { $0.audit }
        var runner = Runner(settings: settings)
        do throws(LabError) {
            try runner.prepare()
        } catch {
            if forced != nil || topology.kind != .netns {
                console.err("hijack-lab: the \(topology.kind.rawValue) topology could not be set up: \(error)")
                return .usage
            }
            // Never silently: the reason goes to stderr and, as the topology's reason, to the
            // top of the report.
            topology = .loopback(reason: "FALLBACK: the netns topology could not be built (\(error)), so this run used the host's own loopback; "
                + "scenarios that need the lab network are skipped. `--topology netns` makes this an error")
            console.err("hijack-lab: WARNING: the netns topology could not be built: \(error)")
            console.err("hijack-lab: falling back to the loopback topology; scenarios that need the lab network are skipped")
            settings.topology = topology
            runner = Runner(settings: settings)
        }
        console.err("topology: \(topology.kind.rawValue) (\(topology.reason))")
        let outcomes = ScenarioLanes.run(selected, first: runner, settings: settings, verbose: arguments.flag("--verbose"), console: console)
        // `all` also runs the matrix cases behind its "At a glance" table, after the scenarios: at
        // the same time, on two cores, both ran slower than one after the other.
        let glance = names == nil ? glanceEvidence(settings: settings, console: console) : nil
        let servers = names == nil ? serverEvidence(arguments, settings: settings, console: console) : nil

        // An interrupted run's last scenario "failed" only because its agents were killed:
        // publish nothing about it; the signal handler is ending the process with 128+signal.
        if let signal = ChildRegistry.shared.interruption { return .interrupted(signal: signal) }
        let result = LabReport(environment: .current(topology: topology), scenarios: outcomes, invalidFiles: invalid.map(LabReport.InvalidFile.init), glance: glance,
                               servers: servers)
        // Everything is rendered before the first temp file exists.
        let markdown = report.map { _ in MarkdownReport.render(result) }
        let jsonText = json.map { _ in String(decoding: JSONReport.render(result), as: UTF8.self) + "\n" }
        var files = OutputSet()
        if let report, let markdown { files.stage(markdown, to: report) }
        if let json, let jsonText { files.stage(jsonText, to: json) }
        guard let written = files.publish(console: console) else { return .interrupted(signal: ChildRegistry.shared.interruption ?? SIGINT) }
        for output in written where !output.isStandardOutput { console.err("wrote \(output.shown)") }
        for failure in files.failures { console.err("hijack-lab \(command): \(failure)") }

        let differing = outcomes.filter { $0.status != .skipped && !$0.matchesExpectation }.map(\.name)
        if !differing.isEmpty { console.err("differed from expectation or could not finish: \(differing.joined(separator: ", "))") }
        console.err(countLine(outcomes, unreadable: invalid.count))
        let status = ExitStatus(code: result.exitStatus)
        return files.failures.isEmpty ? status : status.worst(.usage)
    }

    /// `all`'s real servers: the catalog in --servers (default servers/), where it exists.
    /// A folder given with --servers must be readable; the default one may be absent (a
    /// scenario folder of one's own), and then the section says so.
    static func serverEvidence(_ arguments: Arguments, settings: LabSettings, console: Console) -> ServersEvidence? {
        let given = arguments.value("--servers")
        let folder = given ?? "servers"
        if given == nil, access(folder, F_OK) != 0 {
            return ServersEvidence(servers: [], skipped: [], unavailable: "there is no servers/ folder here (give one with --servers)")
        }
        switch ServerCatalog.load(folder, names: []) {
        case .success(let catalog):
            guard settings.topology.kind == .netns else {
                let reason = "the servers run only in the netns topology (this run used \(settings.topology.kind.rawValue))"
                return ServersEvidence(servers: [], skipped: catalog.map { .init(name: $0.name, package: $0.package, reason: reason) }, unavailable: reason)
            }
            let evidence = ServerCatalog.run(catalog, agentExecutable: settings.agentExecutable, timeout: 2, verbose: false, console: console)
            if let unavailable = evidence.unavailable { console.err("servers: none ran: \(unavailable)") }
            for skipped in evidence.skipped where evidence.unavailable == nil { console.err(UntrustedText.terminal("servers: \(skipped.name) skipped: \(skipped.reason) (\(skipped.install))")) }
            return evidence
        case .failure(let problem):
            console.err("hijack-lab all: \(problem.message)")
            return ServersEvidence(servers: [], skipped: [], unavailable: "the server files could not be read: \(problem.message)")
        }
    }

    /// Runs the matrix cases of the "At a glance" table in the run's own topology.
    static func glanceEvidence(settings: LabSettings, console: Console) -> GlanceEvidence {
        var matrixSettings = settings
        matrixSettings.connectTimeout = 1
        let runner = MatrixRunner(settings: matrixSettings)
        let planned = GlanceEvidence.plan
        let started = Deadline.now()
        let (cases, baselines) = runner.run(cases: planned.cases, baselines: planned.baselines)
        let elapsed = (Deadline.now().nanoseconds - started.nanoseconds) / 1_000_000
        let unfinished = (cases + baselines).filter { $0.status == .error }.count
        console.err("at a glance: \(cases.count) matrix cases and \(baselines.count) baselines in \(elapsed) ms" + (unfinished > 0 ? "; \(unfinished) could not finish" : ""))
        return GlanceEvidence(destinations: runner.destinationLabels, cases: cases, baselines: baselines)
    }

    /// The closing line: `29 ran: 29 as expected, 0 differ; 1 skipped`.
    static func countLine(_ outcomes: [ScenarioOutcome], unreadable: Int) -> String {
        let ran = outcomes.filter { $0.status != .skipped }
        let expected = ran.filter { $0.status == .ran && $0.matchesExpectation }.count
        let differ = ran.filter { $0.status == .ran && !$0.matchesExpectation }.count
        let unfinished = ran.filter { $0.status == .error }.count
        var line = "\(ran.count) ran: \(expected) as expected, \(differ) differ"
        if unfinished > 0 { line += ", \(unfinished) could not finish" }
        line += "; \(outcomes.count - ran.count) skipped"
        if unreadable > 0 { line += "; \(unreadable) file\(unreadable == 1 ? "" : "s") could not be read" }
        return line
    }
}

/// Runs the scenarios over one or two lanes, each with its own Runner and so its own lab
/// network: while one lane waits on an agent, the other's work fills the second core. A
/// scenario sees only its own lab, whichever lane runs it, so lanes change no outcome. In
/// the loopback topology scenarios share the host's ports, and one lane runs them all.
/// Progress lines come out in the scenarios' order.
enum ScenarioLanes {
    /// `first`, the Runner the caller prepared, stays on the calling thread, which runs the
    /// first lane; a second lane makes its own Runner on its own thread. A Runner is not
    /// Sendable, and none crosses a thread.
    static func run(_ scenarios: [Scenario], first: Runner, settings: LabSettings, verbose: Bool, console: Console) -> [ScenarioOutcome] {
        let board = Board(scenarios: scenarios, console: console)
        let secondLane = settings.topology.kind == .netns && scenarios.count > 1 && sysconf(Int32(_SC_NPROCESSORS_ONLN)) > 1
        let lanes = DispatchGroup()
        if secondLane {
            DispatchQueue.global().async(group: lanes) {
                // A second lab that cannot be built leaves the run on one lane, which is no failure.
                let second = Runner(settings: settings)
                if (try? second.prepare()) != nil { work(second, board: board, verbose: verbose, console: console) }
                second.shutdown()
            }
        }
        work(first, board: board, verbose: verbose, console: console)
        first.shutdown()
        lanes.wait()
        return board.outcomes
    }

    /// One lane: takes the next scenario from the board until none is left.
    private static func work(_ runner: Runner, board: Board, verbose: Bool, console: Console) {
        if verbose { runner.onStep = { scenario, step in console.err("  \(scenario): \(step.description)") } }
        while let (index, scenario) = board.next() {
            // An interrupted run starts nothing more; its signal handler ends the process.
            if ChildRegistry.shared.interruption != nil { break }
            let started = Deadline.now()
            let outcome = runner.run(scenario)
            board.finished(index, outcome, milliseconds: (Deadline.now().nanoseconds - started.nanoseconds) / 1_000_000)
        }
    }

    /// The lanes' shared state, behind one lock: the next scenario to take, and the outcomes,
    /// printed in order with every name whole.
    private final class Board: Sendable {
        private struct State {
            var taken = 0
            var results: [(outcome: ScenarioOutcome, milliseconds: UInt64)?]
            var printed = 0
        }

        private let scenarios: [Scenario]
        private let console: Console
        private let nameColumn: Int
        private let state: Mutex<State>

        init(scenarios: [Scenario], console: Console) {
            self.scenarios = scenarios
            self.console = console
            nameColumn = ScenarioText.nameColumn(for: scenarios.map(\.name))
            state = Mutex(State(results: Array(repeating: nil, count: scenarios.count)))
        }

        func next() -> (Int, Scenario)? {
            state.withLock { state in
                guard state.taken < scenarios.count else { return nil }
                state.taken += 1
                return (state.taken - 1, scenarios[state.taken - 1])
            }
        }

        func finished(_ index: Int, _ outcome: ScenarioOutcome, milliseconds: UInt64) {
            // Printed under the lock, so that lines from two lanes come out whole and in order.
            state.withLock { state in
                state.results[index] = (outcome, milliseconds)
                while state.printed < state.results.count, let done = state.results[state.printed] {
                    state.printed += 1
                    console.err(ScenarioText.progressLine(done.outcome, index: state.printed, of: state.results.count,
                                                          milliseconds: done.milliseconds, nameColumn: nameColumn))
                }
            }
        }

        /// Every finished outcome in the scenarios' order (an interrupted run leaves some out).
        var outcomes: [ScenarioOutcome] {
            state.withLock { state in state.results.compactMap { $0?.outcome } }
        }
    }
}

/// Scenario names on the command line, looked up in the catalog with a suggestion for a slip.
enum ScenarioPicker {
    static func pick(_ names: [String], from loaded: (scenarios: [Scenario], errors: [ScenarioError]), folder: String) -> Result<[Scenario], UsageError> {
        var picked: [Scenario] = []
        for name in names {
            if let scenario = loaded.scenarios.first(where: { $0.name == name }) {
                picked.append(scenario)
            } else if let error = loaded.errors.first(where: { ($0.file as NSString).lastPathComponent == "\(name).json" }) {
                return .failure(UsageError(message: error.description))
            } else {
                var message = "no scenario \"\(UntrustedText.terminal(name))\" in \(UntrustedText.terminal(folder))/"
                if let close = Suggestion.closest(to: name, among: loaded.scenarios.map(\.name)) { message += "; did you mean \(close)?" }
                return .failure(UsageError(message: message + " (`hijack-lab list` shows them)"))
            }
        }
        return .success(picked)
    }
}

struct ListCommand: Command {
    static let name = "list"
    static let synopsis = "list [--scenarios DIR]"
    static let summary = CommandIndex.summary(of: name)
    static let options = [LabOptions.scenarios]
    static let discussion = "Prints one line per scenario file on stdout. Files that cannot be read are named on stderr, and the exit status is then 2."

    static func run(_ arguments: Arguments, in context: CommandContext) -> ExitStatus {
        if let extra = arguments.operands.first {
            return usageFailure(name, "list takes no operands (got \"\(UntrustedText.terminal(extra))\")", console: context.console)
        }
        let loaded: (scenarios: [Scenario], errors: [ScenarioError])
        do throws(ScenarioError) {
            loaded = try ScenarioFile.loadDirectory(arguments.value("--scenarios") ?? "scenarios")
        } catch {
            context.console.err(error.description)
            return .usage
        }
        let width = loaded.scenarios.map(\.name.count).max() ?? 0
        for scenario in loaded.scenarios {
            context.console.out(scenario.name.padding(toLength: width + 2, withPad: " ", startingAt: 0) + UntrustedText.terminal(scenario.title))
        }
        for error in loaded.errors { context.console.err("invalid: \(error)") }
        return loaded.errors.isEmpty ? .success : .usage
    }
}

struct ShowCommand: Command {
    static let name = "show"
    static let synopsis = "show NAME [--scenarios DIR]"
    static let summary = CommandIndex.summary(of: name)
    static let options = [LabOptions.scenarios]
    static let discussion = "Prints the scenario as the lab reads it, without running it."

    static func run(_ arguments: Arguments, in context: CommandContext) -> ExitStatus {
        guard arguments.operands.count == 1 else {
            return usageFailure(name, "show takes exactly one scenario name", console: context.console)
        }
        let folder = arguments.value("--scenarios") ?? "scenarios"
        let name = arguments.operands[0]
        let path = "\(folder)/\(name).json"
        guard FileManager.default.fileExists(atPath: path) else {
            var message = "no scenario \"\(UntrustedText.terminal(name))\" (looked for \(UntrustedText.terminal(path)))"
            let known = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }
            if let close = Suggestion.closest(to: name, among: known) { message += "; did you mean \(close)?" }
            return usageFailure(self.name, message + " (`hijack-lab list` shows them)", console: context.console)
        }
        do throws(ScenarioError) {
            context.console.out(ScenarioText.explain(try ScenarioFile.load(path: path)))
            return .success
        } catch {
            context.console.err(error.description)
            return .usage
        }
    }
}

struct CheckCommand: Command {
    static let name = "check"
    static let synopsis = "check FILE|DIR..."
    static let summary = CommandIndex.summary(of: name)
    static let options: [OptionSpec] = []
    static let discussion = """
        Reads each file (or every *.json in each folder) exactly as `all` would, and prints `ok`
        with the scenario's name on stdout, or the file, the field and what was expected on stderr.
        Nothing is started. Exit status 0 when every file is valid, 2 otherwise.
        """
    static let examples = ["hijack-lab check scenarios/my-new-scenario.json", "hijack-lab check scenarios"]
    static let exitStatusHelp = """
        EXIT STATUS
          0    every file is a valid scenario
          2    some file is not (each is named on stderr, with the field and what was expected)
        """

    static func run(_ arguments: Arguments, in context: CommandContext) -> ExitStatus {
        guard !arguments.operands.isEmpty else {
            return usageFailure(name, "check needs at least one scenario file or folder", console: context.console)
        }
        var status = ExitStatus.success
        for path in arguments.operands {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
                do throws(ScenarioError) {
                    let loaded = try ScenarioFile.loadDirectory(path)
                    for scenario in loaded.scenarios { context.console.out("ok  \(UntrustedText.terminal(scenario.file))  \(scenario.name)") }
                    for error in loaded.errors { context.console.err(error.description) }
                    if !loaded.errors.isEmpty { status = .usage }
                } catch {
                    context.console.err(error.description)
                    status = .usage
                }
                continue
            }
            do throws(ScenarioError) {
                let scenario = try ScenarioFile.load(path: path)
                context.console.out("ok  \(UntrustedText.terminal(path))  \(scenario.name)")
            } catch {
                context.console.err(error.description)
                status = .usage
            }
        }
        return status
    }
}

