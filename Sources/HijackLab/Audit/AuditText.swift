/// The audit for people: an ss-like table of receiving sockets, then one line per finding.
public enum AuditText {
    /// `name(for:)` may replace a pid by a name (the report uses scenario socket ids);
    /// `portText` replaces port numbers (the report writes PORT).
    ///
    /// Process, user and device names come from /proc and the password database, and any
    /// local user can choose them: each cell and each finding line is escaped for the
    /// terminal here, after every substitution, so that `name` returns raw text and no
    /// caller can forget it. The report's findings keep the raw names, for the JSON.
    public static func render(_ report: AuditReport, minimum: AuditFinding.Severity = .info,
                              name: (SocketOwner) -> String = { "\($0.pid)/\($0.command)" },
                              portText: (UInt16) -> String = { String($0) }) -> String {
        let shown = report.findings.filter { $0.severity >= minimum }
        var lines: [String] = []
        let header = ["PROTO", "LOCAL ADDRESS", "PORT", "UID/USER", "PID/COMMAND", "FINDING"]
        var rows: [[String]] = []
        // Index once: a host can hold tens of thousands of sockets and findings.
        var byInode: [UInt64: [AuditFinding]] = [:]
        for finding in shown { for inode in finding.inodes { byInode[inode, default: []].append(finding) } }
        let socketByInode = Dictionary(report.sockets.map { ($0.inode, $0) }, uniquingKeysWith: { first, _ in first })
        // Ties in the audit's order are broken by the owner's name as shown, not by the inode,
        // so a table that names owners stably (the report's socket ids) reads the same every run.
        var ownerNames: [UInt64: String] = [:]
        for socket in report.sockets { ownerNames[socket.inode] = socket.owners.map(name).joined(separator: ",") }
        let shownOwners = { (socket: AuditSocket) -> String in ownerNames[socket.inode] ?? "" }
        let ordered = report.sockets.sorted { lhs, rhs in
            let left = (lhs.transport.rawValue, lhs.port, lhs.address, lhs.device ?? "", lhs.uid)
            let right = (rhs.transport.rawValue, rhs.port, rhs.address, rhs.device ?? "", rhs.uid)
            return left != right ? AuditSocket.inOrder(lhs, rhs) : (shownOwners(lhs), lhs.inode) < (shownOwners(rhs), rhs.inode)
        }
        for socket in ordered {
            let involved = byInode[socket.inode] ?? []
            let finding = involved.isEmpty ? "-" : involved.map { role(of: socket, in: $0) }.joined(separator: ", ")
            let owners = socket.owners.isEmpty ? "?" : socket.owners.map(name).joined(separator: ",")
            let address = socket.address + (socket.device.map { "%\($0)" } ?? "") + (socket.v6only == true ? " v6only" : "")
                + (socket.remote.map { " -> \($0)" } ?? "")
            rows.append([socket.transport.rawValue, address, portText(socket.port), "\(socket.uid)/\(socket.user)", owners, finding]
                .map(UntrustedText.terminal))
        }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        for row in [header] + rows {
            lines.append(row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  "))
        }
        lines.append("")
        if shown.isEmpty {
            lines.append(report.findings.isEmpty ? "No findings." : "No findings at \(minimum.rawValue) or above (\(report.findings.count) below).")
        }
        for finding in shown {
            var text = finding.explanation
            // Only the finding's own sockets can be named in its explanation.
            if portText(finding.port) != String(finding.port) {
                text = text.replacingOccurrences(of: ":\(finding.port)", with: ":\(portText(finding.port))")
                    .replacingOccurrences(of: "port \(finding.port)", with: "port \(portText(finding.port))")
            }
            for owner in finding.inodes.compactMap({ socketByInode[$0] }).flatMap(\.owners) {
                text = text.replacingOccurrences(of: "pid \(owner.pid)/\(owner.command)", with: name(owner))
            }
            lines.append("[\(finding.severity.rawValue)] \(finding.kind.rawValue) \(finding.transport.rawValue)/\(portText(finding.port)): \(UntrustedText.terminal(text))")
        }
        if !report.ownersComplete {
            lines.append("Some owners are shown as ?: their processes belong to other users. Root sees more.")
        } else if report.sockets.contains(where: { $0.owners.isEmpty }) {
            lines.append("Some owners are shown as ?: no process visible here holds them (one in another PID namespace, or one that just closed them).")
        }
        if !report.socketDetails {
            lines.append("This kernel gave no sock_diag answer: IPV6_V6ONLY and bound devices are unknown, and a lone [::] is read as dual-stack.")
        }
        if report.skippedRows > 0 { lines.append("\(report.skippedRows) rows of /proc/net could not be read and were skipped.") }
        return lines.joined(separator: "\n")
    }

    /// What this socket is in the finding: the one that takes traffic, or the one that loses it.
    static func role(of socket: AuditSocket, in finding: AuditFinding) -> String {
        switch finding.kind {
        case .interception, .shadowing:
            return finding.inodes.first == socket.inode ? "\(finding.kind.rawValue) (takes)" : "\(finding.kind.rawValue) (loses)"
        case .loadBalancing, .exposure:
            return finding.kind.rawValue
        }
    }
}
