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

/// The scenario's port: an ordinary one (10000 and up), or one below the kernel's
/// net.ipv4.ip_unprivileged_port_start (1024 by default), which only a process with
/// CAP_NET_BIND_SERVICE may bind.
public enum PortKind: String, Codable, Sendable, CaseIterable {
    case ordinary
    case privileged
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

public struct Expectation: Sendable {
    public var verdict: Verdict
    public var sockets: [String: SocketExpectation]
    public var probes: [String: ProbeExpectation]
}

public struct ProbeExpectation: Sendable, Equatable, Codable {
    /// The sockets that receive at least one connection; empty means every connection fails.
    public var receivedBy: [String]
}
