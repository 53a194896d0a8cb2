import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation

/// An address as a scenario writes it: a symbol the topology resolves, or a literal.
public enum AddressSpec: Sendable, Equatable, CustomStringConvertible {
    case symbol(AddressSymbol)
    case literal(String)
    /// A host name a probe resolves from the lab's own hosts file, in a client's order (LabHosts), e.g. "localhost".
    case name(String)

    public init(parsing text: String) {
        if let symbol = AddressSymbol(rawValue: text) {
            self = .symbol(symbol)
        } else if SocketAddress(host: text, port: 0) == nil, text.range(of: "^[A-Za-z][A-Za-z0-9-]*(\\.[A-Za-z0-9-]+)*$", options: .regularExpression) != nil {
            self = .name(text)
        } else {
            self = .literal(text)
        }
    }

    public var description: String {
        switch self {
        case .symbol(let symbol): symbol.rawValue
        case .literal(let text), .name(let text): text
        }
    }
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

