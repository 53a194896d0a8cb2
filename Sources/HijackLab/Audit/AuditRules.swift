import HijackSystem

extension Audit {
    /// What the rules need to know about the host besides its sockets.
    public struct Context {
        public var unprivilegedPortStart: UInt16 = 1024
        public var ephemeral: ClosedRange<UInt16> = 32_768...60_999
        public var ipv6 = true
        /// Whether two processes belong together (one started the other, or one parent started
        /// both, as a master its workers): softens the note on a shared address.
        public var related: (Int32, Int32) -> Bool = { _, _ in false }
        /// When a process started (clock ticks since boot), nil where unknown: of two sockets
        /// that overlap, the one whose process started later most likely came second.
        public var startTime: (Int32) -> UInt64? = { _ in nil }
        /// Each interface's addresses other than the loopbacks (IPv4, and IPv6 but link-local):
        /// destinations `takeable` follows besides 127.0.0.1, ::1 and "localhost".
        public var interfaces: [[String]] = []
        /// Which unconnected UDP sockets on a port in `ephemeral` count as a service's, not a
        /// client's (AuditEphemeral.swift): by default those bound to an address of their own.
        public var ephemeralUDP: EphemeralUDP = .bound
        /// The same context with caches of its own, for a second thread that takes half of the
        /// ports: nil keeps the rules on one thread (a test's closures, a few sockets). It makes
        /// a context afresh: a field changed after it was set does not reach the second thread.
        public var anotherThread: (@Sendable () -> Context)? = nil

        public init(unprivilegedPortStart: UInt16 = 1024, ephemeral: ClosedRange<UInt16> = 32_768...60_999, ipv6: Bool = true,
                    related: @escaping (Int32, Int32) -> Bool = { _, _ in false },
                    startTime: @escaping (Int32) -> UInt64? = { _ in nil }, interfaces: [[String]] = [], ephemeralUDP: EphemeralUDP = .bound) {
            self.unprivilegedPortStart = unprivilegedPortStart
            self.ephemeral = ephemeral
            self.ipv6 = ipv6
            self.related = related
            self.startTime = startTime
            self.interfaces = interfaces
            self.ephemeralUDP = ephemeralUDP
        }
    }

    /// A process's start time in clock ticks since boot: field 22 of /proc/PID/stat, counted
    /// after the command's closing parenthesis, since the command may itself hold spaces.
    public static func processStartTime(_ pid: Int32) -> UInt64? {
        guard let text = ProcNet.read("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }

    /// Every finding among the sockets, port by port.
    public static func findings(_ sockets: [AuditSocket], context: Context = Context()) -> [AuditFinding] {
        // The audit hands its sockets over in inOrder's order already: then each port is one run
        // of the array, and no copy of every socket (a few MB at 50,000) is made to group them.
        let ordered = sockets.indices.dropFirst().allSatisfy({ !AuditSocket.precedes(sockets[$0], sockets[$0 - 1]) }) ? sockets : sockets.sorted(by: AuditSocket.precedes)
        var runs: [(key: String, range: Range<Int>)] = []
        var runStart = 0
        while runStart < ordered.count {
            var runEnd = runStart + 1
            while runEnd < ordered.count, ordered[runEnd].transport == ordered[runStart].transport, ordered[runEnd].port == ordered[runStart].port { runEnd += 1 }
            runs.append((key: "\(ordered[runStart].transport.rawValue)/\(ordered[runStart].port)", range: runStart..<runEnd))
            runStart = runEnd
        }
        // Ports in the order of their text, "tcp/10000" before "tcp/9000", as findings have always come.
        runs.sort { $0.key < $1.key }
        // Many ports: the second half on a thread of its own, with its own caches; the findings
        // come out in the same order, and are the same, as on one thread (AuditSpeedTests).
        let ranges = runs.map(\.range)
        guard let another = context.anotherThread, ranges.count >= parallelFrom else {
            return findings(of: ranges[...], in: ordered, context: context)
        }
        let half = ranges.count / 2
        let (second, first) = onSecondThread({ findings(of: ranges[half...], in: ordered, context: another()) },
                                             while: { findings(of: ranges[..<half], in: ordered, context: context) })
        return first + second
    }

    /// Ports from which the rules take two threads: below, a thread costs more than it saves.
    package static let parallelFrom = 512

    /// The findings of the ports at `runs` (ranges of `ordered`, one port each), in that order.
    static func findings(of runs: ArraySlice<Range<Int>>, in ordered: [AuditSocket], context: Context) -> [AuditFinding] {
        var findings: [AuditFinding] = []
        var predictions = Takeover.Cache()
        for run in runs {
            let portStart = findings.count
            let all = Array(ordered[run])
            // The receiving sockets: all of them but where a connected UDP socket shares the port.
            let group = all.contains { $0.remote != nil } ? all.filter { $0.remote == nil } : all
            let transport = all[0].transport
            let port = all[0].port
            let unit = transport == .tcp ? "connection" : "datagram"

            // Most ports hold no wildcard, no device-bound socket and no v4-mapped one: their
            // rules below are skipped at once.
            let anyWildcard = group.contains { $0.isWildcard && $0.device == nil }
            let anyDevice = group.contains { $0.device != nil }
            let anyMapped = group.contains { $0.isIPv6 && $0.ipv4 != nil }

            // A specific address in front of a wildcard that would otherwise get its traffic.
            for specific in group where anyWildcard && !specific.isWildcard && !specific.isGroupAddress {
                guard let wildcard = shadowedWildcard(by: specific, in: group) else { continue }
                findings += overlap(specific, over: wildcard, port: port, context: context,
                                    takes: "every \(unit) to \(specific.endpoint) that \(wildcard.label) would otherwise receive")
            }

            // A device-bound socket in front of an unbound one on the same address.
            for bound in group where anyDevice && bound.device != nil {
                for unbound in group where unbound.device == nil && unbound.address == bound.address {
                    findings += overlap(bound, over: unbound, port: port, context: context,
                                        takes: "every \(unit) to \(unbound.endpoint) that arrives on \(bound.device!) (SO_BINDTODEVICE scores higher)")
                }
            }

            // The two families split between owners: whoever holds 0.0.0.0 gets every IPv4 client
            // of the port, whoever holds [::] every IPv6 one (with "localhost" on ::1). A dual-stack
            // [::] loses its IPv4 clients too, since the kernel prefers an IPv4 socket for them.
            if let v4 = group.first(where: { $0.isWildcard4 && !$0.isIPv6 && $0.device == nil }),
               let v6 = group.first(where: { $0.isWildcard6 && $0.device == nil }) {
                findings += split(v4, v6, port: port, context: context) { taker, loser in
                    taker.inode == v4.inode ? "every IPv4 \(unit) to the port (127.0.0.1 and every IPv4 address)" + (v6.v6only == false ? ", which the dual-stack \(v6.label) would otherwise receive" : "")
                        + ", while \(v6.label) answers IPv6; one service does not hold both families"
                        : "every IPv6 \(unit) to the port (::1, and with it the clients of \"localhost\", which try ::1 before 127.0.0.1), while \(v4.label) answers IPv4; one service does not hold both families"
                }
            }

            // An IPv4 socket and a v4-mapped one on the same address: the kernel prefers the
            // IPv4 socket for that address's traffic.
            for plain in group where anyMapped && !plain.isIPv6 && plain.device == nil && !plain.isGroupAddress {
                for mapped in group where mapped.mappedIPv4 == plain.address && mapped.device == nil {
                    findings += overlap(plain, over: mapped, port: port, context: context,
                                        takes: "every \(unit) to \(plain.endpoint) that \(mapped.label) would otherwise receive (the kernel prefers an IPv4 socket to a v4-mapped IPv6 one)")
                }
            }

            // localhost split between families: clients try ::1 first, and go on to 127.0.0.1
            // only when ::1 refuses them. So whatever receives ::1 takes the "localhost" clients
            // of whatever receives 127.0.0.1 (plain, v4-mapped, or a wildcard over it), and the
            // latter keeps every client that names 127.0.0.1.
            if let v6 = receiver(ofIPv6Loopback: group), let v4 = receiver(ofIPv4Loopback: group), v6.inode != v4.inode,
               !findings[portStart...].contains(where: { $0.inodes.contains(v6.inode) && $0.inodes.contains(v4.inode) }) {
                findings += split(v6, v4, port: port, context: context) { taker, _ in
                    taker.inode == v6.inode ? "the clients of \"localhost\", which try ::1 before 127.0.0.1 (RFC 6724), from \(v4.label), which would receive them alone"
                        : "every \(unit) to 127.0.0.1 (clients that name the address rather than \"localhost\"), while \(v6.label) holds ::1 and with it \"localhost\"; one service does not hold both families"
                }
            }

            // Several unbound sockets on one exact address (grouped only where an address repeats:
            // most ports have one socket per address).
            // The port's sockets come in the audit's order, by address: a repeated one is next to itself.
            let unbound = group.filter { $0.device == nil }
            if unbound.indices.dropFirst().contains(where: { unbound[$0].address == unbound[$0 - 1].address }) {
                for (address, members) in Dictionary(grouping: unbound, by: \.address) where members.count > 1 {
                    findings.append(sharing(members, address: address, transport: transport, port: port, context: context))
                }
            }

            // A connected UDP socket takes its peer's datagrams from whoever else receives on the port.
            for connected in all where connected.remote != nil {
                for receiver in group where receiver.uid != connected.uid && (receiver.takesIPv4 || receiver.address == connected.address || receiver.isWildcard6) {
                    findings.append(AuditFinding(
                        kind: .interception, severity: .alarm, transport: transport, port: port, destinations: [connected.address], inodes: [connected.inode, receiver.inode],
                        explanation: "\(connected.endpoint), connected to \(connected.remote!) (\(connected.who)), receives the datagrams \(connected.remote!) sends to port \(port), which \(receiver.label) (\(receiver.who)) would otherwise receive.",
                        likelyIntruder: later(connected, receiver, context: context)?.inode))
                    break
                }
            }

            // From the sockets' own options, who could take what now; where some socket's
            // options are unknown, the families alone, as before options were read.
            if let predicted = takeable(all, transport: transport, port: port, context: context, cache: &predictions) {
                findings += predicted
            } else {
                findings += exposure(group, transport: transport, port: port, context: context)
            }
            addNextSteps(to: &findings, from: portStart, among: all, context: context)
        }
        return findings
    }

    /// Sockets sharing one address: a reuseport group (same uid, spread by hash) or, for UDP,
    /// SO_REUSEADDR, where the most recently bound socket receives every unicast datagram.
    package static func sharing(_ members: [AuditSocket], address: String, transport: Transport, port: UInt16, context: Context) -> AuditFinding {
        let uids = Set(members.map(\.uid))
        let endpoint = members[0].endpoint
        // The table names each member's process; here the owners, in an order no run changes.
        let who = "held by " + Dictionary(members.map { ($0.uid, $0.user) }, uniquingKeysWith: { first, _ in first })
            .sorted { $0.key < $1.key }.map { "uid \($0.key) (\($0.value))" }.joined(separator: " and ")
        if transport == .udp && uids.count > 1 {
            // SO_REUSEPORT needs one uid, so different uids can only share through SO_REUSEADDR.
            // The newest socket is the one that takes: the likely intruder, where start times tell.
            let intruder = members.dropFirst().reduce(members.first) { newest, member in newest.flatMap { later($0, member, context: context) } }
            return AuditFinding(kind: .interception, severity: .alarm, transport: transport, port: port, destinations: [address], inodes: members.map(\.inode),
                                explanation: "\(members.count) UDP sockets of different uids share \(endpoint), which only SO_REUSEADDR allows, and then the most recently bound one receives every unicast datagram: \(who)."
                                    + (intruder.map { " The likely intruder is \($0.who): its process started last." } ?? ""),
                                likelyIntruder: intruder?.inode)
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

    /// The socket that receives ::1: ::1 itself, else a [::] (dual-stack or V6ONLY).
    package static func receiver(ofIPv6Loopback group: [AuditSocket]) -> AuditSocket? {
        group.first { $0.device == nil && $0.isLocalhost6 } ?? group.first { $0.device == nil && $0.isWildcard6 }
    }

    /// The socket that receives 127.0.0.1, in the kernel's order: the exact address over a
    /// wildcard, and an IPv4 socket over an IPv6 one (v4-mapped, or a dual-stack [::]).
    package static func receiver(ofIPv4Loopback group: [AuditSocket]) -> AuditSocket? {
        let unbound = { (socket: AuditSocket) in socket.device == nil }
        return group.first { unbound($0) && $0.isLocalhost4 && !$0.isIPv6 } ?? group.first { unbound($0) && $0.isLocalhost4 }
            ?? group.first { unbound($0) && $0.isWildcard4 && !$0.isIPv6 } ?? group.first { unbound($0) && ($0.isWildcard4 || ($0.isWildcard6 && $0.takesIPv4)) }
    }

    /// Of two sockets, the one whose process started later, where the start times tell: on
    /// a host where a service ran first, that one is the likely intruder.
    package static func later(_ one: AuditSocket, _ other: AuditSocket, context: Context) -> AuditSocket? {
        // A socket's earliest holder made it (the others inherited it).
        func started(_ socket: AuditSocket) -> ProcessStart? {
            socket.owners.compactMap { owner in context.startTime(owner.pid).map { ProcessStart(tick: $0, pid: owner.pid) } }.min()
        }
        guard let first = started(one), let second = started(other), first != second else { return nil }
        return first > second ? one : other
    }

    /// When a process started, as far as the system tells: its start time in clock ticks,
    /// and within one tick (10 ms) its pid. The kernel hands out pids in rising order up to
    /// pid_max, then wraps around to low numbers: within a tick, the pid less than half of
    /// pid_max ahead, counting around the wrap, came later (serial-number order, RFC 1982).
    struct ProcessStart: Comparable {
        let tick: UInt64
        let pid: Int32
        /// The kernel's pid_max (/proc/sys/kernel/pid_max); the largest it can be where unreadable.
        static let pidMax: Int = {
            let text = ProcNet.read("/proc/sys/kernel/pid_max") ?? ""
            let value = Int(String(text.filter { $0.isASCII && $0.isNumber })) ?? 0
            return value > 1 ? value : 4_194_304
        }()

        static func < (lhs: ProcessStart, rhs: ProcessStart) -> Bool {
            if lhs.tick != rhs.tick { return lhs.tick < rhs.tick }
            let ahead = ((Int(rhs.pid) - Int(lhs.pid)) % pidMax + pidMax) % pidMax
            return ahead != 0 && ahead < pidMax / 2
        }
    }

    /// A split in which each socket takes something from the other (one family each): the
    /// likely intruder is named as the taker where the start times tell; `takes` says what
    /// the taker gets, given (taker, loser).
    package static func split(_ one: AuditSocket, _ other: AuditSocket, port: UInt16, context: Context,
                      takes: (AuditSocket, AuditSocket) -> String) -> [AuditFinding] {
        let taker = later(one, other, context: context) ?? one
        let loser = taker.inode == one.inode ? other : one
        return overlap(taker, over: loser, port: port, context: context, takes: takes(taker, loser))
    }

    /// The wildcard socket whose traffic `specific` takes, if any.
    package static func shadowedWildcard(by specific: AuditSocket, in group: [AuditSocket]) -> AuditSocket? {
        let wildcard = { (socket: AuditSocket) in socket.device == nil && socket.isWildcard }
        if specific.ipv4 != nil {
            // An IPv4 wildcard first; a [::] only where it also takes IPv4 (dual-stack).
            return group.first { wildcard($0) && $0.isWildcard4 } ?? group.first { wildcard($0) && $0.takesIPv4 }
        }
        return group.first { wildcard($0) && $0.isWildcard6 }
    }

    /// interception when the taker has another uid; shadowing when the same uid but unrelated processes.
    package static func overlap(_ taker: AuditSocket, over loser: AuditSocket, port: UInt16, context: Context, takes: String) -> [AuditFinding] {
        let destination = [taker.address]
        let intruder = later(taker, loser, context: context)
        let blame = intruder.map { intruder in
            " The likely intruder is \(intruder.label): its process started after that of \((intruder.inode == taker.inode ? loser : taker).label)."
        } ?? ""
        if taker.uid != loser.uid {
            return [AuditFinding(kind: .interception, severity: .alarm, transport: taker.transport, port: port, destinations: destination,
                                 inodes: [taker.inode, loser.inode],
                                 explanation: "\(taker.label) (\(taker.who)) takes \(takes); \(loser.label) belongs to \(loser.who)." + blame,
                                 likelyIntruder: intruder?.inode)]
        }
        let takerPIDs = Set(taker.owners.map(\.pid))
        let loserPIDs = Set(loser.owners.map(\.pid))
        // One process holding both sockets (itself, or its children that inherited both) is the
        // per-address fix. Ancestry alone is not: a container's init or systemd is the ancestor
        // of every program it starts, and a program that binds its own specific address beside
        // its parent's wildcard, without holding that wildcard, is another program on the port.
        if !takerPIDs.isDisjoint(with: loserPIDs) {
            return []
        }
        let owners = takerPIDs.isEmpty || loserPIDs.isEmpty ? " (owners not all visible; root sees more)" : ""
        return [AuditFinding(kind: .shadowing, severity: .warning, transport: taker.transport, port: port, destinations: destination,
                             inodes: [taker.inode, loser.inode],
                             explanation: "\(taker.label) (\(taker.who)) takes \(takes); both run as uid \(taker.uid), in unrelated processes\(owners)." + blame,
                             likelyIntruder: intruder?.inode)]
    }

    /// One family's localhost or wildcard held while the other family's is free to bind.
    package static func exposure(_ group: [AuditSocket], transport: Transport, port: UInt16, context: Context) -> [AuditFinding] {
        // A UDP socket on an ephemeral port is most likely a client waiting for replies: there
        // only those the context keeps can be exposed, while any socket holds its address.
        let candidates = transport == .udp && context.ephemeral.contains(port) ? group.filter(context.ephemeralUDP.keeps) : group
        if candidates.isEmpty { return [] }
        let v6Held = group.contains { $0.isLocalhost6 || $0.isWildcard6 }
        let v4Held = group.contains { $0.isLocalhost4 || $0.takesIPv4 }
        let privileged = context.unprivilegedPortStart > port
        let who = privileged ? "a process with privileges (the port is below \(context.unprivilegedPortStart))" : "any local user"
        let severity: AuditFinding.Severity = privileged ? .info : .warning
        var findings: [AuditFinding] = []
        // The service's own socket is the unbound one; a device-bound one answers one device only.
        if context.ipv6, !v6Held, let v4 = candidates.first(where: { ($0.isLocalhost4 || $0.isWildcard4) && !$0.isIPv6 && $0.device == nil }) {
            findings.append(AuditFinding(kind: .exposure, severity: severity, transport: transport, port: port, destinations: ["::1"], inodes: [v4.inode],
                                         explanation: "\(v4.label) (\(v4.who)) has no IPv6 counterpart: ::1 on port \(port) is free, so \(who) could bind it and take the clients of \"localhost\", which try ::1 before 127.0.0.1."))
        }
        if !v4Held, let v6 = candidates.first(where: { $0.isLocalhost6 || ($0.isWildcard6 && $0.v6only == true) }) {
            let free = v6.isWildcard6 ? "0.0.0.0 and 127.0.0.1" : "127.0.0.1"
            findings.append(AuditFinding(kind: .exposure, severity: severity, transport: transport, port: port, destinations: ["127.0.0.1"], inodes: [v6.inode],
                                         explanation: "\(v6.label) (\(v6.who)) has no IPv4 counterpart: \(free) on port \(port) \(v6.isWildcard6 ? "are" : "is") free, so \(who) could bind it and take every client that reaches this port over IPv4."))
        }
        return findings
    }
}
