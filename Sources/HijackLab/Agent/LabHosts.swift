import HijackAudit
import HijackSystem
import Glibc

/// The lab's own name resolution: its hosts file, read by the lab's own code and nothing else.
///
/// getaddrinfo would follow the machine's nsswitch.conf: it may ask nscd over
/// /var/run/nscd/socket (a daemon outside the lab, which can forward the query off the
/// machine), send DNS queries, or read the machine's /etc/hosts. A probe's name must come
/// from the lab alone, so the lab never calls it: a name means what the lab host's hosts
/// file below says, on every machine.
public struct LabHosts: Sendable {
    /// One line of the file: an address and the names it gives that address.
    package struct Entry: Sendable {
        package var address: SocketAddress
        package var names: [String]
    }

    package let entries: [Entry]

    /// The lab host's /etc/hosts, as Debian ships it: `localhost` is both loopbacks.
    public static let labFile = """
        127.0.0.1\tlocalhost
        ::1\tlocalhost ip6-localhost ip6-loopback

        """

    /// The lab host's hosts file, the only source of names in the lab.
    public static let lab = LabHosts(parsing: labFile)

    /// Reads hosts(5) text: an address, then its names, separated by blanks; `#` starts a
    /// comment. A line whose first field is not a numeric address is skipped, as glibc does.
    public init(parsing text: String) {
        var entries: [Entry] = []
        for line in text.split(whereSeparator: \.isNewline) {
            let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard fields.count >= 2, let address = SocketAddress(host: fields[0], port: 0) else { continue }
            entries.append(Entry(address: address, names: Array(fields.dropFirst())))
        }
        self.entries = entries
    }

    /// Every name the file holds, in file order, each once.
    public var names: [String] {
        var seen: [String] = []
        for name in entries.flatMap(\.names) where !seen.contains(where: { $0.lowercased() == name.lowercased() }) { seen.append(name) }
        return seen
    }

    /// The addresses of `name` with `port`, each once, in the order a client tries them
    /// (`DestinationOrder`); empty when the file does not hold the name. Names compare
    /// without regard to case, as in DNS and glibc's files backend.
    public func addresses(for name: String, port: UInt16 = 0) -> [SocketAddress] {
        var found: [SocketAddress] = []
        for entry in entries where entry.names.contains(where: { $0.lowercased() == name.lowercased() }) {
            var address = entry.address
            address.port = port
            if !found.contains(address) { found.append(address) }
        }
        return DestinationOrder.sorted(found)
    }
}

/// The order in which a client tries a name's addresses: RFC 6724's destination address
/// selection with its default policy table, which is what glibc's getaddrinfo applies.
///
/// The rule used here: higher precedence first (rule 6), then smaller scope (rule 8), then
/// the file's own order (rule 10). Rules 1-5, 7 and 9 compare each destination with the
/// source address the machine would pick for it, so they depend on the machine's
/// interfaces and addresses; the lab leaves them out, which is the same as assuming every
/// destination has a usable source of its own scope and label. That holds for the lab's
/// addresses (a loopback reached from a loopback, the lab link from the lab link), and it
/// makes the order the same on every machine: `localhost` gives ::1 (precedence 50) before
/// 127.0.0.1 (as ::ffff:127.0.0.1, precedence 35).
package enum DestinationOrder {
    /// RFC 6724 section 2.1, the default policy table: prefix, length, precedence.
    /// (The labels matter only for rule 5, which needs the source.)
    private static let policy: [(prefix: [UInt8], length: Int, precedence: Int)] = [
        (v6("::1"), 128, 50),
        (v6("::"), 0, 40),
        (v6("::ffff:0:0"), 96, 35),
        (v6("2002::"), 16, 30),
        (v6("2001::"), 32, 5),
        (v6("fc00::"), 7, 3),
        (v6("::"), 96, 1),
        (v6("fec0::"), 10, 1),
        (v6("3ffe::"), 16, 1),
    ]

    package static func sorted(_ addresses: [SocketAddress]) -> [SocketAddress] {
        addresses.enumerated().sorted { left, right in
            let (a, b) = (bytes(left.element), bytes(right.element))
            if precedence(a) != precedence(b) { return precedence(a) > precedence(b) }
            if scope(a) != scope(b) { return scope(a) < scope(b) }
            return left.offset < right.offset
        }.map(\.element)
    }

    /// The precedence of the longest matching prefix in the policy table.
    package static func precedence(_ address: [UInt8]) -> Int {
        policy.filter { matches(address, $0.prefix, $0.length) }.max { $0.length < $1.length }?.precedence ?? 40
    }

    /// RFC 6724 section 3.1 (with RFC 4291): multicast carries its scope; link-local and the
    /// loopback are link-local (2); IPv4 loopback and 169.254/16 too; site-local 5; else global (14).
    package static func scope(_ address: [UInt8]) -> Int {
        if address[0] == 0xff { return Int(address[1] & 0x0f) }
        if matches(address, v6("fe80::"), 10) || matches(address, v6("::1"), 128) { return 2 }
        if matches(address, v6("fec0::"), 10) { return 5 }
        if matches(address, v6("::ffff:0:0"), 96) {
            if address[12] == 127 || (address[12] == 169 && address[13] == 254) { return 2 }
        }
        return 14
    }

    /// The address as IPv6 bytes; IPv4 as ::ffff:a.b.c.d, as the RFC compares it.
    package static func bytes(_ address: SocketAddress) -> [UInt8] {
        switch address {
        case .v4(var v4):
            return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] + withUnsafeBytes(of: &v4.sin_addr) { Array($0) }
        case .v6(var v6):
            return withUnsafeBytes(of: &v6.sin6_addr) { Array($0) }
        }
    }

    private static func matches(_ address: [UInt8], _ prefix: [UInt8], _ length: Int) -> Bool {
        for bit in 0..<length {
            let mask = UInt8(0x80) >> UInt8(bit % 8)
            if address[bit / 8] & mask != prefix[bit / 8] & mask { return false }
        }
        return true
    }

    private static func v6(_ text: String) -> [UInt8] {
        guard let address = SocketAddress(host: text, port: 0) else { preconditionFailure("policy prefix \(text) is not an address") }
        return bytes(address)
    }
}
