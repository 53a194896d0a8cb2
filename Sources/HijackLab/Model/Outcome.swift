import HijackAgent
import HijackAudit
import HijackCLI
import HijackSystem

/// Whether a scenario or a matrix case ran.
public enum RunStatus: String, Codable, Sendable {
    case ran
    case skipped
    /// The runner could not finish it (a timeout, a refused command).
    case error
}

/// What happened in one scenario: every field comes from a reply of a real agent.
/// The JSON output is these values as they are; the Markdown report renders them.
public struct ScenarioOutcome: Codable, Sendable {
    public typealias Status = RunStatus

    public var name: String
    public var title: String
    public var story: String
    public var lesson: String
    public var file: String
    public var transport: Transport
    public var status: Status
    public var skipReason: String?
    public var error: String?
    public var port: UInt16?
    public var verdict: Verdict?
    public var expectedVerdict: Verdict
    public var matchesExpectation: Bool
    /// One line per way the run differed from the expectation.
    public var differences: [String]
    public var steps: [String]
    public var sockets: [SocketOutcome]
    public var probes: [ProbeOutcome]
    /// What `hijack-lab audit` said in the lab host while the sockets were live, if asked.
    public var audit: AuditReport?
}

public struct SocketOutcome: Codable, Sendable, Equatable {
    public var id: String
    public var role: Role
    /// The address as the file wrote it (a symbol or a literal).
    public var addressSpec: String
    /// The numeric address it resolved to, or nil where the topology has none.
    public var address: String?
    public var port: UInt16?
    public var options: [String]
    public var device: String?
    public var user: SocketUser
    public var restarts: String?
    public var listens: Bool
    public var uid: UInt32?
    public var pid: Int32?
    /// ok, an errno, or not attempted.
    public var bind: SyscallResult
    /// As bind, or not applicable for UDP, which has no listen().
    public var listen: SyscallResult
    public var calls: [SyscallRecord]
    public var expected: SocketExpectation
}

public struct ProbeOutcome: Codable, Sendable, Equatable {
    public var id: String
    public var from: ProbeClient
    public var toSpec: String
    public var to: String?
    public var port: UInt16?
    public var attempts: Int
    public var closes: CloseOrder
    /// False when the scenario ended before this probe ran: then it has no results at all.
    public var ran: Bool
    /// Connections per receiving socket id, from the identity each client read.
    public var receivedBy: [String: Int]
    public var failed: Int
    /// Failed connections per errno name.
    public var errors: [String: Int]
    /// UDP datagrams that got no reply in time: counted, never as failures.
    public var lost: Int
    /// For a probe to a name: the addresses the lab's hosts file gives, in the order a client tries them.
    public var resolved: [String]?
    /// Connections or datagrams per destination address they went to.
    public var reached: [String: Int]
    public var expectedReceivers: [String]
}

extension SocketOutcome {
    var failedToServe: Bool { !SyscallResult.served(bind: bind, listen: listens ? listen : .notApplicable) }

    var setsReuseOption: Bool { options.contains("SO_REUSEADDR") || options.contains("SO_REUSEPORT") }
}

public enum VerdictRules {
    /// The verdict follows from results alone:
    /// - with no attacker, a restart story is `restarted` when every restarted socket bound
    ///   (and listened), `restart-blocked` otherwise;
    /// - `blocked` when every attacker failed to bind or listen;
    /// - `squatted` when an attacker holds the port and a victim or defender failed to;
    /// - `hijacked` when in some probe every connection that reached a socket reached an
    ///   attacker (the probe table shows any that reached nobody);
    /// - `shared` when in some probe both attackers and others received;
    /// - `unaffected` otherwise.
    public static func verdict(sockets: [SocketOutcome], probes: [ProbeOutcome]) -> Verdict {
        let attackers = Set(sockets.filter { $0.role == .attacker }.map(\.id))
        let restarted = sockets.filter { $0.restarts != nil }
        if attackers.isEmpty && !restarted.isEmpty {
            return restarted.allSatisfy { !$0.failedToServe } ? .restarted : .restartBlocked
        }
        guard !attackers.isEmpty else { return .unaffected }
        if sockets.filter({ attackers.contains($0.id) }).allSatisfy(\.failedToServe) { return .blocked }
        if sockets.contains(where: { ($0.role == .victim || $0.role == .defender) && $0.failedToServe }) { return .squatted }
        var sawShared = false
        for probe in probes {
            let toAttackers = probe.receivedBy.filter { attackers.contains($0.key) }.values.reduce(0, +)
            let toOthers = probe.receivedBy.filter { !attackers.contains($0.key) }.values.reduce(0, +)
            if toAttackers > 0 && toOthers == 0 { return .hijacked }
            if toAttackers > 0 && toOthers > 0 { sawShared = true }
        }
        return sawShared ? .shared : .unaffected
    }

    /// Every way the outcome differs from what the scenario file expects.
    public static func differences(sockets: [SocketOutcome], probes: [ProbeOutcome], verdict: Verdict, expected: Verdict) -> [String] {
        var differences: [String] = []
        for socket in sockets {
            if socket.bind != SyscallResult(text: socket.expected.bind) {
                differences.append("\(socket.id): bind expected \(socket.expected.bind), got \(socket.bind)")
            }
            if socket.listen != SyscallResult(text: socket.expected.listen) {
                differences.append("\(socket.id): listen expected \(socket.expected.listen), got \(socket.listen)")
            }
        }
        for probe in probes {
            guard probe.ran else {
                differences.append("probe \(probe.id) did not run")
                continue
            }
            let receivers = Set(probe.receivedBy.filter { $0.value > 0 }.keys)
            if receivers != Set(probe.expectedReceivers) {
                let expected = probe.expectedReceivers.isEmpty ? "nobody" : probe.expectedReceivers.sorted().joined(separator: " + ")
                let got = receivers.isEmpty ? "nobody" : receivers.sorted().map { "\($0) \(probe.receivedBy[$0]!)" }.joined(separator: " + ")
                differences.append("probe \(probe.id): expected receivers \(expected), got \(got)")
            } else if !probe.expectedReceivers.isEmpty && probe.failed > 0 {
                let errors = probe.errors.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
                differences.append("probe \(probe.id): \(probe.failed) of \(probe.attempts) connections failed (\(errors))")
            }
        }
        if verdict != expected { differences.append("verdict expected \(expected.rawValue), got \(verdict.rawValue)") }
        return differences
    }
}

/// The whole run: what `--json` writes and what the report renders.
public struct LabReport: Codable, Sendable {
    public struct Environment: Codable, Sendable {
        public var kernel: String
        public var uid: UInt32
        public var topology: TopologyKind
        public var topologyReason: String
        public var date: String
        /// The hijack-lab version that ran (`hijack-lab --version`).
        public var toolVersion: String?

        public init(kernel: String, uid: UInt32, topology: TopologyKind, topologyReason: String, date: String, toolVersion: String? = nil) {
            self.kernel = kernel
            self.uid = uid
            self.topology = topology
            self.topologyReason = topologyReason
            self.date = date
            self.toolVersion = toolVersion
        }
    }

    public struct InvalidFile: Codable, Sendable, Equatable {
        public var file: String
        public var field: String
        public var expected: String
        public var found: String?
        public var message: String

        public init(_ error: ScenarioError) {
            file = error.file
            field = error.field
            expected = error.expected
            found = error.found
            message = error.description
        }
    }

    public var environment: Environment
    public var scenarios: [ScenarioOutcome]
    public var invalidFiles: [InvalidFile]
    /// The matrix cases `all` ran for the "At a glance" table; nil for `run`.
    public var glance: GlanceEvidence?
    /// The real servers of servers/ that `all` ran (issue 22); nil for `run`.
    public var servers: ServersEvidence?

    public init(environment: Environment, scenarios: [ScenarioOutcome], invalidFiles: [InvalidFile], glance: GlanceEvidence? = nil,
                servers: ServersEvidence? = nil) {
        self.environment = environment
        self.scenarios = scenarios
        self.invalidFiles = invalidFiles
        self.glance = glance
        self.servers = servers
    }

    /// 0 when every scenario that ran matched; 1 when any differed or could not finish, or a
    /// server's run was not clean (`ServersEvidence.exitStatus`);
    /// 2 when a scenario file could not be read.
    public var exitStatus: Int32 {
        if !invalidFiles.isEmpty { return 2 }
        if scenarios.contains(where: { $0.status == .error || ($0.status == .ran && !$0.matchesExpectation) }) { return 1 }
        return servers?.exitStatus ?? 0
    }
}

/// The matrix cases that `all` runs for the "At a glance" table (`GlanceEvidence.plan`): a
/// service bound one common way, with each option set (one socket, or one per address as a
/// service of several sockets), alone and beside every second socket of the matrix.
public struct GlanceEvidence: Codable, Sendable {
    /// The destinations each case probed, in delivery order ("127.0.0.1", "::1", "lab-interface", "lab-interface6").
    public var destinations: [String]
    public var cases: [MatrixCaseOutcome]
    /// Each first socket alone: what it receives with nobody beside it.
    public var baselines: [MatrixCaseOutcome]

    public init(destinations: [String], cases: [MatrixCaseOutcome], baselines: [MatrixCaseOutcome]) {
        self.destinations = destinations
        self.cases = cases
        self.baselines = baselines
    }
}
