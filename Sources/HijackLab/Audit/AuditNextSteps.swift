import HijackSystem

extension Audit {
    /// What to do next and a command that shows it (AuditNextSteps), for one port's findings,
    /// those from `first` on, where their rule has not said already: the last step of
    /// `findings`, in place. `sockets` are the port's own, the only ones its findings name.
    package static func addNextSteps(to findings: inout [AuditFinding], from first: Int, among sockets: [AuditSocket], context: Context) {
        // A port of many sockets (a reuseport group of workers) is looked up by inode, not searched.
        let byInode = sockets.count > 16 ? Dictionary(sockets.map { ($0.inode, $0) }, uniquingKeysWith: { first, _ in first }) : [:]
        for index in first..<findings.count where findings[index].fix == nil || findings[index].evidence == nil {
            let members = findings[index].inodes.compactMap { inode in byInode.isEmpty ? sockets.first { $0.inode == inode } : byInode[inode] }
            guard members.count == findings[index].inodes.count,
                  let steps = AuditNextSteps.steps(for: findings[index], members: members, ipv6: context.ipv6) else { continue }
            if findings[index].fix == nil { findings[index].fix = steps.fix }
            if findings[index].evidence == nil { findings[index].evidence = steps.evidence }
        }
    }
}

/// What to do about a finding, in one line (`fix`), and a command that shows its evidence
/// (`evidence`): `hijack-lab try` of the socket at risk, the one that loses traffic or the
/// exposed one, with its address, port and transport, and its options where they were read.
/// The command is one that try's own parser takes (AuditNextStepsTests runs it on every
/// shape); whatever it cannot say exactly follows as a shell comment, so the line still runs.
package enum AuditNextSteps {
    /// The addresses and devices of the lab host that try binds where a host's own are not
    /// its to bind (TryCommand.addresses, LabAddresses; AuditNextStepsTests holds them together).
    package static let labInterface4 = "198.51.100.1"
    package static let labInterface6 = "2001:db8::1"
    package static let labDevices = ["lo", "lab0"]

    package static func steps(for finding: AuditFinding, members: [AuditSocket], ipv6: Bool) -> (fix: String, evidence: String)? {
        let transport = finding.transport
        let intruder = finding.likelyIntruder.flatMap { inode in members.first { $0.inode == inode } }
        switch finding.kind {
        case .interception, .shadowing:
            guard members.count >= 2 else { return nil }
            // A connected UDP socket that hears its peer's datagrams instead of the receiver.
            if let connected = members.first(where: { $0.remote != nil }), let receiver = members.first(where: { $0.remote == nil }) {
                // Two uids on overlapping addresses of one family: only SO_REUSEADDR on both lets the second bind.
                let overlapping = receiver.isIPv6 == connected.isIPv6 && (receiver.isWildcard || receiver.address == connected.address)
                return (stop(intruder, among: [connected, receiver]) + "; then bind \(receiver.endpoint) \(noReuse(transport)), so that no socket can bind its port beside it",
                        evidence(for: receiver, implied: overlapping && receiver.uid != connected.uid
                            ? (["SO_REUSEADDR"], "SO_REUSEADDR, which a socket of another uid on an overlapping address needs; whether it sets SO_REUSEPORT too is unknown") : nil))
            }
            // UDP sockets of different uids on one address (SO_REUSEADDR): the newest takes all.
            if members.count > 2 || members.dropFirst().allSatisfy({ $0.address == members[0].address && $0.device == members[0].device }) {
                let service = members.first { $0.inode != intruder?.inode } ?? members[0]
                return (stop(intruder, among: members) + "; then bind \(service.endpoint) \(noReuse(transport)), so that no other uid can bind the address beside it",
                        evidence(for: service, implied: transport == .udp ? (["SO_REUSEADDR"], "SO_REUSEADDR, which UDP sockets of different uids need to share an address; whether it sets SO_REUSEPORT too is unknown") : nil))
            }
            // One socket in front of another: the taker first, the loser second.
            let taker = members[0]
            let loser = members[1]
            let service = intruder.map { $0.inode == taker.inode ? loser : taker } ?? loser
            let same = finding.kind == .shadowing ? " (if both are the service, hold every address in one process)" : ""
            return (stop(intruder, among: [taker, loser]) + same + "; then " + perAddress(service, transport: transport, ipv6: ipv6), evidence(for: loser))
        case .loadBalancing:
            let fix = "nothing to do if these \(members.count) sockets are one service's (its workers); otherwise stop the process that is not, and bind the service \(noReuse(transport)), so that no other socket can join \(members[0].endpoint)"
            return (fix, evidence(for: members[0], implied: transport == .tcp ? (["SO_REUSEPORT"], "SO_REUSEPORT, which TCP listeners need to share an address; whether it sets SO_REUSEADDR too is unknown") : nil))
        case .exposure:
            return (otherFamily(members[0], transport: transport), evidence(for: members[0]))
        case .takeable, .unexpectedOwner:
            return nil
        }
    }

    /// The options whose absence keeps a second socket off a bound address: SO_REUSEPORT for
    /// TCP, and for UDP SO_REUSEADDR too (with it on both, sockets of any uid share one).
    static func noReuse(_ transport: Transport) -> String {
        transport == .tcp ? "with no SO_REUSEPORT" : "with neither SO_REUSEADDR nor SO_REUSEPORT"
    }

    /// Who holds a socket, as a finding's explanation names it.
    static func holder(_ socket: AuditSocket) -> String {
        let user = "uid \(socket.uid) (\(socket.user))"
        return socket.owners.isEmpty ? "the process holding \(socket.label) (\(user); not visible to this audit)" : "pid \(socket.ownerText) (\(user))"
    }

    /// Stop the likely intruder; where the start times did not tell, whichever is not the service.
    static func stop(_ intruder: AuditSocket?, among members: [AuditSocket]) -> String {
        if let intruder { return "stop \(holder(intruder)) or find who started it" }
        let holders = members.map(holder)
        let list = holders.count == 2 ? holders[0] + " and " + holders[1] : holders.dropLast().joined(separator: ", ") + " and " + holders.last!
        return "stop whichever of \(list) is not the service, or find who started it"
    }

    /// The fix of a family gap: the same service binds the other family's address too.
    package static func otherFamily(_ exposed: AuditSocket, transport: Transport) -> String {
        let port = exposed.port
        if exposed.isIPv6 {
            return exposed.isWildcard6 ? "bind 0.0.0.0:\(port) too, in the same service and \(noReuse(transport)) (or leave IPV6_V6ONLY off, so that [::] takes IPv4 as well), so that no one else can take its IPv4 clients"
                : "bind 127.0.0.1:\(port) too, in the same service and \(noReuse(transport)), so that no one else can take the clients that reach it over IPv4"
        }
        return exposed.isWildcard4 ? "bind [::]:\(port) with IPV6_V6ONLY too (or ::1 and each interface's IPv6 address, one socket each), in the same service and \(noReuse(transport)), so that no one else can take its IPv6 clients"
            : "bind [::1]:\(port) too, in the same service and \(noReuse(transport)), so that no one else can take the clients of \"localhost\""
    }

    /// The per-address fix: one socket per address the service answers on, both families.
    static func perAddress(_ socket: AuditSocket, transport: Transport, ipv6: Bool) -> String {
        let addresses: String
        if socket.isWildcard {
            addresses = ipv6 ? "127.0.0.1, ::1 and each interface's IPv4 and IPv6 address" : "127.0.0.1 and each interface's address"
        } else if socket.isLocalhost4 || socket.isLocalhost6 {
            addresses = ipv6 ? "127.0.0.1 and ::1" : "127.0.0.1"
        } else {
            // The rest of 127/8 has no IPv6 twin; an interface's address has its other family's.
            let address = socket.ipv4 ?? socket.address
            addresses = address.hasPrefix("127.") || !ipv6 ? address : "\(address) and its interface's \(socket.ipv4 == nil ? "IPv4" : "IPv6") address"
        }
        return "bind the service to each address it serves, one socket per address (\(addresses)), \(noReuse(transport))"
    }

    /// `hijack-lab try` of the socket's own bind, in the form try takes. `implied`: options the
    /// finding proves the socket set, for when they were not read from it, and how it proves them.
    package static func evidence(for socket: AuditSocket, implied: (options: [String], why: String)? = nil) -> String {
        var notes: [String] = []
        let (host, standIn) = tryAddress(socket)
        if let standIn { notes.append(standIn) }
        let bracketed = host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]" : host
        var words = ["hijack-lab", "try", "'" + bracketed + (socket.port > 0 ? ":\(socket.port)" : "") + "'"]
        if let options = socket.options, options.isKnown {
            let set = (options.reuseAddress == true ? ["SO_REUSEADDR"] : []) + (options.reusePort == true ? ["SO_REUSEPORT"] : [])
            if !set.isEmpty { words += ["--options", set.joined(separator: ",")] }
            let unread = (options.reuseAddress == nil ? ["SO_REUSEADDR"] : []) + (options.reusePort == nil ? ["SO_REUSEPORT"] : [])
            if !unread.isEmpty { notes.append("its \(unread.joined(separator: " and ")) could not be read: add it to --options if the service sets it") }
        } else if let implied {
            words += ["--options", implied.options.joined(separator: ",")]
            notes.append(implied.why)
        } else {
            let why = socket.options?.unknown ?? "the audit did not read them"
            notes.append("its SO_REUSEADDR and SO_REUSEPORT are unknown (\(why)): add --options as the service sets them")
        }
        if host == "::" && socket.isWildcard6 {
            switch socket.v6only ?? socket.options?.v6only {
            case true?: words.append("--v6only")
            case false?: break
            case nil: notes.append("IPV6_V6ONLY unknown: tried dual-stack, as the audit reads a lone [::]")
            }
        }
        if let device = socket.device ?? socket.options?.device {
            if labDevices.contains(device) {
                words += ["--device", device]
            } else {
                notes.append("without its SO_BINDTODEVICE \(device): try binds only the lab's devices, \(labDevices.joined(separator: " and "))")
            }
        }
        words += ["--transport", socket.transport.rawValue]
        if [labInterface4, labInterface6].contains(host) || words.contains("--device") {
            notes.append("try runs this in its netns topology only, as root")
        }
        return words.joined(separator: " ") + (notes.isEmpty ? "" : "  # " + notes.joined(separator: "; "))
    }

    /// The address try binds for this socket's: its own where try has it, else the closest it
    /// has, with a note that says which stands in for which.
    package static func tryAddress(_ socket: AuditSocket) -> (host: String, standIn: String?) {
        let address = socket.address
        if ["0.0.0.0", "::", "127.0.0.1", "::1", "::ffff:127.0.0.1", labInterface4, labInterface6].contains(address) { return (address, nil) }
        let v4 = socket.ipv4
        if socket.isGroupAddress {
            let host = v4 == nil ? "::" : "0.0.0.0"
            return (host, "\(host) stands in for \(address), a group address, which try does not bind")
        }
        if socket.isWildcard4 { return ("0.0.0.0", "0.0.0.0 stands in for \(address), which try does not bind") }
        if let v4, v4.hasPrefix("127.") {
            let host = socket.isIPv6 ? "::ffff:127.0.0.1" : "127.0.0.1"
            return (host, "\(host) stands in for \(address), which try does not bind")
        }
        let host = v4 == nil ? labInterface6 : labInterface4
        return (host, "\(host), the lab interface's address, stands in for \(address)" + (socket.isIPv6 && v4 != nil ? " (as plain IPv4: try binds no v4-mapped form of it)" : ""))
    }
}
