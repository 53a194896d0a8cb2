import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation
import Glibc

/// `hijack-lab try BIND`: the reader's own bind as the first socket of real matrix cases,
/// against every second socket, and the per-address fix against the same.
struct TryCommand: Command {
    static let name = "try"
    static let synopsis = "try BIND [--options LIST] [--v6only] [--device NAME] [--transport tcp|udp|both] [--json FILE]"
    static let summary = CommandIndex.summary(of: name)
    static let options = [
        OptionSpec("--options", "LIST", "your socket's reuse options: SO_REUSEADDR, SO_REUSEPORT (comma-separated), none or both (default none)"),
        OptionSpec("--v6only", nil, "your [::] socket sets IPV6_V6ONLY (IPv6 only)"),
        OptionSpec("--device", "NAME", "your socket sets SO_BINDTODEVICE: lo or lab0 (the lab's interface); netns topology only"),
        OptionSpec("--transport", "tcp|udp|both", "which transports to try (default both)"),
        OptionSpec("--json", "FILE", "the answer and every case, for scripts (- for stdout, and then no text)"),
    ] + MatrixCommand.laneOptions
    static let discussion = """
        Answers "my service binds BIND with these options: who can take its traffic, and what is
        the fix?" from real sockets. BIND is the address your service binds, with or without its
        port: 0.0.0.0, [::] (with --v6only for IPV6_V6ONLY), 127.0.0.1, ::1, ::ffff:127.0.0.1, or
        your interface's address, which the lab stands in for with its own: 198.51.100.1
        (lab-interface) or 2001:db8::1 (lab-interface6).

        Your bind is the first socket, in a process of its own. Beside it, one at a time, binds a
        second socket at every address of the matrix (`hijack-lab help matrix`) with every option
        set, as the same user and as another (uid 65534). Real clients then reach 127.0.0.1 and
        ::1 from the lab host and 198.51.100.1 and 2001:db8::1 from an external peer, and the
        process that receives each one names itself. `localhost` is ::1, then 127.0.0.1.

        A destination is taken when the second socket receives it while yours is live, and yours,
        alone, receives that destination or its other-family twin (127.0.0.1 and ::1; the
        interface's IPv4 and IPv6 addresses): a client of `localhost` or of a name with A and AAAA
        records tries both, so a service on one family loses those clients to whoever binds the
        other (a family gap). Every line names the user, the bind and options that did it, and
        links to the same case in MATRIX.md (grid, then row: your address, column: the bind).

        Then the fix runs: one socket per address your bind answers on, both families, without
        SO_REUSEPORT (and, for UDP, without SO_REUSEADDR), against the same second sockets. It
        covers the addresses that exist when the service starts; bind new ones as they appear.

        With a port, every case runs on it inside the lab's namespaces (below 1024, another
        user's bind is refused with EACCES, as on a host); without one, on the matrix's ports.
        """
    static let examples = [
        "hijack-lab try '[::]:8443' --options SO_REUSEPORT",
        "hijack-lab try 0.0.0.0 --transport udp --options SO_REUSEADDR",
        "hijack-lab try 127.0.0.1:6379 --json - | python3 -m json.tool",
    ]
    static let exitStatusHelp = """
        EXIT STATUS
          0    every case ran, and no second socket can take anything from your bind
          1    some second socket can take some destination (the lines say which, and how)
          2    usage error, an output that could not be written, or a lab that could not be set up
               (no case could finish: the reason is on stderr)
          3    nothing was seen taken, but some case was skipped (another user, when not root) or did
               not settle (could not finish, your own bind failed, or a probe got no answer):
               "nothing" is not the whole answer
          130  interrupted by SIGINT, 143 by SIGTERM; every agent was killed first
        """

    /// The addresses BIND may name, numeric or by the lab's symbol, and the matrix label of each.
    static let addresses: [(names: [String], label: String)] = [
        (["0.0.0.0", "*"], "0.0.0.0"),
        (["::", "[::]"], "[::]"),
        (["127.0.0.1"], "127.0.0.1"),
        (["::1"], "::1"),
        (["::ffff:127.0.0.1"], "::ffff:127.0.0.1"),
        ([LabAddresses.hostV4, AddressSymbol.labInterface.rawValue], AddressSymbol.labInterface.rawValue),
        ([LabAddresses.hostV6, AddressSymbol.labInterface6.rawValue], AddressSymbol.labInterface6.rawValue),
    ]

    static let bindHelp = "BIND is one of 0.0.0.0, [::], 127.0.0.1, ::1, ::ffff:127.0.0.1, 198.51.100.1 (lab-interface) or 2001:db8::1 (lab-interface6), with an optional :PORT ([::]:8443); for your own interface's address, use the lab's"

    /// BIND as written: `ADDRESS`, `ADDRESS:PORT`, `[IPV6]` or `[IPV6]:PORT`.
    static func parseBind(_ text: String, v6only: Bool) throws(UsageError) -> (endpoint: MatrixEndpoint, port: UInt16?) {
        var host = text
        var portText: String?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw UsageError(message: "\"\(UntrustedText.terminal(text))\" opens [ without ]; \(bindHelp)") }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw UsageError(message: "\"\(UntrustedText.terminal(text))\": expected :PORT after ]; \(bindHelp)") }
                portText = String(rest.dropFirst())
            }
        } else if text.filter({ $0 == ":" }).count == 1 {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            host = String(parts[0])
            portText = String(parts[1])
        }
        var port: UInt16?
        if let portText {
            guard let value = UInt16(portText), value > 0 else { throw UsageError(message: "\"\(UntrustedText.terminal(portText))\" is not a port: expected a number from 1 to 65535") }
            port = value
        }
        // A numeric address in any spelling (0:0::1 is ::1), or one of the lab's symbols.
        let canonical = SocketAddress(host: host, port: 0)?.host ?? host
        guard let label = addresses.first(where: { $0.names.contains(canonical) || $0.names.contains(host) })?.label,
              let standard = MatrixEndpoint.standard.first(where: { $0.label == label }) else {
            var message = "\"\(UntrustedText.terminal(host))\" is not an address the lab has; \(bindHelp)"
            if host.isEmpty { message = "no address before :\(portText ?? ""); \(bindHelp) (0.0.0.0:PORT for every IPv4 address)" }
            throw UsageError(message: message)
        }
        if v6only {
            guard label == "[::]" else { throw UsageError(message: "--v6only is for [::] only: \(UntrustedText.terminal(text)) is not the IPv6 wildcard") }
            return (MatrixEndpoint.standard.first { $0.label == "[::]v6only" }!, port)
        }
        return (standard, port)
    }

    static func parseOptions(_ text: String?) throws(UsageError) -> MatrixOptions {
        guard let text else { return .none }
        let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if items == ["none"] { return .none }
        if items == ["both"] { return .both }
        var address = false
        var port = false
        for item in items {
            switch item.uppercased() {
            case "SO_REUSEADDR", "REUSEADDR": address = true
            case "SO_REUSEPORT", "REUSEPORT": port = true
            default:
                var message = "--options: \"\(UntrustedText.terminal(item))\" is not one of SO_REUSEADDR, SO_REUSEPORT (or none, both)"
                if let close = Suggestion.closest(to: item, among: ["SO_REUSEADDR", "SO_REUSEPORT"]) { message += "; did you mean \(close)?" }
                throw UsageError(message: message)
            }
        }
        guard address || port else { throw UsageError(message: "--options needs SO_REUSEADDR, SO_REUSEPORT, none or both") }
        return address && port ? .both : address ? .reuseAddress : .reusePort
    }

    /// BIND and the options as `run` reads them, before anything runs: the audit's evidence
    /// commands are held to this (AuditNextStepsTests).
    static func parse(_ bindText: String, _ arguments: Arguments) throws(UsageError)
        -> (request: TryRequest, topology: Topology.Kind?, timeout: Double, workers: Int?) {
        let (endpoint, port) = try parseBind(bindText, v6only: arguments.flag("--v6only"))
        let options = try parseOptions(arguments.value("--options"))
        let transports: [Transport]
        switch try arguments.choice("--transport", [("tcp", [Transport.tcp]), ("udp", [.udp]), ("both", Transport.allCases)]) {
        case let chosen?: transports = chosen
        case nil: transports = Transport.allCases
        }
        var device = arguments.value("--device")
        if let name = device {
            guard ["lo", LabAddresses.hostInterface].contains(name) else {
                throw UsageError(message: "--device: \"\(UntrustedText.terminal(name))\" is not one of the lab host's devices: lo, \(LabAddresses.hostInterface) (the interface the external peer reaches)")
            }
            device = name
        }
        let request = TryRequest(bind: endpoint, options: options, device: device, port: port, transports: transports)
        let forced = try arguments.choice("--topology", Topology.Kind.allCases.map { ($0.rawValue, $0) })
        let timeout = try arguments.seconds("--timeout", default: 5, range: 0.001...600)
        let workers = try arguments.integer("--workers", range: 1...16)
        return (request, forced, timeout, workers)
    }

    static func run(_ arguments: Arguments, in context: CommandContext) -> ExitStatus {
        let console = context.console
        guard let bindText = arguments.operands.first else {
            return usageFailure(name, "which bind? \(bindHelp); e.g. hijack-lab try '[::]:8443' --options SO_REUSEPORT", console: console)
        }
        if arguments.operands.count > 1 {
            return usageFailure(name, "try takes one BIND (got also \"\(UntrustedText.terminal(arguments.operands[1]))\"); options follow it, e.g. --options SO_REUSEPORT", console: console)
        }
        let request: TryRequest
        let forced: Topology.Kind?
        let timeout: Double
        let workers: Int?
        do throws(UsageError) {
            (request, forced, timeout, workers) = try parse(bindText, arguments)
        } catch {
            return usageFailure(name, error.message, console: console)
        }
        let json = arguments.value("--json").map { OutputFile(option: "--json", path: $0) }
        if let refused = OutputFile.refuse([json], command: name, console: console) { return refused }

        InterruptGuard.install()
        let topology: Topology
        switch Topology.choose(forced: forced) {
        case .success(let chosen): topology = chosen
        case .failure(let unavailable): return usageFailure(name, unavailable.reason, console: console)
        }
        if request.bind.isLabInterface || request.device != nil, topology.kind != .netns {
            return usageFailure(name, "\(request.bind.isLabInterface ? "the lab interface's address" : "--device") exists only in the netns topology; \(topology.reason)", console: console)
        }
        let settings = LabSettings(agentExecutable: context.agentExecutable, topology: topology, replyTimeout: timeout, connectTimeout: 1)
        // A port below 1024, in the lab's namespace: your service binds it as root would (with
        // CAP_NET_BIND_SERVICE), and so does the same user's second socket; another user's cannot.
        let privileged = topology.kind == .netns && (request.port ?? 1024) < 1024
        let runner = workers.map { MatrixRunner(settings: settings, workers: $0, bindService: privileged) } ?? MatrixRunner(settings: settings, bindService: privileged)
        console.err("try \(UntrustedText.terminal(request.title)): topology \(topology.kind.rawValue)" + (request.port != nil && topology.kind != .netns ? " (the loopback topology binds this host's own loopback, on free ports: the port given is not used)" : ""))

        let result = run(request, runner: runner, topology: topology, console: console)
        if let signal = ChildRegistry.shared.interruption { return .interrupted(signal: signal) }
        if result.labFailed {
            let why = result.allCases.first?.error ?? "no case could finish"
            console.err("hijack-lab try: the lab could not be set up, so nothing was tried: \(UntrustedText.terminal(why))")
            return .usage
        }
        var files = OutputSet()
        if let json { files.stage(String(decoding: JSONFormat.encode(TryResult.Document(result: result)), as: UTF8.self) + "\n", to: json) }
        guard let written = files.publish(console: console) else { return .interrupted(signal: ChildRegistry.shared.interruption ?? SIGINT) }
        for output in written where !output.isStandardOutput { console.err("wrote \(output.shown)") }
        for failure in files.failures { console.err("hijack-lab try: \(failure)") }
        if json?.isStandardOutput != true { console.out(TryReport.render(result)) }
        let status = ExitStatus(code: result.exitStatus)
        return files.failures.isEmpty ? status : status.worst(.usage)
    }

    /// Every case of every transport in one pass over the runner's lanes: the service alone and
    /// beside each second socket, then the fix alone and beside each.
    static func run(_ request: TryRequest, runner: MatrixRunner, topology: Topology, console: Console) -> TryResult {
        // Per transport: the service's cases (alone first), then the fix's (alone first), each
        // group's place in the plan kept so that the outcomes are read back by position.
        var plan: [MatrixCase] = []
        var groups: [(transport: Transport, fix: TryFix, mine: Range<Int>, fixed: Range<Int>)] = []
        for transport in request.transports {
            let fix = request.fix(transport, labInterface: topology.kind == .netns)
            let seconds = [SocketUser.same, .other].flatMap { user in
                MatrixOptions.allCases.flatMap { options in MatrixEndpoint.standard.map { (second: $0, options: options, user: user) } }
            }
            let mineStart = plan.count
            plan.append(request.service(transport))
            plan += seconds.map { request.service(transport, second: $0.second, options: $0.options, user: $0.user) }
            let fixStart = plan.count
            plan.append(fix.service(transport))
            plan += seconds.map { fix.service(transport, second: $0.second, options: $0.options, user: $0.user) }
            groups.append((transport, fix, mineStart..<fixStart, fixStart..<plan.count))
        }
        let started = Deadline.now()
        let outcomes: [MatrixCaseOutcome]
        if let port = request.port, topology.kind == .netns {
            outcomes = runner.run(plan, portBase: port, portStride: 0)
        } else {
            outcomes = runner.run(plan)
        }
        let elapsed = (Deadline.now().nanoseconds - started.nanoseconds) / 1_000_000
        let unfinished = outcomes.filter { $0.status == .error }
        console.err("try: \(plan.count) cases in \(elapsed) ms on \(runner.workers) lane\(runner.workers == 1 ? "" : "s")" + (unfinished.isEmpty ? "" : "; \(unfinished.count) could not finish"))
        for failure in unfinished.prefix(3) {
            console.err("could not finish: \(failure.matrixCase.transport.rawValue) / \(failure.matrixCase.second?.label ?? "alone"): \(UntrustedText.terminal(failure.error ?? ""))")
        }
        let transports = groups.map { group in
            TryTransport(transport: group.transport, alone: outcomes[group.mine.lowerBound], cases: Array(outcomes[group.mine.dropFirst()]),
                         fix: group.fix, fixAlone: outcomes[group.fixed.lowerBound], fixCases: Array(outcomes[group.fixed.dropFirst()]))
        }
        return TryResult(environment: .current(topology: topology), request: request, destinations: runner.destinationLabels, transports: transports)
    }
}
