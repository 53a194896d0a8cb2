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
    /// The options read from the socket itself (getsockopt on a copy of its owner's
    /// descriptor), or why they could not be; nil where the audit did not try (`--no-options`).
    public var options: SocketOptions? = nil

    /// A byte search: String.contains(String) is Foundation's, by canonical equivalence, and
    /// was a tenth of the audit's time at 50,000 sockets.
    package var isIPv6: Bool { address.utf8.contains(UInt8(ascii: ":")) }
    /// A v4-mapped IPv6 address (::ffff:a.b.c.d), which takes IPv4 traffic.
    package var mappedIPv4: String? { address.hasPrefix("::ffff:") && address.utf8.contains(UInt8(ascii: ".")) ? String(address.dropFirst(7)) : nil }
    /// The IPv4 address this socket answers, if it is one: plain IPv4 or v4-mapped.
    package var ipv4: String? { isIPv6 ? mappedIPv4 : address }
    /// Compared whole, not through `ipv4`: the rules ask these of every socket several times.
    package var isWildcard4: Bool { address == "0.0.0.0" || address == "::ffff:0.0.0.0" }
    package var isWildcard6: Bool { address == "::" }
    package var isWildcard: Bool { isWildcard4 || isWildcard6 }
    /// The address "localhost" resolves to on IPv4, not the rest of 127/8 (127.0.0.53 is a resolver's).
    package var isLocalhost4: Bool { address == "127.0.0.1" || address == "::ffff:127.0.0.1" }
    package var isLocalhost6: Bool { address == "::1" }
    /// Group and broadcast addresses deliver to every matching socket: nothing is taken.
    package var isGroupAddress: Bool {
        guard let v4 = ipv4 else { return address.hasPrefix("ff") }
        // The first number, read by bytes: a String split per socket was a sixth of the rules' time.
        var first = 0
        var digits = 0
        for byte in v4.utf8 {
            guard byte != UInt8(ascii: ".") else { break }
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte), digits < 3 else { return false }
            first = first * 10 + Int(byte - UInt8(ascii: "0"))
            digits += 1
        }
        return digits > 0 && ((224...239).contains(first) || v4 == "255.255.255.255")
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

/// A socket's options as getsockopt reads them from the socket itself: a copy of its owner's
/// descriptor taken with pidfd_getfd, read and closed at once, never bound, listened on, read
/// from or written to. Where no copy could be taken, `unknown` says why and the rest is nil.
public struct SocketOptions: Codable, Sendable, Equatable {
    public var reuseAddress: Bool? = nil
    public var reusePort: Bool? = nil
    /// IPV6_V6ONLY; nil for an AF_INET socket, which has no such option.
    public var v6only: Bool? = nil
    /// SO_BINDTODEVICE's device; nil when the socket is bound to none.
    public var device: String? = nil
    /// SO_TYPE and SO_PROTOCOL by their names: "SOCK_STREAM", "IPPROTO_TCP".
    public var type: String? = nil
    public var `protocol`: String? = nil
    /// Why nothing could be read: "needs root or uid 33", "no process seen holds it", …
    public var unknown: String? = nil

    public init(reuseAddress: Bool? = nil, reusePort: Bool? = nil, v6only: Bool? = nil, device: String? = nil,
                type: String? = nil, protocol: String? = nil, unknown: String? = nil) {
        self.reuseAddress = reuseAddress
        self.reusePort = reusePort
        self.v6only = v6only
        self.device = device
        self.type = type
        self.protocol = `protocol`
        self.unknown = unknown
    }

    public static func unknown(_ reason: String) -> SocketOptions { SocketOptions(unknown: reason) }

    public var isKnown: Bool { unknown == nil }
}

/// A bind that would take a destination: an address (as the audit writes addresses) and the
/// options set before the bind ("SO_REUSEPORT", "IPV6_V6ONLY").
public struct AuditBind: Codable, Sendable, Equatable, Hashable {
    public var address: String
    public var options: [String]

    public init(address: String, options: [String]) {
        self.address = address
        self.options = options
    }
}

/// Who could take one destination now, from the socket that receives it, and how.
public struct AuditTake: Codable, Sendable, Equatable {
    public enum Who: String, Codable, Sendable {
        /// A process of the receiving socket's uid.
        case sameUID = "same-uid"
        /// A process of any other uid.
        case otherUID = "other-uid"
    }

    /// 127.0.0.1, ::1, localhost, or an interface's address.
    public var destination: String
    public var who: Who
    /// Every bind, of those the rules know, that would take it.
    public var binds: [AuditBind]

    public init(destination: String, who: Who, binds: [AuditBind]) {
        self.destination = destination
        self.who = who
        self.binds = binds
    }
}

public struct AuditFinding: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case interception
        case shadowing
        case loadBalancing = "load-balancing"
        case exposure
        /// Predicted from the sockets' own options: another process could take traffic now.
        case takeable
        /// A socket on a port whose owner `--expect` names, held by someone else.
        case unexpectedOwner = "unexpected-owner"
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
    /// What to do about it, in one line.
    public var fix: String? = nil
    /// A command that shows the evidence: a `hijack-lab try` of the bind, or a matrix case.
    public var evidence: String? = nil
    /// For `takeable`: who could take which destination, with which bind.
    public var takes: [AuditTake]? = nil
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

    /// 1 when any interception or shadowing is found, or an unexpected owner (an alarm: a
    /// socket whose owner `--expect` does not name), for monitoring; 0 otherwise.
    public var exitStatus: Int32 {
        findings.contains { $0.kind == .interception || $0.kind == .shadowing || ($0.kind == .unexpectedOwner && $0.severity == .alarm) } ? 1 : 0
    }
}
