import Foundation
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
                              related: SocketOwners.related, lineage: SocketOwners.lineage, startTime: processStartTime)
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
}
