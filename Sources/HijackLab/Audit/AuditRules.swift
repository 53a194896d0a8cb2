import Foundation

extension Audit {
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
