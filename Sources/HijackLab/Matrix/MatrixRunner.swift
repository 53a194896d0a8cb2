import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Dispatch
import Foundation
import Glibc
import Synchronization

/// One lane of the matrix: its own lab network and three long-lived socket agents (the first
/// socket, the second as the same user, the second as uid 65534). Cases run one after the
/// other; every case closes both sockets before the next begins, and its clients close with
/// a RST, so no TIME_WAIT is left on any port.
final class MatrixWorker {
    let settings: LabSettings
    private let network: LabNetwork
    private let first: AgentClient
    /// The service's other sockets, for cases whose first binds several addresses (`try`'s fix).
    private let firstMore: [AgentClient]
    private let secondSame: AgentClient
    private let secondOther: AgentClient?
    private(set) var started: [ProcessIdentity] = []
    /// False once a close failed: the next case would not start clean, so the lane rebuilds.
    private(set) var healthy = true

    /// `audits`: the host client audits every case while its sockets are live (`matrix --audit`).
    /// `serviceSockets`: how many sockets a case's first may bind (one agent each).
    /// `bindService`: the first and the same-user second keep CAP_NET_BIND_SERVICE, for a port
    /// below ip_unprivileged_port_start, as a service started by root binds it (another user's
    /// agent never has it).
    init(settings: LabSettings, audits: Bool, serviceSockets: Int = 1, bindService: Bool = false) throws(LabError) {
        self.settings = settings
        var started: [ProcessIdentity] = []
        network = try LabNetwork.make(settings, audits: audits) { started.append($0) }
        var agents: [AgentClient] = []
        do throws(LabError) {
            let placement = network.placement
            let sameUser = placement + (bindService ? ["--bind-service"] : [])
            first = try AgentClient(executable: settings.agentExecutable, id: "first", extraArguments: sameUser, timeout: settings.replyTimeout)
            agents.append(first)
            // The audit tells which socket came first by its process's start time (in clock
            // ticks, then pids), as it would on a host where a service ran before its intruder:
            // the first agent is up before the second ones start.
            var more: [AgentClient] = []
            for index in stride(from: 2, through: serviceSockets, by: 1) {
                let agent = try AgentClient(executable: settings.agentExecutable, id: "first-\(index)", extraArguments: sameUser, timeout: settings.replyTimeout)
                agents.append(agent)
                more.append(agent)
            }
            firstMore = more
            for agent in agents { try agent.awaitReady() }
            secondSame = try AgentClient(executable: settings.agentExecutable, id: "second", extraArguments: sameUser, timeout: settings.replyTimeout)
            agents.append(secondSame)
            if geteuid() == 0 {
                let other = try AgentClient(executable: settings.agentExecutable, id: "second", extraArguments: placement + ["--user", "other"], timeout: settings.replyTimeout)
                agents.append(other)
                secondOther = other
            } else {
                secondOther = nil
            }
            for agent in agents.dropFirst(1 + firstMore.count) {
                try agent.awaitReady()
            }
            for agent in agents {
                started.append(agent.identity)
            }
            if settings.topology.kind == .netns {
                // Port-unreachable replies are rate-limited, per peer and globally (50 at a burst,
                // 1,000 a second), and ICMPv6's at one per 100 ms per peer. In the lab's own
                // namespace only, exempt them (a ratemask without destination-unreachable, no
                // per-peer interval), so "nobody is bound there" comes back as ECONNREFUSED
                // instead of a lost datagram, on both families.
                for sysctl in WritableSysctl.allCases {
                    let result = try network.hostClient.calls(.sysctl(sysctl, value: "0")).last?.result
                    // A kernel older than ICMPv6's ratemask (Linux 5.7) has no such file: its
                    // unreachables stay limited, and a UDP probe the limit swallowed shows as lost.
                    if result == "ENOENT", sysctl == .icmpv6Ratemask { continue }
                    guard result == .ok else { throw .setup("could not set \(sysctl.path) in the lab namespace: \(result.map { "\($0)" } ?? "?")") }
                }
            }
        } catch {
            agents.forEach { $0.kill() }
            network.kill()
            throw error
        }
        self.started = started
    }

    func finish() {
        for agent in [first] + firstMore + [secondSame] + (secondOther.map { [$0] } ?? []) { agent.finish() }
        network.finish()
    }

    func kill() {
        for agent in [first] + firstMore + [secondSame] + (secondOther.map { [$0] } ?? []) { agent.kill() }
        network.kill()
    }

    /// The destinations a case's probes go to: both loopbacks from the host, and the lab
    /// interface's IPv4 and IPv6 addresses from the peer where there is one.
    var destinations: [(label: String, address: String, from: ProbeClient)] {
        var list: [(String, String, ProbeClient)] = [("127.0.0.1", "127.0.0.1", .host), ("::1", "::1", .host)]
        if settings.topology.kind == .netns {
            list.append((AddressSymbol.labInterface.rawValue, Topology.Lab.hostV4, .peer))
            list.append((AddressSymbol.labInterface6.rawValue, Topology.Lab.hostV6, .peer))
        }
        return list
    }

    func host(_ endpoint: MatrixEndpoint) -> String { endpoint.numericHost }

    func run(_ matrixCase: MatrixCase, port: UInt16, audit: Bool = false) throws(LabError) -> MatrixCaseOutcome {
        var outcome = MatrixCaseOutcome(matrixCase: matrixCase, status: .ran)
        outcome.port = port
        let transport = matrixCase.transport
        let second = matrixCase.second == nil ? nil : matrixCase.secondUser == .other ? secondOther : secondSame
        guard matrixCase.second == nil || second != nil else { throw .setup("no agent for uid 65534 (not root)") }
        let serviceEndpoints = matrixCase.firstSockets
        guard serviceEndpoints.count <= 1 + firstMore.count else { throw .setup("the case's first binds \(serviceEndpoints.count) sockets; this lane has agents for \(1 + firstMore.count)") }
        let service = [first] + firstMore.prefix(serviceEndpoints.count - 1)
        let agents = service + (second.map { [$0] } ?? [])
        var closed = false
        defer {
            // Close both sockets whatever happened, so the next case starts clean.
            if !closed, (try? Self.close(agents)) == nil { healthy = false }
            for agent in agents { agent.forgetAcceptedPeers() }
        }
        // The service's sockets bind one after the other; the first of them that fails is the
        // case's first bind (or listen), and the rest are not tried.
        let fallback = outcome.firstListen
        for (agent, endpoint) in zip(service, serviceEndpoints) {
            let options = (endpoint.v6only ? ["IPV6_V6ONLY"] : []) + matrixCase.firstOptions.names
            let socket = SocketRequest(transport: transport, address: host(endpoint), port: port, options: options, device: matrixCase.firstDevice)
            (outcome.firstBind, outcome.firstListen) = Self.results(try agent.calls(.open(socket, listen: matrixCase.listens)), transport: transport, fallback: fallback)
            guard outcome.firstBind == .ok, !matrixCase.listens || SyscallResult.served(bind: outcome.firstBind, listen: outcome.firstListen) else { break }
        }
        // The audit's prediction, from the first socket alone, before the second binds.
        if audit, outcome.firstServes, let secondEndpoint = matrixCase.second {
            outcome.prediction = try predict(matrixCase, second: secondEndpoint, port: port, service: service)
        }
        var bothServe = false
        if let secondEndpoint = matrixCase.second, let second {
            let options = (secondEndpoint.v6only ? ["IPV6_V6ONLY"] : []) + matrixCase.secondOptions.names
            let socket = SocketRequest(transport: transport, address: host(secondEndpoint), port: port, options: options)
            (outcome.secondBind, outcome.secondListen) = Self.results(try second.calls(.open(socket, listen: matrixCase.listens)), transport: transport, fallback: outcome.secondListen)
            bothServe = SyscallResult.served(bind: outcome.firstBind, listen: outcome.firstListen)
                && SyscallResult.served(bind: outcome.secondBind, listen: outcome.secondListen)
        }
        // One round trip per case, and only where both sockets are live: with one, nothing
        // can be taken, and the audit costs as much as the rest of the case.
        if audit && bothServe {
            outcome.audit = try self.audit(transport: transport, port: port, service: service, second: second)
        }
        guard matrixCase.probes && matrixCase.listens else { return outcome }

        // With one socket serving, one connection per destination says who gets it. With two,
        // the kernel may split by hash: 16 make a missed 50/50 split a 1-in-32,768 event.
        let count = bothServe ? 16 : 1
        // The host's and the peer's probes go out together and run at once; each reply is
        // then read in turn.
        var sent: [(client: AgentClient, targets: [(label: String, address: String, from: ProbeClient)], command: AgentCommand)] = []
        for from in [ProbeClient.host, .peer] {
            let targets = destinations.filter { $0.from == from }
            guard !targets.isEmpty, let client = network.client(from) else { continue }
            let request = ProbeRequest(transport: transport, destinations: targets.map { .init(address: $0.address, count: count) }, port: port,
                                       closes: .clientReset, timeoutMilliseconds: Int(settings.connectTimeout * 1000), labRanges: settings.topology.kind == .netns)
            try client.send([.probe(request)])
            sent.append((client, targets, .probe(request)))
        }
        var connections: [(label: String, ProbeConnection)] = []
        for (client, targets, command) in sent {
            let reply = try client.reply(to: command, timeout: settings.replyTimeout + settings.connectTimeout * Double(count * targets.count))
            guard case .probed(let received, _) = reply else { throw .agentRefused(agent: client.id, command: "\"probe\"", reason: "it answered without connections") }
            for (index, target) in targets.enumerated() {
                connections += received.dropFirst(index * count).prefix(count).map { (target.label, $0) }
            }
        }
        // Each agent wrote every acceptance before the identity that a client read, and its
        // close reply after them: once both sockets are closed, the runner holds every report
        // that the identities are checked against.
        closed = true
        try Self.close(agents)
        try IdentityCheck.confirm(connections.map { (probe: $0.label, connection: $0.1) }, in: "case") { id in agents.first { $0.id == id } }
        for destination in destinations {
            var delivery = MatrixDelivery(destination: destination.label, sent: 0, first: 0, second: 0, nobody: 0, lost: 0)
            for (label, connection) in connections where label == destination.label {
                delivery.sent += 1
                delivery.tries += connection.tries ?? 0
                if connection.isUnanswered {
                    delivery.lost += 1
                    continue
                }
                guard let identity = connection.identity else {
                    delivery.nobody += 1
                    if let error = connection.error, ProbeConnection.fallbackErrors.contains(error) { delivery.refused += 1 }
                    continue
                }
                // Confirmed above: the identity names one of this case's agents.
                if AgentIdentity.receiver(named: identity) == second?.id { delivery.second += 1 } else { delivery.first += 1 }
            }
            outcome.deliveries.append(delivery)
        }
        return outcome
    }

    /// Closes every agent's socket at once: each close is sent, then each reply read. A
    /// close that fails marks the lane unhealthy, so the next case gets a new lab.
    private static func close(_ agents: [AgentClient]) throws(LabError) {
        let command = AgentCommand.close(waitMilliseconds: 100)
        for agent in agents { try agent.send([command]) }
        for agent in agents { _ = try agent.reply(to: command) }
    }

    /// The audit as the lab host's client runs it, while the case's sockets are live: its
    /// findings on this transport and port, each socket named by the agent that holds it.
    func audit(transport: Transport, port: UInt16, service: [AgentClient], second: AgentClient?) throws(LabError) -> MatrixCaseAudit {
        let report = try network.hostClient.audit(port: port)
        var roles: [UInt64: String] = [:]
        let servicePIDs = Set(service.map(\.pid))
        for socket in report.sockets where socket.transport == transport {
            let pids = Set(socket.owners.map(\.pid))
            roles[socket.inode] = !pids.isDisjoint(with: servicePIDs) ? "first" : second.map { pids.contains($0.pid) } == true ? "second" : "?"
        }
        let findings = report.findings.filter { $0.transport == transport && $0.port == port }.map { finding in
            MatrixAuditFinding(kind: finding.kind, severity: finding.severity, port: finding.port, sockets: finding.inodes.map { roles[$0] ?? "?" },
                               likelyIntruder: finding.likelyIntruder.map { roles[$0] ?? "?" })
        }
        return MatrixCaseAudit(findings: findings)
    }

    /// The audit as the lab host's client runs it while the first socket is alone on the
    /// port: the options it read from that socket, and the destinations its `takeable`
    /// finding says the case's second bind, as the case's user, would take.
    func predict(_ matrixCase: MatrixCase, second: MatrixEndpoint, port: UInt16, service: [AgentClient]) throws(LabError) -> MatrixPrediction {
        let report = try network.hostClient.audit(port: port)
        let servicePIDs = Set(service.map(\.pid))
        let own = report.sockets.filter { $0.transport == matrixCase.transport && !Set($0.owners.map(\.pid)).isDisjoint(with: servicePIDs) }
        guard let first = own.first else { return MatrixPrediction(options: "?", takes: [], unknown: "the audit did not see the first socket") }
        let options = own.map { $0.options?.compact ?? "not read" }.joined(separator: " ")
        if let unknown = own.compactMap({ $0.options }).first(where: { !$0.isKnown })?.unknown ?? (first.options == nil ? "not read" : nil) {
            return MatrixPrediction(options: options, takes: [], unknown: unknown)
        }
        let bind = AuditBind(address: host(second), options: (second.v6only ? ["IPV6_V6ONLY"] : []) + matrixCase.secondOptions.names)
        let who: AuditTake.Who = matrixCase.secondUser == .other ? .otherUID : .sameUID
        let labels = [Topology.Lab.hostV4: AddressSymbol.labInterface.rawValue, Topology.Lab.hostV6: AddressSymbol.labInterface6.rawValue]
        let takes = report.findings.filter { $0.kind == .takeable && $0.transport == matrixCase.transport && $0.port == port }
            .flatMap { $0.takes ?? [] }
            .filter { $0.who == who && $0.binds.contains(bind) }
            .map { labels[$0.destination] ?? $0.destination }
        return MatrixPrediction(options: options, takes: Array(Set(takes)).sorted())
    }

    /// bind and listen results from an `open` reply's calls.
    static func results(_ calls: [SyscallRecord], transport: Transport, fallback: SyscallResult) -> (bind: SyscallResult, listen: SyscallResult) {
        let bind = calls.last { $0.call == "bind" }?.result ?? (calls.last?.result ?? .notAttempted)
        guard transport == .tcp else { return (bind, .notApplicable) }
        return (bind, calls.last { $0.call == "listen" }?.result ?? (bind == .ok ? fallback : .notAttempted))
    }
}

/// Runs many cases over a few workers in parallel, with a process launch per worker, never per case.
/// Its lanes share it across threads: everything in it is either constant or behind a lock.
public final class MatrixRunner: Sendable {
    public let settings: LabSettings
    public let workers: Int
    /// The same-user agents keep CAP_NET_BIND_SERVICE (`try` on a port below 1024).
    public let bindService: Bool
    private let started = Mutex<[ProcessIdentity]>([])

    public init(settings: LabSettings, workers: Int = max(1, min(2, sysconf(Int32(_SC_NPROCESSORS_ONLN)))), bindService: Bool = false) {
        self.settings = settings
        self.workers = workers
        self.bindService = bindService
        signal(SIGPIPE, SIG_IGN)
    }

    /// Every process the lanes started, so callers can check that none outlives the run.
    public var startedProcesses: [ProcessIdentity] { started.withLock { $0 } }

    /// What each delivery's destination is called, in order.
    public var destinationLabels: [String] {
        ["127.0.0.1", "::1"] + (settings.topology.kind == .netns ? [AddressSymbol.labInterface.rawValue, AddressSymbol.labInterface6.rawValue] : [])
    }

    /// Why the topology or this user cannot run a case, if so.
    public func skipReason(_ matrixCase: MatrixCase) -> String? {
        let endpoints = matrixCase.firstSockets + (matrixCase.second.map { [$0] } ?? [])
        if let lab = endpoints.first(where: \.isLabInterface), let reason = settings.netnsSkip("\(lab.label) exists") { return reason }
        if matrixCase.firstDevice != nil, let reason = settings.netnsSkip("a socket is bound to a device") { return reason }
        if matrixCase.second != nil && matrixCase.secondUser == .other { return settings.otherUserSkip("the second socket") }
        return nil
    }

    /// Runs the cases; the outcomes come back in the order of `cases`. `portBase` spaces the
    /// ports so that every case in the netns topology has a port of its own.
    /// `portStride` 0 puts every case of a lane on one port: the isolation test's way of
    /// showing that a case leaves nothing on its port for the next.
    /// `audit` audits the lab host in every case while its sockets are live (`matrix --audit`);
    /// `onProgress` is called from the lanes' threads after each case with (cases done, total).
    public func run(_ cases: [MatrixCase], portBase: UInt16 = 10_000, portStride: UInt16 = 1, audit: Bool = false,
                    onProgress: (@Sendable (Int, Int) -> Void)? = nil) -> [MatrixCaseOutcome] {
        run(cases, audit: audit, onProgress: onProgress) { index in portBase &+ UInt16(index % 20_000) &* portStride }
    }

    /// The cases and their baselines in one pass over the same lanes, so that the baselines
    /// cost no lab of their own: cases on ports from 10,000, baselines from 40,000.
    public func run(cases: [MatrixCase], baselines: [MatrixCase]) -> (cases: [MatrixCaseOutcome], baselines: [MatrixCaseOutcome]) {
        let outcomes = run(cases + baselines, audit: false, onProgress: nil) { index in
            index < cases.count ? 10_000 &+ UInt16(index % 20_000) : 40_000 &+ UInt16((index - cases.count) % 20_000)
        }
        return (Array(outcomes[..<cases.count]), Array(outcomes[cases.count...]))
    }

    /// `netnsPort` gives each case's port in the netns topology, by its index.
    private func run(_ cases: [MatrixCase], audit: Bool, onProgress: (@Sendable (Int, Int) -> Void)?,
                     netnsPort: @escaping @Sendable (Int) -> UInt16) -> [MatrixCaseOutcome] {
        let results = Results(count: cases.count, onProgress: onProgress)
        let lanes = max(1, min(workers, cases.count))
        let serviceSockets = cases.map(\.firstSockets.count).max() ?? 1
        DispatchQueue.concurrentPerform(iterations: lanes) { lane in
            // Each lane's worker (its lab and agents) is made, used and ended on the lane's own thread.
            var worker: MatrixWorker?
            // A lab that cannot be set up twice in a row will not be the third time: stop
            // rebuilding it for every remaining case, and say why on each.
            var setupFailures = 0
            var setupProblem = ""
            for index in stride(from: lane, to: cases.count, by: lanes) {
                let matrixCase = cases[index]
                if let reason = skipReason(matrixCase) {
                    results.set(index, MatrixCaseOutcome(matrixCase: matrixCase, status: .skipped, skipReason: reason))
                    continue
                }
                var outcome = MatrixCaseOutcome(matrixCase: matrixCase, status: .error)
                if setupFailures >= 2 {
                    outcome.error = "not run: this lane's lab could not be set up twice in a row (\(setupProblem))"
                    results.set(index, outcome)
                    continue
                }
                do throws(LabError) {
                    if worker == nil {
                        do throws(LabError) {
                            let made = try MatrixWorker(settings: settings, audits: audit, serviceSockets: serviceSockets, bindService: bindService)
                            record(made.started)
                            worker = made
                            setupFailures = 0
                        } catch {
                            setupFailures += 1
                            setupProblem = error.description
                            throw error
                        }
                    }
                    let port: UInt16
                    do throws(SystemError) {
                        port = settings.topology.kind == .netns ? netnsPort(index) : try Topology.freeHostPort(for: matrixCase.transport)
                    } catch {
                        throw .setup("no free port: \(error)")
                    }
                    outcome = try worker!.run(matrixCase, port: port, audit: audit)
                    if !worker!.healthy {
                        worker?.kill()
                        worker = nil
                    }
                } catch {
                    outcome.error = error.description
                    // A worker that failed is in an unknown state: the next case gets a new one.
                    worker?.kill()
                    worker = nil
                }
                results.set(index, outcome)
            }
            worker?.finish()
        }
        return results.all
    }

    private func record(_ identities: [ProcessIdentity]) {
        started.withLock { $0 += identities }
    }

    /// Outcomes written by several worker threads, each to its own slots.
    private final class Results: Sendable {
        private struct State {
            var outcomes: [MatrixCaseOutcome?]
            var done = 0
        }

        private let state: Mutex<State>
        private let onProgress: (@Sendable (Int, Int) -> Void)?

        init(count: Int, onProgress: (@Sendable (Int, Int) -> Void)?) {
            state = Mutex(State(outcomes: Array(repeating: nil, count: count)))
            self.onProgress = onProgress
        }

        func set(_ index: Int, _ outcome: MatrixCaseOutcome) {
            let (finished, total) = state.withLock { state in
                state.outcomes[index] = outcome
                state.done += 1
                return (state.done, state.outcomes.count)
            }
            // Outside the lock: a slow progress callback holds up no other lane.
            onProgress?(finished, total)
        }

        var all: [MatrixCaseOutcome] { state.withLock { state in state.outcomes.map { $0! } } }
    }
}
