import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation
import Glibc

/// Runs scenarios: starts one agent per socket, carries out the steps, probes, and turns
/// the agents' replies into a `ScenarioOutcome`. It formats nothing for people.
public final class Runner {
    public let settings: LabSettings
    /// The clients, and in netns the namespaces they hold; made once per run.
    private var network: LabNetwork?
    /// Every agent process this runner started, so callers can check that none outlives it.
    public private(set) var startedProcesses: [ProcessIdentity] = []
    /// Ports already given to scenarios in this run.
    private var usedPorts: Set<UInt16> = []
    /// Addresses the current scenario added to the lab host's interface.
    private var addedAddresses: [String] = []
    /// Called as each step starts: for progress output on long runs.
    public var onStep: ((_ scenario: String, _ step: Step) -> Void)?

    public init(settings: LabSettings) {
        self.settings = settings
        // A write to an agent that died must fail with EPIPE, not kill the runner.
        signal(SIGPIPE, SIG_IGN)
    }

    deinit { shutdown() }

    /// Builds the lab network and starts its clients. `run` calls it when needed; calling it
    /// first lets a caller tell a network that cannot be made from a scenario that failed.
    /// The host client holds the audit's capabilities only when `auditing`, `run --audit` or a
    /// scenario of the run asks for them; a lab made without them is made anew for the first
    /// scenario that audits.
    public func prepare(auditing: Bool = false) throws(LabError) {
        let audits = auditing || settings.auditAll || settings.scenariosAudit
        if let network, network.audits || !audits { return }
        network?.finish()
        network = nil
        network = try LabNetwork.make(settings, audits: audits) { startedProcesses.append($0) }
    }

    /// The pid holding the lab host's namespace, for tests that check it is gone afterwards.
    public var labHostPID: pid_t? { settings.topology.kind == .netns ? network?.hostClient.pid : nil }

    /// Audits the lab host as it is now (the host's own namespace on loopback).
    public func auditLab(port: UInt16? = nil) throws(LabError) -> AuditReport {
        try prepare(auditing: true)
        guard let host = network?.hostClient else { throw .setup("the lab has no host client") }
        return try host.audit(port: port)
    }

    /// Ends the clients, and with them the lab's namespaces.
    public func shutdown() {
        network?.finish()
        network = nil
    }

    public func run(_ scenario: Scenario) -> ScenarioOutcome {
        var outcome = ScenarioOutcome(
            name: scenario.name, title: scenario.title, story: scenario.story, lesson: scenario.lesson, file: scenario.file,
            transport: scenario.transport, status: .ran, skipReason: nil, error: nil, port: nil, verdict: nil,
            expectedVerdict: scenario.expectation.verdict, matchesExpectation: false, differences: [],
            steps: scenario.steps.map(\.description),
            sockets: scenario.sockets.map { socket in
                SocketOutcome(
                    id: socket.id, role: socket.role, addressSpec: socket.address.description,
                    address: try? settings.topology.resolve(socket.address).get(), port: nil,
                    options: socket.options.map(\.name), device: socket.device, user: socket.user, restarts: socket.restarts,
                    listens: socket.listens, uid: nil, pid: nil, bind: .notAttempted,
                    listen: scenario.transport == .udp ? .notApplicable : .notAttempted, calls: [],
                    expected: scenario.expectation.sockets[socket.id]!)
            },
            probes: scenario.probes.map { probe in
                ProbeOutcome(
                    id: probe.id, from: probe.from, toSpec: probe.to.description, to: try? settings.topology.resolve(probe.to).get(),
                    port: nil, attempts: probe.connections, closes: probe.closes, ran: false, receivedBy: [:], failed: 0, errors: [:],
                    lost: 0, resolved: nil, reached: [:],
                    expectedReceivers: scenario.expectation.probes[probe.id]!.receivedBy)
            },
            audit: nil)
        if let reason = skipReason(scenario) {
            outcome.status = .skipped
            outcome.skipReason = reason
            return outcome
        }
        var agents: [String: AgentClient] = [:]
        // Agents that exited mid-scenario (a restart): their reports still vouch for identities.
        var ended: [String: AgentClient] = [:]
        defer { agents.values.forEach { $0.kill() } }
        let clock = ScenarioClock(seconds: settings.scenarioDeadline)
        // An address a step added is taken off again, however the scenario ended, so the next
        // scenario finds the lab as it was; a lab that cannot be restored is made anew.
        defer {
            for address in addedAddresses {
                do throws(LabError) { try network?.changeLabAddress(address, add: false) } catch {
                    network?.kill()
                    network = nil
                }
            }
            addedAddresses = []
        }
        do throws(LabError) {
            let seen = try carryOut(scenario, into: &outcome, agents: &agents, ended: &ended, clock: clock)
            // Each agent has written its acceptances before its identity reached a client,
            // so one `sync` per agent brings them all into the runner.
            _ = try clock.request(Array(agents.values), .sync, wanting: settings.replyTimeout)
            if scenario.audit || settings.auditAll, let host = network?.hostClient {
                // The host client lives in the lab host, so it reads the scenario's own sockets.
                outcome.audit = try clock.request(host, .audit(port: outcome.port), wanting: settings.replyTimeout).audit
            }
            try IdentityCheck.confirm(seen, in: "scenario") { agents[$0] ?? ended[$0] }
            // Every agent is told to end before the first is waited for, so they exit side by side.
            for agent in agents.values { agent.closeInput() }
            for agent in agents.values { agent.finish() }
        } catch {
            outcome.status = .error
            outcome.error = error.description
            outcome.differences = ["the scenario could not finish: \(error.description)"]
            return outcome
        }
        let verdict = VerdictRules.verdict(sockets: outcome.sockets, probes: outcome.probes)
        outcome.verdict = verdict
        outcome.differences = VerdictRules.differences(sockets: outcome.sockets, probes: outcome.probes, verdict: verdict, expected: scenario.expectation.verdict)
        outcome.matchesExpectation = outcome.differences.isEmpty
        return outcome
    }

    /// What the topology or the user cannot give this scenario, if anything.
    public func skipReason(_ scenario: Scenario) -> String? {
        for socket in scenario.sockets {
            if case .failure(let unavailable) = settings.topology.resolve(socket.address) { return "socket \(socket.id): \(unavailable.reason)" }
            if socket.user == .other, let reason = settings.otherUserSkip("socket \(socket.id)") { return reason }
            if socket.device != nil, let reason = settings.netnsSkip("socket \(socket.id) binds to a device, which the lab does") { return reason }
        }
        for probe in scenario.probes {
            if case .failure(let unavailable) = settings.topology.resolve(probe.to) { return "probe \(probe.id): \(unavailable.reason)" }
            if probe.from == .peer, let reason = settings.netnsSkip("probe \(probe.id) comes from the external peer, which exists") { return reason }
        }
        if scenario.port == .privileged, let reason = settings.netnsSkip("its port is a privileged one (below 1024), which the lab binds") { return reason }
        if scenario.steps.contains(where: { if case .addAddress = $0 { true } else { false } }),
           let reason = settings.netnsSkip("it adds an address to the lab host's interface, which exists") { return reason }
        return nil
    }

    /// Carries out the steps; returns every connection the probes made, by probe id.
    private func carryOut(_ scenario: Scenario, into outcome: inout ScenarioOutcome, agents: inout [String: AgentClient],
                          ended: inout [String: AgentClient], clock: ScenarioClock) throws(LabError) -> [(probe: String, connection: ProbeConnection)] {
        var seen: [(probe: String, connection: ProbeConnection)] = []
        try prepare(auditing: scenario.audit)
        let placement = network!.placement
        let port: UInt16
        do throws(SystemError) {
            port = try settings.topology.port(for: scenario.name, transport: scenario.transport, taken: usedPorts, kind: scenario.port)
        } catch {
            throw .setup("no free port: \(error)")
        }
        usedPorts.insert(port)
        outcome.port = port
        for index in outcome.sockets.indices { outcome.sockets[index].port = port }
        for index in outcome.probes.indices { outcome.probes[index].port = port }

        // Start every agent first and only then wait, so their start-up times overlap. They
        // start in the scenario's order, as a service starts before its intruder: a live
        // audit orders processes by start time, and within one clock tick by pid.
        for socket in scenario.sockets {
            // Below ip_unprivileged_port_start a same-user (root) agent keeps CAP_NET_BIND_SERVICE;
            // another user's agent loses it with its uid, which is what such a scenario shows.
            let user = socket.user == .other ? ["--user", "other"] : scenario.port == .privileged ? ["--bind-service"] : []
            let agent = try AgentClient(executable: settings.agentExecutable, id: socket.id, extraArguments: placement + user, timeout: settings.replyTimeout)
            startedProcesses.append(agent.identity)
            agents[socket.id] = agent
        }
        for socket in scenario.sockets {
            let agent = agents[socket.id]!
            try agent.awaitReady(timeout: try clock.budget(settings.replyTimeout))
            let index = outcome.sockets.firstIndex { $0.id == socket.id }!
            outcome.sockets[index].pid = agent.pid
            outcome.sockets[index].uid = agent.uid
        }

        var steps = scenario.steps[...]
        while let step = steps.popFirst() {
            onStep?(scenario.name, step)
            switch step {
            case .bind(let id):
                let socket = scenario.socket(id)!
                let index = outcome.sockets.firstIndex { $0.id == id }!
                guard let address = outcome.sockets[index].address else { throw .setup("socket \(id) has no address here") }
                let request = SocketRequest(transport: scenario.transport, address: address, port: port,
                                            options: socket.options.map(\.name), device: socket.device)
                // A bind followed at once by its own listen is one request: the agent binds,
                // and only if that worked listens (TCP) and serves, as the two steps would.
                let listensNext = steps.first == .listen(id)
                if listensNext {
                    let listen = steps.removeFirst()
                    onStep?(scenario.name, listen)
                }
                let command: AgentCommand = listensNext ? .open(request, listen: true) : .bind(request)
                let calls = try clock.request(agents[id]!, command, wanting: settings.replyTimeout).calls
                outcome.sockets[index].calls += calls
                outcome.sockets[index].bind = calls.last { $0.call == "bind" }?.result ?? .notAttempted
                if listensNext, scenario.transport == .tcp, outcome.sockets[index].bind == .ok {
                    outcome.sockets[index].listen = calls.last { $0.call == "listen" }?.result ?? .notAttempted
                }
            case .listen(let id):
                let index = outcome.sockets.firstIndex { $0.id == id }!
                guard outcome.sockets[index].bind == .ok else { continue }
                let agent = agents[id]!
                // UDP has no listen(): a bound socket already receives, so the step only serves.
                if scenario.transport == .udp {
                    outcome.sockets[index].listen = .notApplicable
                    _ = try clock.request(agent, .serve, wanting: settings.replyTimeout)
                    continue
                }
                let calls = try clock.request(agent, .listen, wanting: settings.replyTimeout).calls
                outcome.sockets[index].calls += calls
                let result = calls.last?.result ?? .notAttempted
                outcome.sockets[index].listen = result
                if result == .ok { _ = try clock.request(agent, .serve, wanting: settings.replyTimeout) }
            case .probe(let id):
                let index = outcome.probes.firstIndex { $0.id == id }!
                let (connections, resolved) = try probe(outcome.probes[index], transport: scenario.transport, clock: clock)
                seen += connections.map { (id, $0) }
                outcome.probes[index].ran = true
                outcome.probes[index].resolved = resolved
                for connection in connections {
                    if let remote = connection.remote { outcome.probes[index].reached[remote, default: 0] += 1 }
                    if connection.lost == true {
                        outcome.probes[index].lost += 1
                    } else if let identity = connection.identity {
                        outcome.probes[index].receivedBy[AgentIdentity.receiver(named: identity), default: 0] += 1
                    } else {
                        outcome.probes[index].failed += 1
                        outcome.probes[index].errors[connection.error ?? "unknown", default: 0] += 1
                    }
                }
            case .addAddress(let symbol):
                guard case .success(let address) = settings.topology.resolve(.symbol(symbol)) else { throw .setup("\(symbol.rawValue) has no address here") }
                try network!.changeLabAddress(address, add: true)
                addedAddresses.append(address)
            case .close(let id), .exit(let id):
                let index = outcome.sockets.firstIndex { $0.id == id }!
                let agent = agents[id]!
                let ending = step == .exit(id)
                let wait = Int(settings.connectTimeout * 1000)
                let reply = try clock.request(agent, ending ? .exit(waitMilliseconds: wait) : .close(waitMilliseconds: wait), wanting: settings.replyTimeout)
                outcome.sockets[index].calls += reply.calls
                if ending {
                    // Wait for the process to be gone: a restart must not race the old server's exit.
                    agent.finish()
                    agents[id] = nil
                    ended[id] = agent
                }
            }
        }
        return seen
    }

    private func probe(_ probe: ProbeOutcome, transport: Transport, clock: ScenarioClock) throws(LabError) -> (connections: [ProbeConnection], resolved: [String]?) {
        guard let client = network?.client(probe.from) else { throw .setup("no \(probe.from.rawValue) client in this topology") }
        guard let to = probe.to, let port = probe.port else { throw .setup("probe \(probe.id) has no destination here") }
        let request = ProbeRequest(transport: transport, destinations: [.init(address: to, count: probe.attempts)], port: port, closes: probe.closes,
                                   timeoutMilliseconds: Int(settings.connectTimeout * 1000), labRanges: settings.topology.kind == .netns)
        // The client may spend the connect timeout on every connection, so its reply gets that long.
        let budget = settings.replyTimeout + settings.connectTimeout * Double(probe.attempts)
        do throws(LabError) {
            guard case .probed(let connections, let resolved) = try clock.request(client, .probe(request), wanting: budget) else {
                throw LabError.agentRefused(agent: client.id, command: "\"probe\"", reason: "it answered without connections")
            }
            return (connections, resolved)
        } catch {
            // A client that failed is in an unknown state: the next scenario gets a new network.
            network?.kill()
            network = nil
            throw error
        }
    }
}

/// One scenario's deadline. Every wait takes the smaller of its own timeout and the time
/// left, so no scenario can run past `--deadline`, however many connections it asks for.
struct ScenarioClock {
    let seconds: Double
    let deadline: Deadline

    init(seconds: Double) {
        self.seconds = seconds
        deadline = .after(seconds: seconds)
    }

    /// How long the next wait may take; throws once the deadline has passed.
    func budget(_ wanted: Double) throws(LabError) -> Double {
        let left = (Double(deadline.nanoseconds) - Double(Deadline.now().nanoseconds)) / 1e9
        guard left > 0 else { throw .deadline(seconds: seconds) }
        return min(wanted, left)
    }

    /// One command to every agent, sent to all before the first reply is read, so that they
    /// work at once; the replies in the agents' order. Waits are cut at the deadline.
    func request(_ agents: [AgentClient], _ command: AgentCommand, wanting wanted: Double) throws(LabError) -> [AgentReply] {
        for agent in agents { try agent.send([command]) }
        var replies: [AgentReply] = []
        for agent in agents {
            let allowed = try budget(wanted)
            do throws(LabError) {
                replies.append(try agent.reply(to: command, timeout: allowed))
            } catch {
                if case .timeout = error, allowed < wanted { throw .deadline(seconds: seconds) }
                throw error
            }
        }
        return replies
    }

    /// A request whose wait is cut at the deadline; a timeout that the deadline caused is
    /// reported as the deadline, not as a slow agent.
    func request(_ agent: AgentClient, _ command: AgentCommand, wanting wanted: Double) throws(LabError) -> AgentReply {
        try request([agent], command, wanting: wanted)[0]
    }
}
