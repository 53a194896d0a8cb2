import HijackSystem

/// Which unconnected UDP sockets on a port in ip_local_port_range (`Audit.Context.ephemeral`)
/// count as a service's. Clients' sockets land there too, each for a moment: a resolver's
/// query socket is bound there (or given a port by its first sendto), sends, hears the
/// answer and closes. Such a socket keeps the wildcard address: only bind() gives an
/// unconnected UDP socket an address of its own (an autobind leaves 0.0.0.0 or [::], and
/// disconnecting resets an address that connect() chose), so one bound to 127.0.0.1 or
/// 10.0.0.5 was put there by its process. A wildcard one counts once it has been kept: seen
/// by two audits in a row, which a query's socket, gone within milliseconds, is not, and
/// mosh-server's 60001 is.
///
/// Only the exposure rule ever set ephemeral UDP aside: the others (a shared address, a
/// specific address in front of a wildcard, a connected socket) need a second socket on the
/// same port, where a client's autobind does not go (it picks a port no socket there
/// conflicts with), and they see every socket as before.
public enum EphemeralUDP: Sendable, Equatable {
    /// Those bound to an address other than 0.0.0.0 or [::]: a one-shot audit.
    case bound
    /// Those too that the previous audit saw, by inode: `--watch`.
    case seen(Set<UInt64>)
    /// Every one: `--include-ephemeral`.
    case all

    package func keeps(_ socket: AuditSocket) -> Bool {
        switch self {
        case .bound: !socket.isWildcard
        case .seen(let inodes): !socket.isWildcard || inodes.contains(socket.inode)
        case .all: true
        }
    }
}

extension Audit {
    /// `report`, as `run` made it in this namespace (with `.bound`), with the findings of each
    /// UDP port in the ephemeral range where `policy` keeps more sockets found again under it.
    /// Only those ports are looked at again, so that `--watch` makes no second pass over a
    /// host's sockets. It must see the report before anything else adds findings to it.
    package static func applying(_ policy: EphemeralUDP, to report: AuditReport) -> AuditReport {
        guard policy != .bound else { return report }
        let range = ephemeralPorts
        var ports: Set<UInt16> = []
        for socket in report.sockets where socket.transport == .udp && socket.remote == nil && socket.isWildcard
            && range.contains(socket.port) && policy.keeps(socket) {
            ports.insert(socket.port)
        }
        guard !ports.isEmpty else { return report }
        let facts = ProcessFacts()
        let context = Context(unprivilegedPortStart: unprivilegedPortStart, ephemeral: range, ipv6: ipv6Available,
                              related: facts.related, startTime: facts.startTime, interfaces: interfaceAddresses(), ephemeralUDP: policy)
        let again = findings(report.sockets.filter { $0.transport == .udp && ports.contains($0.port) }, context: context)
        var result = report
        // The rules' findings of those ports give way to the new ones; any other kind stays.
        result.findings.removeAll { $0.transport == .udp && ports.contains($0.port) && $0.kind != .unexpectedOwner }
        // In the rules' order, ports by their text ("udp/10000" before "udp/9000"), each port's
        // findings before any added after the rules.
        let key = { (finding: AuditFinding) in "\(finding.transport.rawValue)/\(finding.port)" }
        var start = 0
        while start < again.count {
            var end = start + 1
            while end < again.count && again[end].port == again[start].port { end += 1 }
            let portKey = key(again[start])
            let index = result.findings.firstIndex { key($0) >= portKey } ?? result.findings.endIndex
            result.findings.insert(contentsOf: again[start..<end], at: index)
            start = end
        }
        return result
    }
}
