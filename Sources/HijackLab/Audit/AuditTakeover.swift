import HijackSystem
import Glibc

/// Who could take a port's traffic now, before anyone does: the lab's knowledge of the
/// kernel's bind and lookup rules, in one table, applied to the sockets a port has.
///
/// `matrix --audit` holds these rules to the kernel on every case: before the second socket
/// binds, the audit predicts from the first socket alone (its options read from the socket
/// itself), and the case shows what the second socket actually took (MATRIX.md).
extension Audit {
    public enum Takeover {
        /// The rules, each one sentence about Linux (net/ipv4/inet_connection_sock.c,
        /// inet_hashtables.c, udp.c), in the order the kernel applies them.
        public static let rules: [(name: String, rule: String)] = [
            ("answers", "A socket answers the IPv4 destinations of its address (0.0.0.0 all of them, a v4-mapped ::ffff:a.b.c.d one) and, as an IPv6 socket, the IPv6 ones ([::] all of them, and all IPv4 too unless IPV6_V6ONLY)."),
            ("conflict", "A bind fails (EADDRINUSE) beside a socket whose destinations overlap its own, unless both set SO_REUSEPORT and have one uid, or, for UDP, both set SO_REUSEADDR; a TCP listener's SO_REUSEADDR lets nobody in."),
            ("exact", "A destination goes to the sockets bound to exactly its address, and only when there are none to the wildcards that answer it."),
            ("family", "Among those, an IPv4 socket comes before an IPv6 one (dual-stack or v4-mapped) for IPv4 traffic."),
            ("order", "Between equals, the most recently bound comes first, except an IPv6 socket with SO_REUSEPORT, which the kernel adds at the end of the list."),
            ("group", "If the one that comes first has SO_REUSEPORT, its group shares the traffic by hash: sockets of one family, address, IPV6_V6ONLY and uid, all with SO_REUSEPORT."),
            ("localhost", "A client of \"localhost\" tries ::1 first, and 127.0.0.1 only when nothing answers ::1."),
            ("taken", "A new socket takes a destination when it receives some of its traffic, and before it the port answered that destination, or the same name's other family (127.0.0.1 and ::1, an interface's IPv4 and IPv6 addresses)."),
            ("privileged", "Below ip_unprivileged_port_start, only a process with CAP_NET_BIND_SERVICE binds: another user cannot."),
        ]

        /// What one bound socket answers: for each family, every destination, one, or none.
        package enum Cover: Hashable {
            case none, all
            case one(String)

            func meets(_ other: Cover) -> Bool {
                switch (self, other) {
                case (.none, _), (_, .none): false
                case (.all, _), (_, .all): true
                case (.one(let a), .one(let b)): a == b
                }
            }

            func answers(_ address: String) -> Bool {
                switch self {
                case .none: false
                case .all: true
                case .one(let own): own == address
                }
            }
        }

        /// A socket as the rules see it.
        package struct Bound {
            package var address: String
            package var isIPv6: Bool
            package var v6only: Bool
            package var reuseAddress: Bool
            package var reusePort: Bool
            package var uid: UInt32
            /// When it was bound, relative to the others: larger is later.
            package var order: Int
            /// False for a connected UDP socket: it holds the port but hears only its peer.
            package var receives = true
            package var v4: Cover
            package var v6: Cover

            package init(address: String, v6only: Bool, reuseAddress: Bool, reusePort: Bool, uid: UInt32, order: Int, receives: Bool = true) {
                self.address = address
                self.isIPv6 = address.utf8.contains(UInt8(ascii: ":"))
                // Binding a specific IPv6 address (not ::, not v4-mapped) sets IPV6_V6ONLY in the
                // kernel (__inet6_bind), so a candidate on ::1 is written without it.
                let specific6 = isIPv6 && address != "::" && !(address.hasPrefix("::ffff:") && address.utf8.contains(UInt8(ascii: ".")))
                self.v6only = isIPv6 && (v6only || specific6)
                self.reuseAddress = reuseAddress
                self.reusePort = reusePort
                self.uid = uid
                self.order = order
                self.receives = receives
                // Rule "answers".
                if !isIPv6 {
                    (v4, v6) = (address == "0.0.0.0" ? .all : .one(address), .none)
                } else if address == "::" {
                    (v4, v6) = (self.v6only ? .none : .all, .all)
                } else if address.hasPrefix("::ffff:"), address.utf8.contains(UInt8(ascii: ".")) {
                    (v4, v6) = (.one(String(address.dropFirst(7))), .none)
                } else {
                    (v4, v6) = (.none, .one(address))
                }
            }

            func overlaps(_ other: Bound) -> Bool { v4.meets(other.v4) || v6.meets(other.v6) }

            /// Rule "group": whether the two share a SO_REUSEPORT group.
            func groups(with other: Bound) -> Bool {
                reusePort && other.reusePort && isIPv6 == other.isIPv6 && v6only == other.v6only && address == other.address && uid == other.uid
            }
        }

        /// Rule "conflict": whether `candidate` can bind beside `existing`.
        package static func canBind(_ candidate: Bound, beside existing: [Bound], transport: Transport) -> Bool {
            existing.allSatisfy { socket in
                !socket.overlaps(candidate) || (socket.reusePort && candidate.reusePort && socket.uid == candidate.uid)
                    || (transport == .udp && socket.reuseAddress && candidate.reuseAddress)
            }
        }

        /// Rules "exact", "family", "order" and "group": the sockets (indices) that receive
        /// traffic to `destination`, several when a SO_REUSEPORT group shares it.
        package static func receivers(of destination: String, among sockets: [Bound]) -> [Int] {
            let isIPv6 = destination.utf8.contains(UInt8(ascii: ":"))
            let cover = { (socket: Bound) in isIPv6 ? socket.v6 : socket.v4 }
            let answering = sockets.indices.filter { sockets[$0].receives && cover(sockets[$0]).answers(destination) }
            let exact = answering.filter { cover(sockets[$0]) == .one(destination) }
            let pool = exact.isEmpty ? answering : exact
            guard !pool.isEmpty else { return [] }
            let score = { (index: Int) in !isIPv6 && !sockets[index].isIPv6 ? 1 : 0 }
            let best = pool.map(score).max()!
            let tied = pool.filter { score($0) == best }
            let atEnd = { (index: Int) in sockets[index].isIPv6 && sockets[index].reusePort }
            let head = tied.filter { !atEnd($0) }.sorted { sockets[$0].order > sockets[$1].order }
            let tail = tied.filter(atEnd).sorted { sockets[$0].order < sockets[$1].order }
            let first = (head + tail)[0]
            guard sockets[first].reusePort else { return [first] }
            return tied.filter { $0 == first || sockets[$0].groups(with: sockets[first]) }
        }

        /// The destinations the rules follow: both loopbacks, "localhost", and each interface's
        /// addresses, with each one's twins (the same name's other family).
        package struct Destinations {
            package var addresses: [String]
            package var twins: [String: [String]]

            /// `interfaces`: each interface's addresses (IPv4, and IPv6 other than link-local).
            package init(interfaces: [[String]], ipv6: Bool) {
                addresses = ["127.0.0.1"] + (ipv6 ? ["::1"] : [])
                twins = ["127.0.0.1": ["::1"], "::1": ["127.0.0.1"]]
                for addresses in interfaces {
                    let usable = addresses.filter { ipv6 || !$0.utf8.contains(UInt8(ascii: ":")) }
                    for address in usable where !self.addresses.contains(address) {
                        self.addresses.append(address)
                        let family = address.utf8.contains(UInt8(ascii: ":"))
                        twins[address] = usable.filter { $0.utf8.contains(UInt8(ascii: ":")) != family }
                    }
                }
            }
        }

        /// What the port's sockets receive: destination → receiver indices, "localhost" included.
        package static func received(_ sockets: [Bound], destinations: Destinations) -> [String: [Int]] {
            var map: [String: [Int]] = [:]
            for destination in destinations.addresses { map[destination] = receivers(of: destination, among: sockets) }
            // Rule "localhost".
            map["localhost"] = map["::1"].flatMap { $0.isEmpty ? nil : $0 } ?? map["127.0.0.1"] ?? []
            return map
        }

        /// The binds the rules try: every address a destination can be reached through, with
        /// each set of options.
        package static func candidates(_ destinations: Destinations) -> [AuditBind] {
            var addresses: [(String, Bool)] = [("0.0.0.0", false), ("127.0.0.1", false)]
            if destinations.addresses.contains("::1") {
                addresses += [("::", false), ("::", true), ("::1", false), ("::ffff:127.0.0.1", false)]
            }
            for address in destinations.addresses.dropFirst(destinations.addresses.contains("::1") ? 2 : 1) {
                addresses.append((address, false))
                if !address.utf8.contains(UInt8(ascii: ":")) && destinations.addresses.contains("::1") { addresses.append(("::ffff:" + address, false)) }
            }
            let optionSets: [[String]] = [[], ["SO_REUSEADDR"], ["SO_REUSEPORT"], ["SO_REUSEADDR", "SO_REUSEPORT"]]
            return addresses.flatMap { address, v6only in
                optionSets.map { AuditBind(address: address, options: (v6only ? ["IPV6_V6ONLY"] : []) + $0) }
            }
        }

        /// A uid no socket of the port has: "another user".
        static let anotherUID = UInt32.max - 1

        /// Rule "taken": for every destination, who could take it and with which binds. `uids`
        /// are the port's own; each candidate runs as the uid of a socket it would take from
        /// (`sameUID`) and as another user (`otherUID`, not below `unprivilegedPortStart`).
        package static func takes(_ sockets: [Bound], transport: Transport, port: UInt16, destinations: Destinations,
                                  unprivilegedPortStart: UInt16) -> (takes: [AuditTake], losers: Set<Int>) {
            let before = received(sockets, destinations: destinations)
            let later = (sockets.map(\.order).max() ?? 0) + 1
            let uids = Array(Set(sockets.map(\.uid))).sorted() + (port >= unprivilegedPortStart ? [anotherUID] : [])
            var found: [String: (same: [AuditBind], other: [AuditBind])] = [:]
            var losers: Set<Int> = []
            for bind in candidates(destinations) {
                for uid in uids {
                    let candidate = Bound(address: bind.address, v6only: bind.options.contains("IPV6_V6ONLY"), reuseAddress: bind.options.contains("SO_REUSEADDR"),
                                          reusePort: bind.options.contains("SO_REUSEPORT"), uid: uid, order: later)
                    guard canBind(candidate, beside: sockets, transport: transport) else { continue }
                    let after = received(sockets + [candidate], destinations: destinations)
                    for destination in destinations.addresses + ["localhost"] where after[destination]?.contains(sockets.count) == true {
                        let from = before[destination]!.isEmpty ? (destinations.twins[destination] ?? []).flatMap { before[$0] ?? [] } : before[destination]!
                        guard !from.isEmpty else { continue }
                        if uid == anotherUID {
                            found[destination, default: ([], [])].other.append(bind)
                        } else if from.contains(where: { sockets[$0].uid == uid }) {
                            found[destination, default: ([], [])].same.append(bind)
                        } else {
                            continue
                        }
                        losers.formUnion(from)
                    }
                }
            }
            var takes: [AuditTake] = []
            for destination in destinations.addresses + ["localhost"] {
                guard let binds = found[destination] else { continue }
                if !binds.same.isEmpty { takes.append(AuditTake(destination: destination, who: .sameUID, binds: binds.same)) }
                if !binds.other.isEmpty { takes.append(AuditTake(destination: destination, who: .otherUID, binds: binds.other)) }
            }
            return (takes, losers)
        }
    }
}

extension Audit.Takeover {
    /// Ports alike get one prediction: at 50,000 sockets most ports are one shape (a
    /// listener on 127.0.0.1 with the same options), and the rules try 64 binds on each.
    package struct Cache {
        struct Member: Hashable {
            var address: String
            /// v6only, SO_REUSEADDR, SO_REUSEPORT, receives: one bit each.
            var flags: UInt8
            /// The uid's rank among the port's uids.
            var rank: UInt8
        }
        struct Shape: Hashable {
            var transport: Transport
            var privileged: Bool
            var sockets: [Member]
        }
        /// What a shape's ports share: the prediction, and what its finding's text needs of it.
        struct Prediction {
            var takes: [AuditTake]
            /// The sockets (positions by inode) that would lose traffic.
            var losers: [Int]
            /// The destinations taken, in the order of `takes`.
            var destinations: [String]
            /// The fixes that follow from the options alone; the other family's bind, which
            /// names the port, is added per port where `needsOtherFamily`.
            var fixes: [String]
            var needsOtherFamily: Bool
        }
        var known: [Shape: Prediction] = [:]
        /// The clauses of the explanation, by shape and the owner they name.
        var clauses: [ShapeOwner: String] = [:]
        struct ShapeOwner: Hashable {
            var shape: Shape
            var owner: String
        }
        /// The destinations, made once per audit from the context's interfaces.
        var destinations: Destinations?
    }
}

extension Audit {
    /// The `takeable` finding of one port, from its sockets' own options: nil where the rules
    /// cannot tell (some socket's options unknown, or one bound to a device), [] where nothing
    /// can be taken.
    package static func takeable(_ all: [AuditSocket], transport: Transport, port: UInt16, context: Context,
                                 cache: inout Takeover.Cache) -> [AuditFinding]? {
        // A UDP socket on an ephemeral port is most likely a client waiting for replies: the
        // port is predicted only where the context keeps one of its sockets (as exposure does).
        if transport == .udp && context.ephemeral.contains(port) && !all.contains(where: context.ephemeralUDP.keeps) { return [] }
        guard all.allSatisfy({ $0.options?.isKnown == true && $0.device == nil }) else { return nil }
        // Inodes grow as sockets are made: the nearest to the order they were bound in.
        let ordered = all.indices.dropFirst().allSatisfy({ all[$0 - 1].inode < all[$0].inode }) ? all : all.sorted { $0.inode < $1.inode }
        let sockets = ordered.enumerated().map { index, socket in
            Takeover.Bound(address: socket.address, v6only: socket.options?.v6only ?? socket.v6only ?? false,
                           reuseAddress: socket.options?.reuseAddress ?? false, reusePort: socket.options?.reusePort ?? false,
                           uid: socket.uid, order: index, receives: socket.remote == nil)
        }
        let privileged = port < context.unprivilegedPortStart
        // uids by rank, so that two ports alike but for their uids share one prediction.
        let uids = sockets.allSatisfy({ $0.uid == sockets[0].uid }) ? [sockets[0].uid] : Array(Set(sockets.map(\.uid))).sorted()
        let shape = Takeover.Cache.Shape(transport: transport, privileged: privileged, sockets: sockets.map { socket in
            let flags = (socket.v6only ? 1 : 0) | (socket.reuseAddress ? 2 : 0) | (socket.reusePort ? 4 : 0) | (socket.receives ? 8 : 0)
            return .init(address: socket.address, flags: UInt8(flags), rank: UInt8(truncatingIfNeeded: uids.firstIndex(of: socket.uid)!))
        })
        let destinations = cache.destinations ?? Takeover.Destinations(interfaces: context.interfaces, ipv6: context.ipv6)
        cache.destinations = destinations
        let prediction = cache.known[shape] ?? {
            let made = predict(sockets, transport: transport, port: port, destinations: destinations, unprivilegedPortStart: context.unprivilegedPortStart)
            cache.known[shape] = made
            return made
        }()
        guard !prediction.takes.isEmpty else { return [] }
        let losers = prediction.losers.map { ordered[$0] }
        let others = prediction.takes.contains { $0.who == .otherUID }
        // The explanation's clauses name the losers' owner: the same text for every port of one
        // shape and owner.
        let owner = "uid \(losers[0].uid) (\(losers[0].user))"
        let key = Takeover.Cache.ShapeOwner(shape: shape, owner: owner)
        let clauses = cache.clauses[key] ?? {
            let made = takeClauses(prediction, owner: owner, privileged: privileged && losers[0].uid != 0)
            cache.clauses[key] = made
            return made
        }()
        var fixes = prediction.fixes
        if prediction.needsOtherFamily { fixes.append(AuditNextSteps.otherFamily(losers[0], transport: transport)) }
        let severity: AuditFinding.Severity = others ? .warning : .info
        return [AuditFinding(kind: .takeable, severity: severity, transport: transport, port: port, destinations: prediction.destinations, inodes: losers.map(\.inode),
                             explanation: "A new socket could bind beside these now, by their own options (" + losers.map { "\($0.label) \($0.options?.compact ?? "?")" }.joined(separator: ", ")
                                 + "): " + clauses + ".",
                             fix: fixes.isEmpty ? "one socket per address the service answers, without SO_REUSEPORT" : fixes.joined(separator: "; "),
                             evidence: AuditNextSteps.evidence(for: losers[0]), takes: prediction.takes)]
    }

    /// A shape's prediction, from the sockets of its first port: the rules' takes, and what
    /// the finding's fix needs to know of them.
    static func predict(_ sockets: [Takeover.Bound], transport: Transport, port: UInt16, destinations: Takeover.Destinations,
                        unprivilegedPortStart: UInt16) -> Takeover.Cache.Prediction {
        let (takes, losers) = Takeover.takes(sockets, transport: transport, port: port, destinations: destinations, unprivilegedPortStart: unprivilegedPortStart)
        let taken = takes.reduce(into: [String]()) { list, take in if !list.contains(take.destination) { list.append(take.destination) } }
        let losing = losers.sorted()
        // What each take needs, for the one-line fix.
        var fixes: [String] = []
        if takes.contains(where: { $0.binds.allSatisfy { $0.options.contains("SO_REUSEPORT") } }), losing.contains(where: { sockets[$0].reusePort }) {
            fixes.append("clear SO_REUSEPORT unless the port is meant to be shared with every process of its uid")
        }
        if transport == .udp, losing.contains(where: { sockets[$0].reuseAddress }),
           takes.contains(where: { $0.who == .otherUID && $0.binds.allSatisfy { $0.options.contains("SO_REUSEADDR") } }) {
            fixes.append("clear SO_REUSEADDR, which lets any user's UDP socket share the address")
        }
        let received = Takeover.received(sockets, destinations: destinations)
        return Takeover.Cache.Prediction(takes: takes, losers: losing, destinations: taken, fixes: fixes,
                                         needsOtherFamily: takes.contains { received[$0.destination]?.isEmpty ?? true })
    }

    /// One clause per destination taken: who, and the plainest bind that does it (its own
    /// address, fewest options), with how many binds the rules found in all. `privileged`:
    /// the port is below ip_unprivileged_port_start and its owner is not root.
    static func takeClauses(_ prediction: Takeover.Cache.Prediction, owner: String, privileged: Bool) -> String {
        let named = { (destination: String) in destination == "localhost" ? "\"localhost\"" : destination }
        let example = { (binds: [AuditBind], destination: String) -> String in
            let own = destination == "localhost" ? ["::1", "127.0.0.1"] : [destination]
            let bind = binds.min { (own.contains($0.address) ? 0 : 1, $0.options.count) < (own.contains($1.address) ? 0 : 1, $1.options.count) }!
            return "binding " + (bind.address.contains(":") ? "[\(bind.address)]" : bind.address) + (bind.options.isEmpty ? "" : " with " + bind.options.joined(separator: "+"))
                + (binds.count > 1 ? " (one of \(binds.count) binds)" : "")
        }
        var lines: [String] = []
        for destination in prediction.destinations {
            let same = prediction.takes.first { $0.destination == destination && $0.who == .sameUID }?.binds ?? []
            let other = prediction.takes.first { $0.destination == destination && $0.who == .otherUID }?.binds ?? []
            if !other.isEmpty {
                lines.append("any user could take \(named(destination)) by " + example(other, destination)
                    + (same.count > other.count ? ", and \(owner) with \(same.count - other.count) binds more" : ""))
            } else {
                lines.append(owner + (privileged ? " with CAP_NET_BIND_SERVICE" : "") + " could take \(named(destination)) by " + example(same, destination))
            }
        }
        return lines.joined(separator: "; ")
    }
}

extension Audit.Takeover {
    /// One port's sockets as the rules see them, in the order they were bound (inodes grow as
    /// sockets are made), with their options as read from each socket.
    package static func bounds(_ all: [AuditSocket]) -> [Bound] {
        all.sorted { $0.inode < $1.inode }.enumerated().map { index, socket in
            Bound(address: socket.address, v6only: socket.options?.v6only ?? socket.v6only ?? false,
                  reuseAddress: socket.options?.reuseAddress ?? false, reusePort: socket.options?.reusePort ?? false,
                  uid: socket.uid, order: index, receives: socket.remote == nil)
        }
    }

    /// One bind an attacker of `uid` would try beside a port's sockets, as the rules see it.
    package struct Attempt: Equatable {
        package var bind: AuditBind
        package var binds: Bool
        /// The destinations it would receive that the port answered before it (or their twins).
        package var takes: [String]
        /// The destinations it would share with a SO_REUSEPORT group (by hash).
        package var shared: [String]
        /// The rule that decides, in a sentence.
        package var rule: String
    }

    /// The rules' answer for one bind by `uid` (`bindsService`: it holds CAP_NET_BIND_SERVICE).
    package static func attempt(_ bind: AuditBind, uid: UInt32, bindsService: Bool, beside sockets: [Bound], transport: Transport, port: UInt16,
                                destinations: Destinations, unprivilegedPortStart: UInt16) -> Attempt {
        if port < unprivilegedPortStart && !bindsService {
            return Attempt(bind: bind, binds: false, takes: [], shared: [], rule: "privileged: port \(port) is below ip_unprivileged_port_start (\(unprivilegedPortStart)), "
                + "and uid \(uid) has no CAP_NET_BIND_SERVICE, so bind fails (EACCES) whatever the options")
        }
        let candidate = Bound(address: bind.address, v6only: bind.options.contains("IPV6_V6ONLY"), reuseAddress: bind.options.contains("SO_REUSEADDR"),
                              reusePort: bind.options.contains("SO_REUSEPORT"), uid: uid, order: (sockets.map(\.order).max() ?? 0) + 1)
        guard canBind(candidate, beside: sockets, transport: transport) else {
            let blocker = sockets.first { $0.overlaps(candidate) }
            var why = "a socket whose destinations overlap it is there"
            if let blocker {
                let named = blocker.address.contains(":") ? "[\(blocker.address)]" : blocker.address
                if blocker.reusePort && candidate.reusePort {
                    why = "\(named) has SO_REUSEPORT too, but SO_REUSEPORT shares only within one uid (\(blocker.uid), not \(uid))"
                } else if transport == .tcp && blocker.reuseAddress && candidate.reuseAddress {
                    why = "\(named) listens, and a TCP listener's SO_REUSEADDR lets nobody in"
                } else {
                    why = "\(named) overlaps it, and their options allow no sharing"
                }
            }
            return Attempt(bind: bind, binds: false, takes: [], shared: [], rule: "conflict: " + why + ", so bind fails (EADDRINUSE)")
        }
        let before = received(sockets, destinations: destinations)
        let after = received(sockets + [candidate], destinations: destinations)
        let mine = sockets.count
        var takes: [String] = []
        var shared: [String] = []
        // Rule "taken": the port answered the destination, or the same name's other family.
        let answered = { (destination: String) in
            !(before[destination] ?? []).isEmpty || (destinations.twins[destination] ?? []).contains { !(before[$0] ?? []).isEmpty }
        }
        for destination in destinations.addresses + ["localhost"] where after[destination]?.contains(mine) == true && answered(destination) {
            takes.append(destination)
            if after[destination]!.count > 1 { shared.append(destination) }
        }
        let rule: String
        if takes.isEmpty {
            rule = "no take: it binds, but every destination the port answered still reaches the port's own sockets first"
        } else if !shared.isEmpty {
            rule = "group: it joins a SO_REUSEPORT group of the port's (same uid, same address), which shares the traffic by hash"
        } else if takes.contains(bind.address) || (takes.contains("localhost") && ["::1", "127.0.0.1"].contains(bind.address)) {
            rule = "exact: a socket bound to exactly the destination's address comes before the wildcard"
        } else {
            rule = "family and order: it comes first among the sockets that answer the destination"
        }
        return Attempt(bind: bind, binds: true, takes: takes, shared: shared, rule: rule)
    }

    /// The binds an attacker of `uid` tries against a live server: for each destination the
    /// rules say it could take, the plainest bind that does (its own address, fewest options),
    /// and at least one the rules say fails, where one exists.
    package static func plan(uid: UInt32, bindsService: Bool, beside sockets: [Bound], transport: Transport, port: UInt16,
                             destinations: Destinations, unprivilegedPortStart: UInt16, limit: Int = 4) -> [Attempt] {
        let all = candidates(destinations).map {
            attempt($0, uid: uid, bindsService: bindsService, beside: sockets, transport: transport, port: port,
                    destinations: destinations, unprivilegedPortStart: unprivilegedPortStart)
        }
        var picks: [Attempt] = []
        for destination in destinations.addresses + ["localhost"] {
            let own = destination == "localhost" ? ["::1", "127.0.0.1"] : [destination]
            let rank = { (attempt: Attempt) in (own.contains(attempt.bind.address) ? 0 : 1, attempt.shared.isEmpty ? 0 : 1, attempt.bind.options.count) }
            guard picks.count < limit, let best = all.filter({ $0.takes.contains(destination) }).min(by: { rank($0) < rank($1) }) else { continue }
            if !picks.contains(where: { $0.bind == best.bind }) { picks.append(best) }
        }
        // The boldest bind on the loopback, and one the rules say fails.
        let boldest = all.first { $0.bind == AuditBind(address: "127.0.0.1", options: ["SO_REUSEADDR", "SO_REUSEPORT"]) }
        if let boldest, !picks.contains(boldest) { picks.append(boldest) }
        if !picks.contains(where: { !$0.binds }), let failing = all.first(where: { !$0.binds }) { picks.append(failing) }
        return picks
    }
}
