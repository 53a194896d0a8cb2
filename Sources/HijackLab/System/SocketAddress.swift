import Glibc

/// An IPv4 or IPv6 socket address, wrapping the C structs the kernel reads.
public enum SocketAddress: Equatable, Sendable, CustomStringConvertible {
    case v4(sockaddr_in)
    case v6(sockaddr_in6)

    /// Parses a numeric host ("127.0.0.1", "::1", "::ffff:127.0.0.1") with a port.
    /// Names are not resolved here; returns nil for anything that is not numeric.
    public init?(host: String, port: UInt16) {
        var v4 = sockaddr_in()
        if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
            self = .v4(v4)
            return
        }
        var v6 = sockaddr_in6()
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if inet_pton(AF_INET6, bare, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = port.bigEndian
            self = .v6(v6)
            return
        }
        return nil
    }

    /// An address from its bytes in network order: 4 for IPv4, 16 for IPv6.
    public init?(networkOrder bytes: [UInt8], port: UInt16) {
        switch bytes.count {
        case 4:
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &address.sin_addr) { $0.copyBytes(from: bytes) }
            self = .v4(address)
        case 16:
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyBytes(from: bytes) }
            self = .v6(address)
        default:
            return nil
        }
    }

    /// The address's bytes in network order: 4 for IPv4, 16 for IPv6. Ranges are checked
    /// on these, since one address has many spellings (`2001:db8:0:0:1::`, `2001:db8::1:0:0:0`).
    public var networkOrderBytes: [UInt8] {
        switch self {
        case .v4(var a): withUnsafeBytes(of: &a.sin_addr) { Array($0) }
        case .v6(var a): withUnsafeBytes(of: &a.sin6_addr) { Array($0) }
        }
    }

    /// Reads an address the kernel filled in (accept, getsockname).
    package init?(storage: sockaddr_storage) {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            self = .v4(withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in.self) })
        case AF_INET6:
            self = .v6(withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in6.self) })
        default:
            return nil
        }
    }

    public var family: Int32 {
        switch self {
        case .v4: AF_INET
        case .v6: AF_INET6
        }
    }

    public var port: UInt16 {
        get {
            switch self {
            case .v4(let a): UInt16(bigEndian: a.sin_port)
            case .v6(let a): UInt16(bigEndian: a.sin6_port)
            }
        }
        set {
            switch self {
            case .v4(var a): a.sin_port = newValue.bigEndian; self = .v4(a)
            case .v6(var a): a.sin6_port = newValue.bigEndian; self = .v6(a)
            }
        }
    }

    /// The numeric host without brackets or port: "127.0.0.1", "::1".
    public var host: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        switch self {
        case .v4(var a): inet_ntop(AF_INET, &a.sin_addr, &buffer, socklen_t(buffer.count))
        case .v6(var a): inet_ntop(AF_INET6, &a.sin6_addr, &buffer, socklen_t(buffer.count))
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// "127.0.0.1:80" or "[::1]:80", the way people write endpoints.
    public var description: String {
        switch self {
        case .v4: "\(host):\(port)"
        case .v6: "[\(host)]:\(port)"
        }
    }

    /// The only crossing into C: the kernel sees a pointer and a length.
    @discardableResult
    package func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(SystemError) -> R) throws(SystemError) -> R {
        switch self {
        case .v4(var a):
            return try withUnsafeBytes(of: &a) { (raw) throws(SystemError) -> R in
                try body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        case .v6(var a):
            return try withUnsafeBytes(of: &a) { (raw) throws(SystemError) -> R in
                try body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(MemoryLayout<sockaddr_in6>.size))
            }
        }
    }

    /// Parses "127.0.0.1:80" or "[::1]:80", the form `description` prints.
    public init?(endpoint: String) {
        guard let colon = endpoint.lastIndex(of: ":"), let port = UInt16(endpoint[endpoint.index(after: colon)...]) else { return nil }
        self.init(host: String(endpoint[..<colon]), port: port)
    }

    /// The same endpoint with a v4-mapped IPv6 address (`::ffff:127.0.0.1`) written as the
    /// IPv4 address it is: how an IPv4 client sees itself when an IPv6 socket reports it.
    public var unmapped: SocketAddress {
        guard case .v6 = self, host.hasPrefix("::ffff:"), host.contains("."),
              let v4 = SocketAddress(host: String(host.dropFirst(7)), port: port) else { return self }
        return v4
    }

    public var isWildcard: Bool { host == "0.0.0.0" || host == "::" }

    /// Whether a server's view of a peer and the client's own view of itself are one endpoint.
    /// An unconnected UDP client only knows its port (its address is the wildcard until the
    /// kernel picks a route), so then the port alone must match.
    public static func samePeer(server: String, client: String) -> Bool {
        guard let seen = SocketAddress(endpoint: server)?.unmapped, let own = SocketAddress(endpoint: client)?.unmapped else { return server == client }
        return own.isWildcard ? own.port == seen.port : own == seen
    }

    public static func == (lhs: SocketAddress, rhs: SocketAddress) -> Bool {
        lhs.family == rhs.family && lhs.host == rhs.host && lhs.port == rhs.port
    }
}
