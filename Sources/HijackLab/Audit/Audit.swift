import Foundation
import Glibc

/// A receiving socket as the audit reports it.
public struct AuditSocket: Codable, Sendable, Equatable {
    public var transport: Transport
    public var address: String
    public var port: UInt16
    public var uid: UInt32
    public var user: String
    public var inode: UInt64
    /// Empty when the owner could not be seen (another user's process, and not root).
    public var owners: [SocketOwner]

    var isIPv6: Bool { address.contains(":") }
    /// A v4-mapped IPv6 address (::ffff:a.b.c.d), which takes IPv4 traffic.
    var mappedIPv4: String? { address.hasPrefix("::ffff:") && address.contains(".") ? String(address.dropFirst(7)) : nil }
    /// The IPv4 address this socket answers, if it is one: plain IPv4 or v4-mapped.
    var ipv4: String? { isIPv6 ? mappedIPv4 : address }
    var isWildcard: Bool { address == "0.0.0.0" || address == "::" || address == "::ffff:0.0.0.0" }
    var isLoopback4: Bool { ipv4?.hasPrefix("127.") == true }
    var isLoopback6: Bool { address == "::1" }

    var endpoint: String { isIPv6 ? "[\(address)]:\(port)" : "\(address):\(port)" }
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

    /// 1 when any interception or shadowing is found, for monitoring; 0 otherwise.
    public var exitStatus: Int32 {
        findings.contains { $0.kind == .interception || $0.kind == .shadowing } ? 1 : 0
    }
}

public enum Audit {
    /// Audits the current network namespace, optionally only one port.
    public static func run(port: UInt16? = nil) -> AuditReport {
        var entries: [ProcNetEntry] = []
        var skipped = 0
        for file in ProcNet.files {
            guard let text = ProcNet.read(file.path) else { continue }
            let parsed = ProcNet.parse(text, transport: file.transport)
            entries += parsed.entries
            skipped += parsed.skipped
        }
        let receiving = entries.filter { $0.isReceiving && (port == nil || $0.port == port) }
        let (owners, complete) = SocketOwners.find(Set(receiving.map(\.inode)))
        var names: [UInt32: String] = [:]
        let sockets = receiving.map { entry in
            AuditSocket(transport: entry.transport, address: entry.local, port: entry.port, uid: entry.uid,
                        user: names[entry.uid] ?? { let name = userName(entry.uid); names[entry.uid] = name; return name }(),
                        inode: entry.inode, owners: owners[entry.inode] ?? [])
        }
        let namespace = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")) ?? "?"
        return AuditReport(namespace: namespace, sockets: sockets, findings: findings(sockets, related: SocketOwners.ancestors),
                           ownersComplete: complete, skippedRows: skipped)
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

    /// Every finding among receiving sockets. `related` gives a pid's ancestors, to tell a
    /// server's own workers from an unrelated process.
    public static func findings(_ sockets: [AuditSocket], related: (Int32) -> [Int32], unprivilegedPortStart: UInt16 = Audit.unprivilegedPortStart) -> [AuditFinding] {
        var findings: [AuditFinding] = []
        let groups = Dictionary(grouping: sockets) { "\($0.transport.rawValue)/\($0.port)" }
        for key in groups.keys.sorted() {
            let group = groups[key]!.sorted { ($0.address, $0.inode) < ($1.address, $1.inode) }
            let transport = group[0].transport
            let port = group[0].port

            // A specific address in front of a wildcard that would otherwise get its traffic.
            for specific in group where !specific.isWildcard {
                guard let wildcard = shadowedWildcard(by: specific, in: group) else { continue }
                findings += overlap(specific, over: wildcard, transport: transport, port: port,
                                    takes: "every \(transport == .tcp ? "connection" : "datagram") to \(specific.endpoint) that \(wildcard.endpoint) would otherwise receive")
            }

            // localhost split across 127.0.0.1 and ::1: clients try ::1 first.
            if let v6 = group.first(where: \.isLoopback6), let v4 = group.first(where: { $0.isLoopback4 && !$0.isIPv6 }) {
                findings += overlap(v6, over: v4, transport: transport, port: port,
                                    takes: "the clients of \"localhost\", which try ::1 before 127.0.0.1 (RFC 6724)")
            }

            // Several sockets on one exact address: a reuseport group or UDP SO_REUSEADDR.
            for (address, members) in Dictionary(grouping: group, by: \.address) where members.count > 1 {
                let uids = Set(members.map(\.uid))
                let pids = Set(members.flatMap(\.owners).map(\.pid))
                let unrelated = pids.contains { pid in pids.contains { other in other != pid && !related(pid).contains(other) && !related(other).contains(pid) } }
                var notes: [String] = []
                if uids.count > 1 { notes.append("they belong to different uids (\(uids.sorted().map(String.init).joined(separator: ", ")))") }
                if unrelated { notes.append("their processes are unrelated (neither started the other), which is how an intruder takes a share") }
                let endpoint = members[0].endpoint
                findings.append(AuditFinding(
                    kind: .loadBalancing, severity: .info, transport: transport, port: port, destinations: [address], inodes: members.map(\.inode),
                    explanation: "\(members.count) sockets share \(endpoint) (an SO_REUSEPORT group" + (transport == .udp ? " or UDP SO_REUSEADDR" : "")
                        + "): the kernel spreads the traffic among " + members.map { "\($0.who)" }.joined(separator: "; ")
                        + (notes.isEmpty ? "." : "; " + notes.joined(separator: "; ") + ".")))
            }

            findings += exposure(group, transport: transport, port: port, privilegedBelow: unprivilegedPortStart)
        }
        return findings
    }

    /// The wildcard socket whose traffic `specific` takes, if any: same family, or an IPv4
    /// address in front of a dual-stack [::] when no IPv4 wildcard is there.
    static func shadowedWildcard(by specific: AuditSocket, in group: [AuditSocket]) -> AuditSocket? {
        if specific.ipv4 != nil {
            if let v4 = group.first(where: { $0.isWildcard && ($0.address == "0.0.0.0" || $0.address == "::ffff:0.0.0.0") }) { return v4 }
            // [::] takes IPv4 only if it is dual-stack, which /proc does not show; with no
            // IPv4 wildcard on the port, dual-stack is the likely reading.
            return group.first { $0.address == "::" }
        }
        return group.first { $0.address == "::" }
    }

    /// interception when the taker has another uid; shadowing when the same uid but other processes.
    static func overlap(_ taker: AuditSocket, over loser: AuditSocket, transport: Transport, port: UInt16, takes: String) -> [AuditFinding] {
        let destination = [taker.address]
        if taker.uid != loser.uid {
            return [AuditFinding(kind: .interception, severity: .alarm, transport: transport, port: port, destinations: destination,
                                 inodes: [taker.inode, loser.inode],
                                 explanation: "\(taker.endpoint) (\(taker.who)) takes \(takes); \(loser.endpoint) belongs to \(loser.who).")]
        }
        let takerPIDs = Set(taker.owners.map(\.pid))
        let loserPIDs = Set(loser.owners.map(\.pid))
        // One process holding both is the per-address fix, not a problem.
        if !takerPIDs.isEmpty && !takerPIDs.isDisjoint(with: loserPIDs) { return [] }
        let owners = takerPIDs.isEmpty || loserPIDs.isEmpty ? " (owners not all visible; root sees more)" : ""
        return [AuditFinding(kind: .shadowing, severity: .warning, transport: transport, port: port, destinations: destination,
                             inodes: [taker.inode, loser.inode],
                             explanation: "\(taker.endpoint) (\(taker.who)) takes \(takes); both run as uid \(taker.uid), in different processes\(owners).")]
    }

    /// One family's loopback or wildcard held while the other family's matching address is free.
    static func exposure(_ group: [AuditSocket], transport: Transport, port: UInt16, privilegedBelow: UInt16) -> [AuditFinding] {
        let holdsV6Loopback = group.contains { $0.isLoopback6 || $0.address == "::" }
        let holdsV4Loopback = group.contains { $0.isLoopback4 || $0.address == "0.0.0.0" || $0.address == "::ffff:0.0.0.0" || $0.address == "::" }
        let anyIPv6 = group.contains { $0.isIPv6 && $0.mappedIPv4 == nil }
        let who = privilegedBelow > port ? "a process with privileges (the port is below \(privilegedBelow))" : "any local user"
        let severity: AuditFinding.Severity = privilegedBelow > port ? .info : .warning
        var findings: [AuditFinding] = []
        if let v4 = group.first(where: { ($0.isLoopback4 || $0.address == "0.0.0.0") && !$0.isIPv6 }), !holdsV6Loopback {
            let free = anyIPv6 ? "::1 on port \(port) is free" : "[::] and ::1 on port \(port) are free"
            findings.append(AuditFinding(kind: .exposure, severity: severity, transport: transport, port: port, destinations: ["::1"], inodes: [v4.inode],
                                         explanation: "\(v4.endpoint) (\(v4.who)) has no IPv6 counterpart: \(free), so \(who) could bind ::1 and take the clients of \"localhost\", which try ::1 before 127.0.0.1."))
        }
        if let v6 = group.first(where: \.isLoopback6), !holdsV4Loopback {
            findings.append(AuditFinding(kind: .exposure, severity: severity, transport: transport, port: port, destinations: ["127.0.0.1"], inodes: [v6.inode],
                                         explanation: "\(v6.endpoint) (\(v6.who)) has no IPv4 counterpart: 127.0.0.1 on port \(port) is free, so \(who) could bind it and take the clients that reach this service over IPv4 (127.0.0.1, or \"localhost\" where it resolves to IPv4 only)."))
        }
        return findings
    }
}
