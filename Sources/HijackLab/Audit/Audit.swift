import Foundation
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

    var isIPv6: Bool { address.contains(":") }
    /// A v4-mapped IPv6 address (::ffff:a.b.c.d), which takes IPv4 traffic.
    var mappedIPv4: String? { address.hasPrefix("::ffff:") && address.contains(".") ? String(address.dropFirst(7)) : nil }
    /// The IPv4 address this socket answers, if it is one: plain IPv4 or v4-mapped.
    var ipv4: String? { isIPv6 ? mappedIPv4 : address }
    var isWildcard4: Bool { ipv4 == "0.0.0.0" }
    var isWildcard6: Bool { address == "::" }
    var isWildcard: Bool { isWildcard4 || isWildcard6 }
    /// The address "localhost" resolves to on IPv4, not the rest of 127/8 (127.0.0.53 is a resolver's).
    var isLocalhost4: Bool { ipv4 == "127.0.0.1" }
    var isLocalhost6: Bool { address == "::1" }
    /// Group and broadcast addresses deliver to every matching socket: nothing is taken.
    var isGroupAddress: Bool {
        if let v4 = ipv4, let first = Int(v4.split(separator: ".").first ?? "") { return (224...239).contains(first) || v4 == "255.255.255.255" }
        return address.hasPrefix("ff")
    }
    /// Whether a [::] socket also takes IPv4: dual-stack unless sock_diag says IPV6_V6ONLY.
    var takesIPv4: Bool { isWildcard4 || (isWildcard6 && v6only != true) }

    /// The audit's one order: by port and address, an unbound socket before a device-bound
    /// one, then by uid; the inode, which changes every run, decides only what nothing else does.
    static func inOrder(_ lhs: AuditSocket, _ rhs: AuditSocket) -> Bool {
        (lhs.transport.rawValue, lhs.port, lhs.address, lhs.device ?? "", lhs.uid, lhs.inode)
            < (rhs.transport.rawValue, rhs.port, rhs.address, rhs.device ?? "", rhs.uid, rhs.inode)
    }

    var endpoint: String { isIPv6 ? "[\(address)]:\(port)" : "\(address):\(port)" }
    var label: String { endpoint + (device.map { "%\($0)" } ?? "") + (v6only == true ? " (v6only)" : "") }
    var ownerText: String { owners.isEmpty ? "?" : owners.map { "\($0.pid)/\($0.command)" }.joined(separator: ",") }
    var who: String { "uid \(uid) (\(user)), " + (owners.isEmpty ? "owner not visible" : "pid " + ownerText) }
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

        var rank: Int { Severity.allCases.firstIndex(of: self)! }
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

    /// 1 when any interception or shadowing is found, for monitoring; 0 otherwise.
    public var exitStatus: Int32 {
        findings.contains { $0.kind == .interception || $0.kind == .shadowing } ? 1 : 0
    }
}

public enum Audit {
    /// Where uids get their names.
    public enum UserNames: Sendable {
        /// The C library's lookup (NSS): LDAP and other directories too, through nscd where it runs.
        case system
        /// /etc/passwd read directly: no nscd, no directory server. The lab's own audit uses it,
        /// since nothing a lab agent looks up may leave the lab.
        case passwdFile
    }

    /// Audits the current network namespace, optionally only one port.
    public static func run(port: UInt16? = nil, userNames: UserNames = .system) -> AuditReport {
        let fileNames = userNames == .passwdFile ? passwdNames() : [:]
        var entries: [ProcNetEntry] = []
        var skipped = 0
        for file in ProcNet.files {
            guard let text = ProcNet.read(file.path) else { continue }
            let parsed = ProcNet.parse(text, transport: file.transport)
            entries += parsed.entries
            skipped += parsed.skipped
        }
        let inPort = entries.filter { port == nil || $0.port == port }
        let receiving = inPort.filter(\.isReceiving)
        // A connected UDP socket matters only where it shares a port that something receives on.
        let receivingPorts = Set(receiving.filter { $0.transport == .udp }.map(\.port))
        let connected = inPort.filter { $0.transport == .udp && $0.remotePort != 0 && receivingPorts.contains($0.port) }
        let chosen = receiving + connected
        let (owners, complete) = SocketOwners.find(Set(chosen.map(\.inode)))
        let tcpDetails = SockDiag.details(.tcp)
        let udpDetails = SockDiag.details(.udp)
        var names: [UInt32: String] = [:]
        var devices: [UInt32: String] = [:]
        let sockets = chosen.map { entry in
            let details = (entry.transport == .tcp ? tcpDetails : udpDetails)?[entry.inode]
            let device = details.flatMap { $0.boundDevice == 0 ? nil : $0.boundDevice }.map { index in
                devices[index] ?? { let name = SockDiag.deviceName(index); devices[index] = name; return name }()
            }
            return AuditSocket(transport: entry.transport, address: entry.local, port: entry.port, uid: entry.uid,
                               user: names[entry.uid] ?? {
                                   let name = userNames == .passwdFile ? fileNames[entry.uid] ?? String(entry.uid) : userName(entry.uid)
                                   names[entry.uid] = name
                                   return name
                               }(),
                               inode: entry.inode, owners: owners[entry.inode] ?? [],
                               v6only: entry.local.contains(":") ? details?.v6only : nil, device: device,
                               remote: entry.isReceiving ? nil : (entry.remote.contains(":") ? "[\(entry.remote)]:\(entry.remotePort)" : "\(entry.remote):\(entry.remotePort)"))
        }
        let namespace = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")) ?? "?"
        let context = Context(unprivilegedPortStart: unprivilegedPortStart, ephemeral: ephemeralPorts, ipv6: ipv6Available,
                              related: SocketOwners.related, lineage: SocketOwners.lineage)
        return AuditReport(namespace: namespace, sockets: sockets, findings: findings(sockets, context: context),
                           ownersComplete: complete, skippedRows: skipped, socketDetails: tcpDetails != nil && udpDetails != nil)
    }

    /// uid → name from /etc/passwd (`name:password:uid:…`), the first entry for a uid winning
    /// as it does for getpwuid.
    static func passwdNames(_ text: String? = ProcNet.read("/etc/passwd")) -> [UInt32: String] {
        var names: [UInt32: String] = [:]
        for line in (text ?? "").split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 3, let uid = UInt32(fields[2]), names[uid] == nil, !fields[0].isEmpty else { continue }
            names[uid] = String(fields[0])
        }
        return names
    }

    static func userName(_ uid: UInt32) -> String {
        var record = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &record, &buffer, buffer.count, &result) == 0, result != nil else { return String(uid) }
        return String(cString: record.pw_name)
    }

    /// The first port a user without privileges may bind; below it only root (or
    /// CAP_NET_BIND_SERVICE) can take a free address.
    public static var unprivilegedPortStart: UInt16 {
        ProcNet.read("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .flatMap { UInt16($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 1024
    }

    /// The ports the kernel hands to clients: a bound UDP socket there is most likely one.
    static var ephemeralPorts: ClosedRange<UInt16> {
        let bounds = ProcNet.read("/proc/sys/net/ipv4/ip_local_port_range")?.split(whereSeparator: \.isWhitespace).compactMap { UInt16($0) } ?? []
        return bounds.count == 2 && bounds[0] <= bounds[1] ? bounds[0]...bounds[1] : 32_768...60_999
    }

    /// Whether ::1 exists here; on a host without IPv6 nobody can bind it.
    static var ipv6Available: Bool {
        ProcNet.read("/proc/net/if_inet6")?.contains("00000000000000000000000000000001") ?? false
    }

    /// What the rules need to know about the host besides its sockets.
    public struct Context {
        public var unprivilegedPortStart: UInt16 = 1024
        public var ephemeral: ClosedRange<UInt16> = 32_768...60_999
        public var ipv6 = true
        /// Whether two processes belong together (one started the other, or one parent started
        /// both, as a master its workers): softens the note on a shared address.
        public var related: (Int32, Int32) -> Bool = { _, _ in false }
        /// Whether one process started the other: only then do two addresses count as one
        /// service's. Siblings do not, or any two programs one shell started would hide each other.
        public var lineage: (Int32, Int32) -> Bool = { _, _ in false }

        public init(unprivilegedPortStart: UInt16 = 1024, ephemeral: ClosedRange<UInt16> = 32_768...60_999, ipv6: Bool = true,
                    related: @escaping (Int32, Int32) -> Bool = { _, _ in false }, lineage: @escaping (Int32, Int32) -> Bool = { _, _ in false }) {
            self.unprivilegedPortStart = unprivilegedPortStart
            self.ephemeral = ephemeral
            self.ipv6 = ipv6
            self.related = related
            self.lineage = lineage
        }
    }

    /// Every finding among the sockets, port by port.
    public static func findings(_ sockets: [AuditSocket], context: Context = Context()) -> [AuditFinding] {
        var findings: [AuditFinding] = []
        let groups = Dictionary(grouping: sockets) { "\($0.transport.rawValue)/\($0.port)" }
        for key in groups.keys.sorted() {
            let all = groups[key]!.sorted(by: AuditSocket.inOrder)
            let group = all.filter { $0.remote == nil }
            let transport = all[0].transport
            let port = all[0].port
            let unit = transport == .tcp ? "connection" : "datagram"

            // A specific address in front of a wildcard that would otherwise get its traffic.
            for specific in group where !specific.isWildcard && !specific.isGroupAddress {
                guard let wildcard = shadowedWildcard(by: specific, in: group) else { continue }
                findings += overlap(specific, over: wildcard, port: port, context: context,
                                    takes: "every \(unit) to \(specific.endpoint) that \(wildcard.label) would otherwise receive")
            }

            // A device-bound socket in front of an unbound one on the same address.
            for bound in group where bound.device != nil {
                for unbound in group where unbound.device == nil && unbound.address == bound.address {
                    findings += overlap(bound, over: unbound, port: port, context: context,
                                        takes: "every \(unit) to \(unbound.endpoint) that arrives on \(bound.device!) (SO_BINDTODEVICE scores higher)")
                }
            }

            // The two families split between owners: whoever holds 0.0.0.0 gets every IPv4 client
            // of the port, whoever holds a V6ONLY [::] every IPv6 one (with "localhost" on ::1).
            if let v4 = group.first(where: { $0.isWildcard4 && !$0.isIPv6 && $0.device == nil }),
               let v6 = group.first(where: { $0.isWildcard6 && $0.v6only != false && $0.device == nil }) {
                findings += overlap(v4, over: v6, port: port, context: context,
                                    takes: "every IPv4 \(unit) to the port (127.0.0.1 and every IPv4 address), while \(v6.label) answers IPv6; one service does not hold both families")
            }

            // localhost split across 127.0.0.1 and ::1: clients try ::1 first.
            if let v6 = group.first(where: \.isLocalhost6), let v4 = group.first(where: { $0.isLocalhost4 && !$0.isIPv6 }) {
                findings += overlap(v6, over: v4, port: port, context: context,
                                    takes: "the clients of \"localhost\", which try ::1 before 127.0.0.1 (RFC 6724)")
            }

            // Several unbound sockets on one exact address.
            for (address, members) in Dictionary(grouping: group.filter { $0.device == nil }, by: \.address) where members.count > 1 {
                findings.append(sharing(members, address: address, transport: transport, port: port, context: context))
            }

            // A connected UDP socket takes its peer's datagrams from whoever else receives on the port.
            for connected in all where connected.remote != nil {
                for receiver in group where receiver.uid != connected.uid && (receiver.takesIPv4 || receiver.address == connected.address || receiver.isWildcard6) {
                    findings.append(AuditFinding(
                        kind: .interception, severity: .alarm, transport: transport, port: port, destinations: [connected.address], inodes: [connected.inode, receiver.inode],
                        explanation: "\(connected.endpoint), connected to \(connected.remote!) (\(connected.who)), receives the datagrams \(connected.remote!) sends to port \(port), which \(receiver.label) (\(receiver.who)) would otherwise receive."))
                    break
                }
            }

            findings += exposure(group, transport: transport, port: port, context: context)
        }
        return findings
    }

    /// Sockets sharing one address: a reuseport group (same uid, spread by hash) or, for UDP,
    /// SO_REUSEADDR, where the most recently bound socket receives every unicast datagram.
    static func sharing(_ members: [AuditSocket], address: String, transport: Transport, port: UInt16, context: Context) -> AuditFinding {
        let uids = Set(members.map(\.uid))
        let endpoint = members[0].endpoint
        // The table names each member's process; here the owners, in an order no run changes.
        let who = "held by " + Dictionary(members.map { ($0.uid, $0.user) }, uniquingKeysWith: { first, _ in first })
            .sorted { $0.key < $1.key }.map { "uid \($0.key) (\($0.value))" }.joined(separator: " and ")
        if transport == .udp && uids.count > 1 {
            // SO_REUSEPORT needs one uid, so different uids can only share through SO_REUSEADDR.
            return AuditFinding(kind: .interception, severity: .alarm, transport: transport, port: port, destinations: [address], inodes: members.map(\.inode),
                                explanation: "\(members.count) UDP sockets of different uids share \(endpoint), which only SO_REUSEADDR allows, and then the most recently bound one receives every unicast datagram: \(who).")
        }
        let pids = members.flatMap(\.owners).map(\.pid)
        let unrelated = pids.contains { pid in pids.contains { other in other != pid && !context.related(pid, other) } }
        var notes: [String] = []
        if uids.count > 1 { notes.append("they belong to different uids (\(uids.sorted().map(String.init).joined(separator: ", ")))") }
        if unrelated { notes.append("their processes are unrelated (neither started the other, nor one parent both), which is how an intruder takes a share") }
        let how = transport == .tcp ? "an SO_REUSEPORT group: the kernel spreads new connections by a hash"
            : "an SO_REUSEPORT group (the kernel spreads datagrams by a hash) or SO_REUSEADDR (the most recently bound socket receives all unicast)"
        return AuditFinding(kind: .loadBalancing, severity: .info, transport: transport, port: port, destinations: [address], inodes: members.map(\.inode),
                            explanation: "\(members.count) sockets share \(endpoint), \(how): \(who)" + (notes.isEmpty ? "." : "; " + notes.joined(separator: "; ") + "."))
    }

    /// The wildcard socket whose traffic `specific` takes, if any.
    static func shadowedWildcard(by specific: AuditSocket, in group: [AuditSocket]) -> AuditSocket? {
        let wildcards = group.filter { $0.isWildcard && $0.device == nil }
        if specific.ipv4 != nil {
            // An IPv4 wildcard first; a [::] only where it also takes IPv4 (dual-stack).
            return wildcards.first(where: \.isWildcard4) ?? wildcards.first(where: \.takesIPv4)
        }
        return wildcards.first(where: \.isWildcard6)
    }

    /// interception when the taker has another uid; shadowing when the same uid but unrelated processes.
    static func overlap(_ taker: AuditSocket, over loser: AuditSocket, port: UInt16, context: Context, takes: String) -> [AuditFinding] {
        let destination = [taker.address]
        if taker.uid != loser.uid {
            return [AuditFinding(kind: .interception, severity: .alarm, transport: taker.transport, port: port, destinations: destination,
                                 inodes: [taker.inode, loser.inode],
                                 explanation: "\(taker.label) (\(taker.who)) takes \(takes); \(loser.label) belongs to \(loser.who).")]
        }
        let takerPIDs = Set(taker.owners.map(\.pid))
        let loserPIDs = Set(loser.owners.map(\.pid))
        // One process (or one service's related processes) holding both is the per-address fix.
        if !takerPIDs.isEmpty && !loserPIDs.isEmpty && takerPIDs.contains(where: { pid in loserPIDs.contains { $0 == pid || context.lineage(pid, $0) } }) {
            return []
        }
        let owners = takerPIDs.isEmpty || loserPIDs.isEmpty ? " (owners not all visible; root sees more)" : ""
        return [AuditFinding(kind: .shadowing, severity: .warning, transport: taker.transport, port: port, destinations: destination,
                             inodes: [taker.inode, loser.inode],
                             explanation: "\(taker.label) (\(taker.who)) takes \(takes); both run as uid \(taker.uid), in unrelated processes\(owners).")]
    }

    /// One family's localhost or wildcard held while the other family's is free to bind.
    static func exposure(_ group: [AuditSocket], transport: Transport, port: UInt16, context: Context) -> [AuditFinding] {
        // A bound UDP socket on an ephemeral port is most likely a client waiting for replies.
        if transport == .udp && context.ephemeral.contains(port) { return [] }
        let v6Held = group.contains { $0.isLocalhost6 || $0.isWildcard6 }
        let v4Held = group.contains { $0.isLocalhost4 || $0.takesIPv4 }
        let privileged = context.unprivilegedPortStart > port
        let who = privileged ? "a process with privileges (the port is below \(context.unprivilegedPortStart))" : "any local user"
        let severity: AuditFinding.Severity = privileged ? .info : .warning
        var findings: [AuditFinding] = []
        // The service's own socket is the unbound one; a device-bound one answers one device only.
        if context.ipv6, !v6Held, let v4 = group.first(where: { ($0.isLocalhost4 || $0.isWildcard4) && !$0.isIPv6 && $0.device == nil }) {
            findings.append(AuditFinding(kind: .exposure, severity: severity, transport: transport, port: port, destinations: ["::1"], inodes: [v4.inode],
                                         explanation: "\(v4.label) (\(v4.who)) has no IPv6 counterpart: ::1 on port \(port) is free, so \(who) could bind it and take the clients of \"localhost\", which try ::1 before 127.0.0.1."))
        }
        if !v4Held, let v6 = group.first(where: { $0.isLocalhost6 || ($0.isWildcard6 && $0.v6only == true) }) {
            let free = v6.isWildcard6 ? "0.0.0.0 and 127.0.0.1" : "127.0.0.1"
            findings.append(AuditFinding(kind: .exposure, severity: severity, transport: transport, port: port, destinations: ["127.0.0.1"], inodes: [v6.inode],
                                         explanation: "\(v6.label) (\(v6.who)) has no IPv4 counterpart: \(free) on port \(port) \(v6.isWildcard6 ? "are" : "is") free, so \(who) could bind it and take every client that reaches this port over IPv4."))
        }
        return findings
    }
}
