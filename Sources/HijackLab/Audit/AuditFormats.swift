import HijackSystem
import Foundation

/// The audit in the formats fleets already collect: node_exporter's textfile collector
/// (Prometheus text exposition format) and JSON lines for log pipelines.
public enum AuditFormats {
    /// Version of the JSON documents (`--format json`, `--json`). It grows when a field changes
    /// meaning or goes away; a new field alone does not change it.
    public static let schemaVersion = 1

    /// One audit of one namespace, as the JSON has always been (AuditReport), plus its version.
    public struct SingleDocument: Encodable {
        public var report: AuditReport

        public init(_ report: AuditReport) { self.report = report }

        private enum Keys: String, CodingKey { case schemaVersion }

        public func encode(to encoder: Encoder) throws {
            // The report's own keys and the version side by side, in one object.
            try report.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(AuditFormats.schemaVersion, forKey: .schemaVersion)
        }
    }

    /// Every namespace's audit (`--all-netns`).
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

    /// A label value as the exposition format wants it: backslash, double quote and newline escaped.
    public static func labelValue(_ text: String) -> String {
        var escaped = ""
        for character in text.unicodeScalars {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.unicodeScalars.append(character)
            }
        }
        return escaped
    }

    /// node_exporter textfile-collector metrics: gauges, no timestamps (the collector refuses
    /// them), every series of a family together under its HELP and TYPE.
    public static func prometheus(_ audits: [NamespaceAudit], unreadableProcesses: Int = 0, duration: Double, timestamp: Date) -> String {
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
               [([], number(timestamp.timeIntervalSince1970))])
        return lines.joined(separator: "\n") + "\n"
    }

    /// A sample value: plain decimal, never Swift's exponent form for small durations.
    package static func number(_ value: Double) -> String {
        String(format: "%.6f", value)
    }

    // MARK: JSON lines

    /// One finding as a log pipeline reads it: everything on one line, nothing to join.
    public struct FindingLine: Encodable {
        public struct Owner: Encodable {
            public var socket: String
            public var inode: UInt64
            public var uid: UInt32
            public var user: String
            public var processes: [SocketOwner]
        }

        public var timestamp: String
        public var netns: NetworkNamespace
        public var kind: AuditFinding.Kind
        public var severity: AuditFinding.Severity
        public var transport: Transport
        public var port: UInt16
        public var destinations: [String]
        public var explanation: String
        /// The sockets involved, taker first where there is one, each with its processes.
        public var owners: [Owner]
    }

    /// One complete JSON object per finding, per line; nothing for a namespace without findings.
    public static func jsonLines(_ audits: [NamespaceAudit], minimum: AuditFinding.Severity = .info, timestamp: Date) -> String {
        let encoder = JSONEncoder()
        // Compact, one object per line: a line break inside would split a record.
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let time = timestampText(timestamp)
        var text = ""
        for audit in audits {
            guard let report = audit.report else { continue }
            let sockets = Dictionary(report.sockets.map { ($0.inode, $0) }, uniquingKeysWith: { first, _ in first })
            for finding in report.findings where finding.severity >= minimum {
                let owners = finding.inodes.compactMap { sockets[$0] }.map {
                    FindingLine.Owner(socket: $0.label + ($0.remote.map { " -> \($0)" } ?? ""), inode: $0.inode, uid: $0.uid, user: $0.user, processes: $0.owners)
                }
                let line = FindingLine(timestamp: time, netns: audit.netns, kind: finding.kind, severity: finding.severity, transport: finding.transport,
                                       port: finding.port, destinations: finding.destinations, explanation: finding.explanation, owners: owners)
                // Plain structs of strings and numbers: encoding cannot fail.
                if let data = try? encoder.encode(line) { text += String(decoding: data, as: UTF8.self) + "\n" }
            }
        }
        return text
    }

    /// RFC 3339 in UTC with milliseconds: `2025-06-01T12:00:00.123Z`.
    public static func timestampText(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }
}
