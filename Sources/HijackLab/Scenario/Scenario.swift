import HijackAgent
import HijackAudit
import HijackCLI
import HijackSystem

/// A scenario, validated: everything the runner needs and nothing it has to guess.
public struct Scenario: Sendable {
    public var name: String
    public var title: String
    public var story: String
    public var lesson: String
    public var transport: Transport
    public var sockets: [SocketSpec]
    public var probes: [ProbeSpec]
    public var steps: [Step]
    public var expectation: Expectation
    /// The file it came from, as given on the command line or found in the directory.
    public var file: String
    /// Run `hijack-lab audit` while the sockets are live, and put it in the report.
    public var audit: Bool = false
    /// Which kind of port the runner picks for the scenario.
    public var port: PortKind = .ordinary

    public func socket(_ id: String) -> SocketSpec? { sockets.first { $0.id == id } }
    public func probe(_ id: String) -> ProbeSpec? { probes.first { $0.id == id } }
}

public enum Role: String, Codable, Sendable, CaseIterable {
    /// The service whose traffic is at stake.
    case victim
    /// The process that tries to take it.
    case attacker
    /// A service that applies the fix (one socket per address) and should keep its traffic.
    case defender
    /// A service instance in a restart story, where nobody attacks.
    case server
}

/// The scenario's port: an ordinary one (10000 and up), or one below the kernel's
/// net.ipv4.ip_unprivileged_port_start (1024 by default), which only a process with
/// CAP_NET_BIND_SERVICE may bind.
public enum PortKind: String, Codable, Sendable, CaseIterable {
    case ordinary
    case privileged
}

/// Who a socket's agent runs as.
public enum SocketUser: String, Codable, Sendable {
    case same
    /// uid and gid 65534 (nobody), for the rules that depend on the effective uid.
    case other
}

public struct SocketSpec: Sendable {
    public var id: String
    public var role: Role
    public var address: AddressSpec
    public var options: [SocketOption]
    public var device: String?
    public var user: SocketUser
    public var listens: Bool
    /// The id of the socket this one replaces in a restart story.
    public var restarts: String?

    /// Options in the order the agent sets them, SO_BINDTODEVICE last.
    public var allOptions: [SocketOption] { options + (device.map { [.bindToDevice($0)] } ?? []) }
}

/// Where a probe's client runs.
public enum ProbeClient: String, Codable, Sendable {
    /// A client on the lab host itself (a local process).
    case host
    /// A client on the external peer (needs the netns topology).
    case peer
}

public struct ProbeSpec: Sendable {
    public var id: String
    public var from: ProbeClient
    public var to: AddressSpec
    public var connections: Int
    /// Which side closes each connection first, and so which side keeps it in TIME_WAIT.
    public var closes: CloseOrder
}

/// One action of a scenario, in order. Files that omit steps get `Step.defaults(for:)`.
public enum Step: Sendable, Equatable {
    /// socket(), the socket's options, bind().
    case bind(String)
    /// listen(), then start accepting (TCP) or receiving (UDP).
    case listen(String)
    case probe(String)
    /// close() the socket; the agent stays.
    case close(String)
    /// close() the socket and end the agent's process, as a server exits before a restart.
    case exit(String)
    /// Add an address to the lab host's interface, as DHCP or an operator would after the
    /// service started (netns only; removed again when the scenario ends).
    case addAddress(AddressSymbol)

    /// Each socket binds then listens, in file order; then each probe runs.
    public static func defaults(for sockets: [SocketSpec], probes: [ProbeSpec]) -> [Step] {
        sockets.flatMap { socket in socket.listens ? [.bind(socket.id), .listen(socket.id)] : [.bind(socket.id)] }
            + probes.map { .probe($0.id) }
    }

    public var description: String {
        switch self {
        case .bind(let id): "bind \(id)"
        case .listen(let id): "listen \(id)"
        case .probe(let id): "probe \(id)"
        case .close(let id): "close \(id)"
        case .exit(let id): "exit \(id)"
        case .addAddress(let symbol): "add-address \(symbol.rawValue)"
        }
    }
}

public enum Verdict: String, Codable, Sendable, CaseIterable {
    /// An attacker received every connection of some probe.
    case hijacked
    /// Attacker and victim both received connections of some probe.
    case shared
    /// Every attacker failed to bind or to listen.
    case blocked
    /// An attacker holds the port and a victim or defender could not bind or listen.
    case squatted
    /// Attackers were bound but received nothing.
    case unaffected
    /// The restarted server bound and listened.
    case restarted
    /// The restarted server could not bind or listen.
    case restartBlocked = "restart-blocked"
}

public struct Expectation: Sendable {
    public var verdict: Verdict
    public var sockets: [String: SocketExpectation]
    public var probes: [String: ProbeExpectation]
}

public struct SocketExpectation: Sendable, Equatable, Codable {
    /// "ok" or an errno name.
    public var bind: String
    /// "ok", an errno name, or "not-attempted".
    public var listen: String
}

public struct ProbeExpectation: Sendable, Equatable, Codable {
    /// The sockets that receive at least one connection; empty means every connection fails.
    public var receivedBy: [String]
}
