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

    /// Audits the current network namespace, optionally only one port. `options`: read each
    /// socket's options from the socket itself, where its owner may be inspected.
    public static func run(port: UInt16? = nil, userNames: UserNames = .system, options: Bool = true) -> AuditReport {
        run(port: port, userNames: userNames, source: .sockDiag, options: options)
    }

    /// Finds owners (and with `true`, options) of sorted inodes, given each one's address
    /// family: `SocketOwners.scan`, or a test's narrower one.
    package typealias OwnerScan = (_ inodes: [UInt64], _ options: Bool, _ families: [UInt8]) -> SocketOwners.Scan

    /// `source` is where to look first: sock_diag, or /proc/net as on a kernel without it
    /// (the tests read the same sockets both ways). `owners` finds each socket's processes
    /// (sorted inodes in, owners at their positions out): a test that compares two reads
    /// narrows it to its own process, since a process that another thread is spawning holds
    /// a copy of every descriptor between its clone and its exec, and is then a real owner.
    package static func run(port: UInt16?, userNames: UserNames, source preferred: AuditReport.Source, options: Bool = true,
                            owners: OwnerScan = SocketOwners.scan(sorted:readingOptions:families:)) -> AuditReport {
        var (raw, source, skipped, socketDetails) = read(preferring: preferred)
        if let port { raw.removeAll { $0.local_port != port } }
        // A connected UDP socket matters only where it shares a port that something receives on.
        var receivingUDP = [Bool](repeating: false, count: 65_536)
        for socket in raw where socket.isReceiving && socket.transport == .udp { receivingUDP[Int(socket.local_port)] = true }
        raw.removeAll { !$0.isReceiving && !($0.transport == .udp && $0.remote_port != 0 && receivingUDP[Int($0.local_port)]) }
        receivingUDP = []
        let (sockets, complete) = auditSockets(raw, userNames: userNames, options: options, owners: owners)
        raw = []
        // Each process's start time and parents are read once per audit, however many ports it holds.
        let (unprivileged, ephemeral, ipv6, interfaces) = (unprivilegedPortStart, ephemeralPorts, ipv6Available, interfaceAddresses())
        let make = { @Sendable () -> Context in
            let facts = ProcessFacts()
            return Context(unprivilegedPortStart: unprivileged, ephemeral: ephemeral, ipv6: ipv6,
                           related: facts.related, startTime: facts.startTime, interfaces: interfaces)
        }
        var context = make()
        context.anotherThread = make
        return AuditReport(namespace: namespace, sockets: sockets, findings: findings(sockets, context: context),
                           ownersComplete: complete, skippedRows: skipped, socketDetails: socketDetails, source: source)
    }

    /// The sockets as the report has them, in the audit's order, with their owners: whether
    /// every owner could be seen. A function of its own, so that its working arrays (a few MB
    /// at 50,000 sockets) are gone before the rules run.
    package static func auditSockets(_ raw: [hl_diag_socket], userNames: UserNames, options readingOptions: Bool = true,
                                     owners find: OwnerScan = SocketOwners.scan(sorted:readingOptions:families:))
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
            if addresses[a] != addresses[b] { return AuditSocket.textPrecedes(addresses[a], addresses[b]) }
            if deviceNames[a] != deviceNames[b] { return (deviceNames[a] ?? "") < (deviceNames[b] ?? "") }
            if lhs.uid != rhs.uid { return lhs.uid < rhs.uid }
            return lhs.inode < rhs.inode
        }

        let byInode = raw.indices.sorted { raw[$0].inode < raw[$1].inode }
        let inodes = byInode.map { raw[$0].inode }
        let scan = find(inodes, readingOptions, byInode.map { raw[$0].family })
        let owners = scan.owners
        let complete = scan.complete
        let me = geteuid()
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
            let position = SocketOwners.position(of: entry.inode, in: inodes)
            sockets.append(AuditSocket(transport: entry.transport, address: addresses[index], port: entry.local_port, uid: entry.uid, user: user,
                                       inode: entry.inode, owners: owners[position],
                                       v6only: isIPv6 && entry.v6only >= 0 ? entry.v6only != 0 : nil, device: deviceNames[index], remote: remote,
                                       options: scan.options.isEmpty ? nil : SocketOptions(scan.options[position], uid: entry.uid, seen: !owners[position].isEmpty, auditor: me)))
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
    package static func passwdNames(_ text: String? = ProcNet.read(PasswdFile.path)) -> [UInt32: String] {
        var names: [UInt32: String] = [:]
        for account in PasswdFile.accounts(text ?? "") where names[account.uid] == nil { names[account.uid] = account.name }
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

    /// Each interface's addresses but the loopback's: IPv4, and IPv6 other than link-local
    /// (fe80::/10, which needs a scope), by interface in the order getifaddrs lists them.
    package static func interfaceAddresses() -> [[String]] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var names: [String] = []
        var addresses: [String: [String]] = [:]
        var entry = list
        while let current = entry {
            defer { entry = current.pointee.ifa_next }
            guard let address = current.pointee.ifa_addr, current.pointee.ifa_flags & UInt32(IFF_LOOPBACK) == 0 else { continue }
            var socket = hl_diag_socket()
            switch Int32(address.pointee.sa_family) {
            case AF_INET:
                address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { v4 in
                    withUnsafeBytes(of: v4.pointee.sin_addr) { bytes in withUnsafeMutableBytes(of: &socket.local) { $0.copyMemory(from: bytes) } }
                }
                socket.family = UInt8(AF_INET)
            case AF_INET6:
                let linkLocal = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6 in
                    withUnsafeBytes(of: v6.pointee.sin6_addr) { bytes in
                        withUnsafeMutableBytes(of: &socket.local) { $0.copyMemory(from: bytes) }
                        return bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80
                    }
                }
                if linkLocal { continue }
                socket.family = UInt8(AF_INET6)
            default:
                continue
            }
            let name = String(cString: current.pointee.ifa_name)
            if addresses[name] == nil { names.append(name) }
            addresses[name, default: []].append(socket.localHost)
        }
        return names.map { addresses[$0]! }
    }

    /// Whether ::1 exists here; on a host without IPv6 nobody can bind it.
    package static var ipv6Available: Bool {
        ProcNet.read(ProcNet.net + "if_inet6")?.contains("00000000000000000000000000000001") ?? false
    }
}

extension SocketOptions {
    /// What one read found: the options, or why there are none. `seen`: whether any process
    /// was found holding the socket; `auditor`: the uid reading.
    package init(_ read: hl_socket_options, uid: UInt32, seen: Bool, auditor: uid_t) {
        let access = "needs root or uid \(uid)"
        switch read.state {
        case 1:
            var device = read.device
            let name = withUnsafeBytes(of: &device) { bytes in String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self) }
            self.init(reuseAddress: read.reuse_address != 0, reusePort: read.reuse_port != 0, v6only: read.v6only < 0 ? nil : read.v6only != 0,
                      device: name.isEmpty ? nil : name, type: Self.typeName(read.type), protocol: Self.protocolName(read.protocol))
        case 0:
            // No holder seen: another user's process (its descriptors are closed to us), or one
            // in another PID namespace, or one that closed the socket as /proc was read.
            self.init(unknown: !seen && auditor != 0 && uid != auditor ? access : "no process seen here holds it")
        case -EPERM, -EACCES:
            self.init(unknown: auditor == 0 ? "pidfd_getfd refused even as root (EPERM: a security module or a user namespace)" : access)
        case -ENOSYS:
            self.init(unknown: "pidfd_getfd needs Linux 5.6")
        case -ESRCH, -EBADF:
            self.init(unknown: "its process closed it while it was read")
        default:
            self.init(unknown: "could not be read (\(String(cString: hl_errno_name(-read.state))))")
        }
    }

    package static func typeName(_ type: Int32) -> String {
        switch type {
        case Int32(SOCK_STREAM.rawValue): "SOCK_STREAM"
        case Int32(SOCK_DGRAM.rawValue): "SOCK_DGRAM"
        case Int32(SOCK_RAW.rawValue): "SOCK_RAW"
        case Int32(SOCK_SEQPACKET.rawValue): "SOCK_SEQPACKET"
        default: String(type)
        }
    }

    package static func protocolName(_ number: Int32) -> String {
        switch number {
        case Int32(IPPROTO_TCP): "IPPROTO_TCP"
        case Int32(IPPROTO_UDP): "IPPROTO_UDP"
        case Int32(IPPROTO_UDPLITE): "IPPROTO_UDPLITE"
        case 262: "IPPROTO_MPTCP"
        default: String(number)
        }
    }

    /// The options as the table shows them, in ss's style: "reuseaddr,reuseport,v6only,dev:lo",
    /// "-" for none, or "unknown (…)".
    package var compact: String {
        if let unknown { return "unknown (\(unknown))" }
        // Appended in place, not joined from an array: the table asks this of every socket.
        var text = ""
        func add(_ word: String) { text += text.isEmpty ? word : "," + word }
        if reuseAddress == true { add("reuseaddr") }
        if reusePort == true { add("reuseport") }
        if v6only == true { add("v6only") }
        if let device { add("dev:" + device) }
        return text.isEmpty ? "-" : text
    }
}

extension AuditSocket {
    /// `inOrder`, one field at a time: the same order without building two tuples of
    /// strings for every comparison, which sorting 50,000 sockets makes a million times.
    package static func precedes(_ lhs: AuditSocket, _ rhs: AuditSocket) -> Bool {
        if lhs.transport != rhs.transport { return lhs.transport.rawValue < rhs.transport.rawValue }
        if lhs.port != rhs.port { return lhs.port < rhs.port }
        if lhs.address != rhs.address { return textPrecedes(lhs.address, rhs.address) }
        if lhs.device != rhs.device { return (lhs.device ?? "") < (rhs.device ?? "") }
        if lhs.uid != rhs.uid { return lhs.uid < rhs.uid }
        return lhs.inode < rhs.inode
    }

    /// `lhs < rhs`, by bytes where both are ASCII (every address inet_ntop writes): there the
    /// standard library's order, by Unicode scalars, is the bytes' order, found without it.
    package static func textPrecedes(_ lhs: String, _ rhs: String) -> Bool {
        let bytes: Bool?? = lhs.utf8.withContiguousStorageIfAvailable { left -> Bool? in
            let inner: Bool?? = rhs.utf8.withContiguousStorageIfAvailable { right -> Bool? in
                guard left.allSatisfy({ $0 < 0x80 }) && right.allSatisfy({ $0 < 0x80 }) else { return nil }
                return left.lexicographicallyPrecedes(right)
            }
            return inner ?? nil
        }
        return (bytes ?? nil) ?? (lhs < rhs)
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
