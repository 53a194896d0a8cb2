import HijackSystem
import CHijackLab
import Glibc

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
        run(port: port, userNames: userNames, source: .sockDiag)
    }

    /// `source` is where to look first: sock_diag, or /proc/net as on a kernel without it
    /// (the tests read the same sockets both ways). `owners` finds each socket's processes
    /// (sorted inodes in, owners at their positions out): a test that compares two reads
    /// narrows it to its own process, since a process that another thread is spawning holds
    /// a copy of every descriptor between its clone and its exec, and is then a real owner.
    package static func run(port: UInt16?, userNames: UserNames, source preferred: AuditReport.Source,
                            owners: ([UInt64]) -> (owners: [[SocketOwner]], complete: Bool) = SocketOwners.find(sorted:)) -> AuditReport {
        var (raw, source, skipped, socketDetails) = read(preferring: preferred)
        if let port { raw.removeAll { $0.local_port != port } }
        // A connected UDP socket matters only where it shares a port that something receives on.
        var receivingUDP = [Bool](repeating: false, count: 65_536)
        for socket in raw where socket.isReceiving && socket.transport == .udp { receivingUDP[Int(socket.local_port)] = true }
        raw.removeAll { !$0.isReceiving && !($0.transport == .udp && $0.remote_port != 0 && receivingUDP[Int($0.local_port)]) }
        receivingUDP = []
        let (sockets, complete) = auditSockets(raw, userNames: userNames, owners: owners)
        raw = []
        // Each process's start time and parents are read once per audit, however many ports it holds.
        let facts = ProcessFacts()
        let context = Context(unprivilegedPortStart: unprivilegedPortStart, ephemeral: ephemeralPorts, ipv6: ipv6Available,
                              related: facts.related, startTime: facts.startTime)
        return AuditReport(namespace: namespace, sockets: sockets, findings: findings(sockets, context: context),
                           ownersComplete: complete, skippedRows: skipped, socketDetails: socketDetails, source: source)
    }

    /// The sockets as the report has them, in the audit's order, with their owners: whether
    /// every owner could be seen. A function of its own, so that its working arrays (a few MB
    /// at 50,000 sockets) are gone before the rules run.
    package static func auditSockets(_ raw: [hl_diag_socket], userNames: UserNames,
                                     owners find: ([UInt64]) -> (owners: [[SocketOwner]], complete: Bool) = SocketOwners.find(sorted:))
        -> (sockets: [AuditSocket], complete: Bool) {
        // Ordered before any AuditSocket exists, by the texts the order compares, so that the
        // sockets are made once, in place, in one array of the right size (50,000 of them
        // are 5 MB, and a second array for the sorted copy would be 5 MB more at the peak).
        var devices: [UInt32: String] = [:]
        let addresses = raw.map(\.localHost)
        let deviceNames = raw.map { entry -> String? in
            entry.bound_device == 0 ? nil : devices[entry.bound_device] ?? {
                let name = SockDiag.deviceName(entry.bound_device)
                devices[entry.bound_device] = name
                return name
            }()
        }
        // AuditSocket.inOrder's order: "tcp" before "udp" as IPPROTO_TCP (6) before IPPROTO_UDP (17).
        let order = raw.indices.sorted { a, b in
            let lhs = raw[a], rhs = raw[b]
            if lhs.protocol != rhs.protocol { return lhs.protocol < rhs.protocol }
            if lhs.local_port != rhs.local_port { return lhs.local_port < rhs.local_port }
            if addresses[a] != addresses[b] { return addresses[a] < addresses[b] }
            if deviceNames[a] != deviceNames[b] { return (deviceNames[a] ?? "") < (deviceNames[b] ?? "") }
            if lhs.uid != rhs.uid { return lhs.uid < rhs.uid }
            return lhs.inode < rhs.inode
        }

        let inodes = raw.map(\.inode).sorted()
        let (owners, complete) = find(inodes)
        let fileNames = userNames == .passwdFile ? passwdNames() : [:]
        var names: [UInt32: String] = [:]
        var sockets: [AuditSocket] = []
        sockets.reserveCapacity(order.count)
        for index in order {
            let entry = raw[index]
            let user = names[entry.uid] ?? {
                let name = userNames == .passwdFile ? fileNames[entry.uid] ?? String(entry.uid) : userName(entry.uid)
                names[entry.uid] = name
                return name
            }()
            let isIPv6 = entry.family == UInt8(AF_INET6)
            var remote: String?
            if !entry.isReceiving {
                remote = isIPv6 ? "[\(entry.remoteHost)]:\(entry.remote_port)" : "\(entry.remoteHost):\(entry.remote_port)"
            }
            sockets.append(AuditSocket(transport: entry.transport, address: addresses[index], port: entry.local_port, uid: entry.uid, user: user,
                                       inode: entry.inode, owners: owners[SocketOwners.position(of: entry.inode, in: inodes)],
                                       v6only: isIPv6 && entry.v6only >= 0 ? entry.v6only != 0 : nil, device: deviceNames[index], remote: remote))
        }
        return (sockets, complete)
    }

    /// The sockets of this network namespace, TCP listeners and UDP sockets in any state:
    /// from sock_diag when the kernel answers it for both transports, otherwise from /proc/net
    /// (with what sock_diag adds for the transport it does answer, as before it was the source).
    package static func read(preferring preferred: AuditReport.Source)
        -> (sockets: [hl_diag_socket], source: AuditReport.Source, skipped: Int, socketDetails: Bool) {
        if preferred == .sockDiag, var sockets = SockDiag.sockets(.tcp, states: SockDiag.listening),
           let udp = SockDiag.sockets(.udp, states: SockDiag.everyState) {
            sockets += udp
            return (sockets, .sockDiag, 0, true)
        }
        var sockets: [hl_diag_socket] = []
        var skipped = 0
        for file in ProcNet.files {
            guard let read = ProcNet.sockets(file.path, transport: file.transport) else { continue }
            // Only what the audit can report: not the TCP connections, which outnumber the rest.
            sockets += read.sockets.lazy.filter { $0.transport == .udp || $0.isReceiving }
            skipped += read.skipped
        }
        let tcpDetails = SockDiag.details(.tcp)
        let udpDetails = SockDiag.details(.udp)
        for index in sockets.indices {
            guard let details = (sockets[index].transport == .tcp ? tcpDetails : udpDetails)?[sockets[index].inode] else { continue }
            sockets[index].v6only = details.v6only.map { $0 ? 1 : 0 } ?? -1
            sockets[index].bound_device = details.boundDevice
        }
        return (sockets, .proc, skipped, tcpDetails != nil && udpDetails != nil)
    }

    /// The calling thread's network namespace, as /proc names it: "net:[4026531840]".
    package static var namespace: String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
            var count = readlink("/proc/thread-self/ns/net", buffer.baseAddress!, buffer.count)
            if count <= 0 { count = readlink("/proc/self/ns/net", buffer.baseAddress!, buffer.count) }
            guard count > 0 else { return "?" }
            return String(decoding: UnsafeRawBufferPointer(start: buffer.baseAddress, count: count), as: UTF8.self)
        }
    }

    /// uid → name from /etc/passwd (`name:password:uid:…`), the first entry for a uid winning
    /// as it does for getpwuid.
    package static func passwdNames(_ text: String? = ProcNet.read("/etc/passwd")) -> [UInt32: String] {
        var names: [UInt32: String] = [:]
        for line in (text ?? "").split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 3, let uid = UInt32(fields[2]), names[uid] == nil, !fields[0].isEmpty else { continue }
            names[uid] = String(fields[0])
        }
        return names
    }

    package static func userName(_ uid: UInt32) -> String {
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
            .flatMap { UInt16($0.trimmed) } ?? 1024
    }

    /// The ports the kernel hands to clients: a bound UDP socket there is most likely one.
    package static var ephemeralPorts: ClosedRange<UInt16> {
        let bounds = ProcNet.read("/proc/sys/net/ipv4/ip_local_port_range")?.split(whereSeparator: \.isWhitespace).compactMap { UInt16($0) } ?? []
        return bounds.count == 2 && bounds[0] <= bounds[1] ? bounds[0]...bounds[1] : 32_768...60_999
    }

    /// Whether ::1 exists here; on a host without IPv6 nobody can bind it.
    package static var ipv6Available: Bool {
        ProcNet.read(ProcNet.net + "if_inet6")?.contains("00000000000000000000000000000001") ?? false
    }
}

extension AuditSocket {
    /// `inOrder`, one field at a time: the same order without building two tuples of
    /// strings for every comparison, which sorting 50,000 sockets makes a million times.
    package static func precedes(_ lhs: AuditSocket, _ rhs: AuditSocket) -> Bool {
        if lhs.transport != rhs.transport { return lhs.transport.rawValue < rhs.transport.rawValue }
        if lhs.port != rhs.port { return lhs.port < rhs.port }
        if lhs.address != rhs.address { return lhs.address < rhs.address }
        if lhs.device != rhs.device { return (lhs.device ?? "") < (rhs.device ?? "") }
        if lhs.uid != rhs.uid { return lhs.uid < rhs.uid }
        return lhs.inode < rhs.inode
    }

    /// Whether the two are one place in `inOrder`'s order, but for the inode.
    package static func tied(_ lhs: AuditSocket, _ rhs: AuditSocket) -> Bool {
        lhs.transport == rhs.transport && lhs.port == rhs.port && lhs.address == rhs.address && (lhs.device ?? "") == (rhs.device ?? "") && lhs.uid == rhs.uid
    }
}

/// What the rules ask about processes, read from /proc once per process and audit.
package final class ProcessFacts {
    private var starts: [Int32: UInt64?] = [:]
    private var chains: [Int32: [Int32]] = [:]

    package func startTime(_ pid: Int32) -> UInt64? {
        if let known = starts[pid] { return known }
        let time = Audit.processStartTime(pid)
        starts[pid] = time
        return time
    }

    package func ancestors(_ pid: Int32) -> [Int32] {
        if let known = chains[pid] { return known }
        let chain = SocketOwners.ancestors(of: pid)
        chains[pid] = chain
        return chain
    }

    package func related(_ one: Int32, _ other: Int32) -> Bool { SocketOwners.related(one, other, ancestors: ancestors) }
}
