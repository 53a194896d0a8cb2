import HijackAgent
import HijackAudit
import HijackCLI
import HijackSystem

// The words a scenario, its outcome and its report share: below Scenario, so that the
// report can read outcomes without reading scenario files.

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

/// Who a socket's agent runs as.
public enum SocketUser: String, Codable, Sendable {
    case same
    /// uid and gid 65534 (nobody), for the rules that depend on the effective uid.
    case other
}

/// Where a probe's client runs.
public enum ProbeClient: String, Codable, Sendable {
    /// A client on the lab host itself (a local process).
    case host
    /// A client on the external peer (needs the netns topology).
    case peer
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

public struct SocketExpectation: Sendable, Equatable, Codable {
    /// "ok" or an errno name.
    public var bind: String
    /// "ok", an errno name, or "not-attempted".
    public var listen: String
}

/// Names for the lab's addresses, so that scenario files hold no topology details.
public enum AddressSymbol: String, Sendable, CaseIterable {
    case wildcard4
    case loopback4
    case wildcard6
    /// `[::]` with IPV6_V6ONLY: IPv6 only, leaving every IPv4 address of the port free.
    case wildcard6Only = "wildcard6-only"
    case loopback6
    /// `::ffff:127.0.0.1`: an IPv6 socket bound to the IPv4 loopback.
    case v4mappedLoopback = "v4mapped-loopback"
    case labInterface = "lab-interface"
    case labInterface6 = "lab-interface6"
    /// 198.51.100.3: an address that exists only after an `add-address` step put it on lab0.
    case labInterfaceAdded = "lab-interface-added"

    public var meaning: String {
        switch self {
        case .wildcard4: "0.0.0.0, every IPv4 address of the host"
        case .loopback4: "127.0.0.1"
        case .wildcard6: "[::], every IPv6 address and, dual-stack, every IPv4 address too"
        case .wildcard6Only: "[::] with IPV6_V6ONLY, every IPv6 address and no IPv4 address"
        case .loopback6: "::1"
        case .v4mappedLoopback: "::ffff:127.0.0.1, the IPv4 loopback on an IPv6 socket"
        case .labInterface: "the lab host's interface address, 198.51.100.1 (netns topology only)"
        case .labInterface6: "the lab host's interface IPv6 address, 2001:db8::1 (netns topology only)"
        case .labInterfaceAdded: "198.51.100.3, added to the lab host's interface by an add-address step (netns topology only)"
        }
    }

    /// Options a symbol stands for: `wildcard6-only` is `[::]` plus IPV6_V6ONLY.
    public var impliedOptions: [SocketOption] {
        self == .wildcard6Only ? [.ipv6Only] : []
    }

    public var isWildcard: Bool { [.wildcard4, .wildcard6, .wildcard6Only].contains(self) }
}
