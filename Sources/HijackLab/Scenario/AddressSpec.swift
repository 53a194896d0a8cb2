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

/// The addresses the lab may ever bind or send to. Anything else is refused before a socket exists.
///
/// Ranges are compared on the address's bytes, never its text: text has many spellings for
/// one address, and a prefix of one spelling says nothing about another.
enum LabAddressPolicy {
    static let outside = "outside the lab's ranges (0.0.0.0, ::, 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104, and in netns 198.51.100.0/24, 2001:db8::/64)"

    /// Wildcards and loopback are always allowed; the lab's documentation ranges only
    /// where the run created the network that holds them.
    static func refusal(for host: String, labRangesAllowed: Bool) -> String? {
        guard let address = SocketAddress(host: host, port: 0) else { return "not a numeric IPv4 or IPv6 address" }
        return refusal(for: address, labRangesAllowed: labRangesAllowed)
    }

    static func refusal(for address: SocketAddress, labRangesAllowed: Bool) -> String? {
        let bytes = address.networkOrderBytes
        switch address {
        case .v4:
            // 0.0.0.0 and 127.0.0.0/8
            if bytes == [0, 0, 0, 0] || bytes[0] == 127 { return nil }
            // 198.51.100.0/24 (TEST-NET-2, RFC 5737)
            if bytes[0..<3] == [198, 51, 100] { return labRangesAllowed ? nil : "198.51.100.0/24 exists only in the netns topology" }
        case .v6:
            let zeros = [UInt8](repeating: 0, count: 15)
            // :: and ::1
            if bytes[0..<15].elementsEqual(zeros), bytes[15] <= 1 { return nil }
            // ::ffff:127.0.0.0/104, the IPv4 loopback as an IPv6 socket sees it
            if bytes[0..<10].elementsEqual(zeros[0..<10]), bytes[10] == 0xFF, bytes[11] == 0xFF, bytes[12] == 127 { return nil }
            // 2001:db8::/64 (documentation range, RFC 3849), its first 64 bits
            if bytes[0..<8].elementsEqual([0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0]) {
                return labRangesAllowed ? nil : "2001:db8::/64 exists only in the netns topology"
            }
        }
        return outside
    }
}
