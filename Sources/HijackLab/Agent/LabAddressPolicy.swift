import HijackSystem

/// The addresses the lab may ever bind or send to. Anything else is refused before a socket exists.
///
/// Ranges are compared on the address's bytes, never its text: text has many spellings for
/// one address, and a prefix of one spelling says nothing about another.
package enum LabAddressPolicy {
    package static let outside = "outside the lab's ranges (0.0.0.0, ::, 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104, and in netns 198.51.100.0/24, 2001:db8::/64)"

    /// Wildcards and loopback are always allowed; the lab's documentation ranges only
    /// where the run created the network that holds them.
    package static func refusal(for host: String, labRangesAllowed: Bool) -> String? {
        guard let address = SocketAddress(host: host, port: 0) else { return "not a numeric IPv4 or IPv6 address" }
        return refusal(for: address, labRangesAllowed: labRangesAllowed)
    }

    package static func refusal(for address: SocketAddress, labRangesAllowed: Bool) -> String? {
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
