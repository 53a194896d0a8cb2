import HijackSystem
import Glibc

/// A socket as the audit reports it: one that receives new traffic for its address (a TCP
/// listener, a bound UDP socket), or a connected UDP socket that shares a receiving port.
public struct AuditSocket: Codable, Sendable, Equatable {
    public var transport: Transport
    public var address: String
    public var port: UInt16
    public var uid: UInt32
    public var user: String
    public var inode: UInt64
    /// Empty when the owner could not be seen (another user's process, and not root).
    public var owners: [SocketOwner]
    /// IPV6_V6ONLY from sock_diag; nil for IPv4 sockets, or where the kernel does not say.
    public var v6only: Bool? = nil
    /// The device of SO_BINDTODEVICE, from sock_diag.
    public var device: String? = nil
    /// For a connected UDP socket: the peer it is connected to.
    public var remote: String? = nil

    /// A byte search: String.contains(String) is Foundation's, by canonical equivalence, and
    /// was a tenth of the audit's time at 50,000 sockets.
    package var isIPv6: Bool { address.utf8.contains(UInt8(ascii: ":")) }
    /// A v4-mapped IPv6 address (::ffff:a.b.c.d), which takes IPv4 traffic.
    package var mappedIPv4: String? { address.hasPrefix("::ffff:") && address.utf8.contains(UInt8(ascii: ".")) ? String(address.dropFirst(7)) : nil }
    /// The IPv4 address this socket answers, if it is one: plain IPv4 or v4-mapped.
    package var ipv4: String? { isIPv6 ? mappedIPv4 : address }
    package var isWildcard4: Bool { ipv4 == "0.0.0.0" }
    package var isWildcard6: Bool { address == "::" }
    package var isWildcard: Bool { isWildcard4 || isWildcard6 }
    /// The address "localhost" resolves to on IPv4, not the rest of 127/8 (127.0.0.53 is a resolver's).
    package var isLocalhost4: Bool { ipv4 == "127.0.0.1" }
    package var isLocalhost6: Bool { address == "::1" }
    /// Group and broadcast addresses deliver to every matching socket: nothing is taken.
    package var isGroupAddress: Bool {
        if let v4 = ipv4, let first = Int(v4.split(separator: ".").first ?? "") { return (224...239).contains(first) || v4 == "255.255.255.255" }
        return address.hasPrefix("ff")
    }
    /// Whether a [::] socket also takes IPv4: dual-stack unless sock_diag says IPV6_V6ONLY.
    package var takesIPv4: Bool { isWildcard4 || (isWildcard6 && v6only != true) }

    /// The audit's one order: by port and address, an unbound socket before a device-bound
    /// one, then by uid; the inode, which changes every run, decides only what nothing else does.
    package static func inOrder(_ lhs: AuditSocket, _ rhs: AuditSocket) -> Bool {
        (lhs.transport.rawValue, lhs.port, lhs.address, lhs.device ?? "", lhs.uid, lhs.inode)
            < (rhs.transport.rawValue, rhs.port, rhs.address, rhs.device ?? "", rhs.uid, rhs.inode)
    }

    package var endpoint: String { isIPv6 ? "[\(address)]:\(port)" : "\(address):\(port)" }
    package var label: String { endpoint + (device.map { "%\($0)" } ?? "") + (v6only == true ? " (v6only)" : "") }
    package var ownerText: String { owners.isEmpty ? "?" : owners.map { "\($0.pid)/\($0.command)" }.joined(separator: ",") }
    package var who: String { "uid \(uid) (\(user)), " + (owners.isEmpty ? "owner not visible" : "pid " + ownerText) }
}

public struct AuditFinding: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case interception
        case shadowing
        case loadBalancing = "load-balancing"
        case exposure
    }

    public enum Severity: String, Codable, Sendable, Comparable, CaseIterable {
        case info
        case warning
        case alarm

        package var rank: Int { Severity.allCases.firstIndex(of: self)! }
        public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank < rhs.rank }
    }

    public var kind: Kind
    public var severity: Severity
    public var transport: Transport
    public var port: UInt16
    /// The addresses a client would send to and reach the wrong socket (or could, for exposure).
    public var destinations: [String]
    /// Inodes of the sockets involved, in the order the explanation names them.
    public var inodes: [UInt64]
    public var explanation: String
    /// Of `inodes`, the socket that most likely came second and took over: its process
    /// started later (/proc/PID/stat). Nil where the audit cannot tell.
    public var likelyIntruder: UInt64? = nil
}

public struct AuditReport: Codable, Sendable, Equatable {
    /// The network namespace that was read, as /proc/self/ns/net names it.
    public var namespace: String
    public var sockets: [AuditSocket]
    public var findings: [AuditFinding]
    /// False when some process's descriptors could not be read: owners shown as "?".
    public var ownersComplete: Bool
    /// Rows of /proc/net that could not be parsed.
    public var skippedRows: Int
    /// Whether sock_diag told IPV6_V6ONLY and bound devices; without it [::] is read as dual-stack.
    public var socketDetails: Bool = true
    /// Where the sockets were read; nil in a report made by hand.
    public var source: Source? = nil

    public enum Source: String, Codable, Sendable {
        /// NETLINK_SOCK_DIAG: one dump per transport and family, as `ss` reads them.
        case sockDiag = "sock_diag"
        /// The text of /proc/net/{tcp,tcp6,udp,udp6}, where the kernel answers no sock_diag.
        case proc
    }

    /// 1 when any interception or shadowing is found, for monitoring; 0 otherwise.
    public var exitStatus: Int32 {
        findings.contains { $0.kind == .interception || $0.kind == .shadowing } ? 1 : 0
    }
}
