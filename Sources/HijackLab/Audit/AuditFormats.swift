import HijackSystem

/// The audit in the formats fleets already collect: node_exporter's textfile collector
/// (Prometheus text exposition format) and JSON lines for log pipelines.
public enum AuditFormats {
    /// Version of the JSON documents (`--format json`, `--json`). It grows when a field changes
    /// meaning or goes away; a new field alone does not change it.
    public static let schemaVersion = 1

    /// Every namespace's audit (`--all-netns`), as JSONEncoder wrote FleetDocument with the CLI's
    /// one JSON style: pretty, keys sorted.
    public static func fleetJSON(_ audits: [NamespaceAudit], unreadableProcesses: Int) -> [UInt8] {
        JSONWriter.bytes { out in
            out.object(level: 0) { out in
                out.key("namespaces", first: true, level: 1)
                out.array(audits, level: 1) { out, audit in
                    out.object(level: 2) { out in
                        var first = true
                        if let error = audit.error {
                            out.key("error", first: true, level: 3)
                            out.string(error)
                            first = false
                        }
                        out.key("netns", first: first, level: 3)
                        write(audit.netns, level: 3, into: &out)
                        if let report = audit.report {
                            out.key("report", level: 3)
                            AuditJSON.write(report, base: 3, into: &out)
                        }
                    }
                }
                out.key("schemaVersion", level: 1)
                out.number(schemaVersion)
                out.key("unreadableProcesses", level: 1)
                out.number(unreadableProcesses)
            }
        }
    }

    /// A NetworkNamespace's keys, sorted: command, container, current, inode, names, path, pid.
    static func write(_ netns: NetworkNamespace, level: Int, into out: inout JSONWriter) {
        out.object(level: level) { out in
            var first = true
            if let command = netns.command {
                out.key("command", first: true, level: level + 1)
                out.string(command)
                first = false
            }
            if let container = netns.container {
                out.key("container", first: first, level: level + 1)
                out.object(level: level + 1) { out in
                    out.key("id", first: true, level: level + 2)
                    out.string(container.id)
                    if let pod = container.pod {
                        out.key("pod", level: level + 2)
                        out.string(pod)
                    }
                    out.key("runtime", level: level + 2)
                    out.string(container.runtime)
                }
                first = false
            }
            out.key("current", first: first, level: level + 1)
            out.bool(netns.current)
            out.key("inode", level: level + 1)
            out.number(netns.inode)
            out.key("names", level: level + 1)
            out.array(netns.names, level: level + 1) { out, name in out.string(name) }
            out.key("path", level: level + 1)
            out.string(netns.path)
            if let pid = netns.pid {
                out.key("pid", level: level + 1)
                out.number(pid)
            }
        }
    }

    /// Every namespace's audit (`--all-netns`): the document `fleetJSON` writes, for readers.
    public struct FleetDocument: Codable {
        public var schemaVersion = AuditFormats.schemaVersion
        public var namespaces: [NamespaceAudit]
        /// Processes whose namespace could not be read (other users', when not root).
        public var unreadableProcesses: Int

        public init(namespaces: [NamespaceAudit], unreadableProcesses: Int) {
            self.namespaces = namespaces
            self.unreadableProcesses = unreadableProcesses
        }
    }

    // MARK: Prometheus

    /// A label value as the exposition format wants it: backslash, double quote and newline
    /// escaped. Other control characters are legal there, but `cat` would replay an ESC and a
    /// text-mode reader splits at CR: they become the text `\x1b`, whose backslash the format
    /// then escapes like any other.
    public static func labelValue(_ text: String) -> String {
        var escaped = ""
        for character in text.unicodeScalars {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            case _ where character.value < 0x20 || (0x7f...0x9f).contains(character.value):
                let hex = String(character.value, radix: 16)
                escaped += "\\\\x" + (hex.count == 1 ? "0" : "") + hex
            default: escaped.unicodeScalars.append(character)
            }
        }
        return escaped
    }

    /// node_exporter textfile-collector metrics: gauges, no timestamps (the collector refuses
    /// them), every series of a family together under its HELP and TYPE.
    package static func prometheus(_ audits: [NamespaceAudit], unreadableProcesses: Int = 0, duration: Double, timestamp: WallTime) -> String {
        var lines: [String] = []
        func family(_ name: String, _ help: String, _ samples: [(labels: [(String, String)], value: String)]) {
            lines.append("# HELP \(name) \(help)")
            lines.append("# TYPE \(name) gauge")
            for sample in samples {
                let labels = sample.labels.map { "\($0.0)=\"\(labelValue($0.1))\"" }.joined(separator: ",")
                lines.append(name + (labels.isEmpty ? "" : "{\(labels)}") + " " + sample.value)
            }
        }
        var findings: [[String]: Int] = [:]
        for audit in audits {
            for finding in audit.report?.findings ?? [] {
                findings[[finding.kind.rawValue, finding.severity.rawValue, String(finding.port), String(audit.netns.inode)], default: 0] += 1
            }
        }
        let findingSamples = findings.keys.sorted { $0.lexicographicallyPrecedes($1) }.map { key in
            (labels: zip(["kind", "severity", "port", "netns"], key).map { ($0, $1) }, value: String(findings[key]!))
        }
        family("hijack_lab_findings", "Findings of the last audit by kind, severity, port and network namespace (inode); a series is absent when its count is 0.",
               findingSamples)
        family("hijack_lab_listeners", "Receiving sockets (TCP listeners, bound UDP sockets) per network namespace (inode).",
               audits.compactMap { audit in
                   audit.report.map { ([("netns", String(audit.netns.inode))], String($0.sockets.filter { $0.remote == nil }.count)) }
               })
        family("hijack_lab_netns_audited", "1 when the network namespace was audited, 0 when it could not be entered or read.",
               audits.map { ([("netns", String($0.netns.inode))], $0.report == nil ? "0" : "1") })
        family("hijack_lab_netns_info", "What a network namespace (inode) is: its names under /run/netns, a process that holds it, its container.",
               audits.map { audit in
                   let netns = audit.netns
                   return ([("netns", String(netns.inode)), ("name", netns.names.joined(separator: ",")),
                            ("pid", netns.pid.map(String.init) ?? ""), ("command", netns.command ?? ""),
                            ("container", netns.container?.text ?? ""), ("current", netns.current ? "true" : "false")], "1")
               })
        family("hijack_lab_unreadable_processes", "Processes whose network namespace could not be read (other users', when not root).",
               [([], String(unreadableProcesses))])
        family("hijack_lab_audit_duration_seconds", "How long the last audit took, every namespace together.", [([], number(duration))])
        family("hijack_lab_audit_timestamp_seconds", "When the last audit ended, in seconds since the Unix epoch.",
               [([], number(timestamp.secondsSince1970))])
        return lines.joined(separator: "\n") + "\n"
    }

    /// A sample value: plain decimal, never Swift's exponent form for small durations.
    package static func number(_ value: Double) -> String {
        fixedPoint(value, decimals: 6)
    }

    // MARK: JSON lines

    /// One complete JSON object per finding, per line; nothing for a namespace without findings.
    /// The keys, sorted: destinations, evidence, explanation, fix, kind, netns, owners (each:
    /// inode, processes, socket, uid, user), port, severity, timestamp, transport; evidence and
    /// fix only where the finding has them.
    package static func jsonLines(_ audits: [NamespaceAudit], minimum: AuditFinding.Severity = .info, timestamp: WallTime) -> String {
        let time = timestamp.rfc3339
        var text: [UInt8] = []
        for audit in audits {
            guard let report = audit.report else { continue }
            let sockets = Dictionary(report.sockets.map { ($0.inode, $0) }, uniquingKeysWith: { first, _ in first })
            for finding in report.findings where finding.severity >= minimum {
                // Compact, one object per line: a line break inside would split a record.
                text += JSONWriter.bytes(pretty: false) { out in
                    out.object(level: 0) { out in
                        out.key("destinations", first: true, level: 1)
                        out.array(finding.destinations, level: 1) { out, destination in out.string(destination) }
                        if let evidence = finding.evidence {
                            out.key("evidence", level: 1)
                            out.string(evidence)
                        }
                        out.key("explanation", level: 1)
                        out.string(finding.explanation)
                        if let fix = finding.fix {
                            out.key("fix", level: 1)
                            out.string(fix)
                        }
                        out.key("kind", level: 1)
                        out.string(finding.kind.rawValue)
                        out.key("netns", level: 1)
                        write(audit.netns, level: 1, into: &out)
                        out.key("owners", level: 1)
                        out.array(finding.inodes.compactMap { sockets[$0] }, level: 1) { out, socket in
                            out.object(level: 2) { out in
                                out.key("inode", first: true, level: 3)
                                out.number(socket.inode)
                                out.key("processes", level: 3)
                                out.array(socket.owners, level: 3) { out, owner in AuditJSON.write(owner, level: 4, into: &out) }
                                out.key("socket", level: 3)
                                out.string(socket.label + (socket.remote.map { " -> \($0)" } ?? ""))
                                out.key("uid", level: 3)
                                out.number(socket.uid)
                                out.key("user", level: 3)
                                out.string(socket.user)
                            }
                        }
                        out.key("port", level: 1)
                        out.number(finding.port)
                        out.key("severity", level: 1)
                        out.string(finding.severity.rawValue)
                        out.key("timestamp", level: 1)
                        out.string(time)
                        out.key("transport", level: 1)
                        out.string(finding.transport.rawValue)
                    }
                }
                text.append(0x0a)
            }
        }
        return String(decoding: text, as: UTF8.self)
    }
}
