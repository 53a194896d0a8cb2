/// An address as a scenario writes it: a symbol the topology resolves, or a literal.
public enum AddressSpec: Sendable, Equatable, CustomStringConvertible {
    case symbol(AddressSymbol)
    case literal(String)

    public init(parsing text: String) {
        self = AddressSymbol(rawValue: text).map(AddressSpec.symbol) ?? .literal(text)
    }

    public var description: String {
        switch self {
        case .symbol(let symbol): symbol.rawValue
        case .literal(let text): text
        }
    }
}

/// Names for the lab's addresses, so that scenario files hold no topology details.
public enum AddressSymbol: String, Sendable, CaseIterable {
    case wildcard4
    case loopback4
    case wildcard6
    case loopback6
    case labInterface = "lab-interface"

    public var meaning: String {
        switch self {
        case .wildcard4: "0.0.0.0, every IPv4 address of the host"
        case .loopback4: "127.0.0.1"
        case .wildcard6: "[::], every IPv6 address (and IPv4 too unless IPV6_V6ONLY)"
        case .loopback6: "::1"
        case .labInterface: "the lab host's interface address (netns topology only)"
        }
    }
}

/// The addresses the lab may ever bind or send to. Anything else is refused before a socket exists.
enum LabAddressPolicy {
    /// Wildcards and loopback are always allowed; the lab's documentation ranges only
    /// where the run created the network that holds them.
    static func refusal(for host: String, labRangesAllowed: Bool) -> String? {
        guard let address = SocketAddress(host: host, port: 0) else { return "not a numeric IPv4 or IPv6 address" }
        let text = address.host
        switch address {
        case .v4:
            if text == "0.0.0.0" || text.hasPrefix("127.") { return nil }
            if text.hasPrefix("198.51.100.") { return labRangesAllowed ? nil : "198.51.100.0/24 exists only in the netns topology" }
        case .v6:
            if text == "::" || text == "::1" || text.hasPrefix("::ffff:127.") { return nil }
            if text.hasPrefix("2001:db8::") || text == "2001:db8::" {
                return labRangesAllowed ? nil : "2001:db8::/64 exists only in the netns topology"
            }
        }
        return "outside the lab's ranges (0.0.0.0, ::, 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104, and in netns 198.51.100.0/24, 2001:db8::/64)"
    }
}
