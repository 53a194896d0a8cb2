import HijackSystem

/// The audit's JSON, written by hand: the very bytes that JSONEncoder writes for an
/// AuditReport with [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] (the CLI's one JSON
/// style), without its cost, which at 50,000 sockets is most of the audit's time and memory.
/// A test holds it to JSONEncoder's output, and to the properties each type has.
public enum AuditJSON {
    /// The keys written for each type, in order. They are the stored properties, sorted by
    /// their UTF-8 bytes as .sortedKeys sorts them; an optional one is left out when nil.
    package static let reportKeys = ["findings", "namespace", "ownersComplete", "skippedRows", "socketDetails", "sockets", "source"]
    package static let socketKeys = ["address", "device", "inode", "options", "owners", "port", "remote", "transport", "uid", "user", "v6only"]
    package static let ownerKeys = ["command", "pid"]
    package static let findingKeys = ["destinations", "evidence", "explanation", "fix", "inodes", "kind", "likelyIntruder", "port", "severity", "takes", "transport"]
    package static let optionsKeys = ["device", "protocol", "reuseAddress", "reusePort", "type", "unknown", "v6only"]
    package static let takeKeys = ["binds", "destination", "who"]
    package static let bindKeys = ["address", "options"]

    /// The whole document, without a final newline (as JSONEncoder writes it).
    /// `schemaVersion`, when given, is the `--format json` document's extra key, in its sorted place.
    public static func encode(_ report: AuditReport, schemaVersion: Int? = nil) -> [UInt8] {
        var document: [UInt8] = []
        write(report, schemaVersion: schemaVersion) { document += $0 }
        return document
    }

    /// The same bytes, handed to `emit` in pieces of about 64 KB, so that a caller can stream
    /// them to a file instead of holding tens of MB.
    public static func write(_ report: AuditReport, schemaVersion: Int? = nil, to emit: (UnsafeRawBufferPointer) -> Void) {
        withoutActuallyEscaping(emit) { emit in
            var out = JSONWriter(emit: emit)
            write(report, schemaVersion: schemaVersion, base: 0, into: &out)
            out.flush()
        }
    }

    /// A SocketOwner's keys, sorted: command, pid. The report's owners and jsonl's processes.
    package static func write(_ owner: SocketOwner, level: Int, into out: inout JSONWriter) {
        out.object(level: level) { out in
            out.key("command", first: true, level: level + 1)
            out.string(owner.command)
            out.key("pid", level: level + 1)
            out.number(owner.pid)
        }
    }

    /// SocketOptions' keys, sorted, each left out when nil.
    package static func write(_ options: SocketOptions, level: Int, into out: inout JSONWriter) {
        out.object(level: level) { out in
            var first = true
            func key(_ name: StaticString) {
                out.key(name, first: first, level: level + 1)
                first = false
            }
            if let device = options.device { key("device"); out.string(device) }
            if let value = options.protocol { key("protocol"); out.string(value) }
            if let value = options.reuseAddress { key("reuseAddress"); out.bool(value) }
            if let value = options.reusePort { key("reusePort"); out.bool(value) }
            if let value = options.type { key("type"); out.string(value) }
            if let value = options.unknown { key("unknown"); out.string(value) }
            if let value = options.v6only { key("v6only"); out.bool(value) }
        }
    }

    /// An AuditTake's keys, sorted: binds, destination, who.
    package static func write(_ take: AuditTake, level: Int, into out: inout JSONWriter) {
        out.object(level: level) { out in
            out.key("binds", first: true, level: level + 1)
            out.array(take.binds, level: level + 1) { out, bind in
                out.object(level: level + 2) { out in
                    out.key("address", first: true, level: level + 3)
                    out.string(bind.address)
                    out.key("options", level: level + 3)
                    out.array(bind.options, level: level + 3) { out, option in out.string(option) }
                }
            }
            out.key("destination", level: level + 1)
            out.string(take.destination)
            out.key("who", level: level + 1)
            out.string(take.who.rawValue)
        }
    }

    /// The report as one value inside a larger document, its braces at nesting level `base`.
    package static func write(_ report: AuditReport, schemaVersion: Int? = nil, base: Int, into out: inout JSONWriter) {
        out.object(level: base) { out in
            out.key("findings", first: true, level: base + 1)
            out.array(report.findings, level: base + 1) { out, finding in
                out.object(level: base + 2) { out in
                    out.key("destinations", first: true, level: base + 3)
                    out.array(finding.destinations, level: base + 3) { out, destination in out.string(destination) }
                    if let evidence = finding.evidence {
                        out.key("evidence", level: base + 3)
                        out.string(evidence)
                    }
                    out.key("explanation", level: base + 3)
                    out.string(finding.explanation)
                    if let fix = finding.fix {
                        out.key("fix", level: base + 3)
                        out.string(fix)
                    }
                    out.key("inodes", level: base + 3)
                    out.array(finding.inodes, level: base + 3) { out, inode in out.number(inode) }
                    out.key("kind", level: base + 3)
                    out.string(finding.kind.rawValue)
                    if let intruder = finding.likelyIntruder {
                        out.key("likelyIntruder", level: base + 3)
                        out.number(intruder)
                    }
                    out.key("port", level: base + 3)
                    out.number(finding.port)
                    out.key("severity", level: base + 3)
                    out.string(finding.severity.rawValue)
                    if let takes = finding.takes {
                        out.key("takes", level: base + 3)
                        out.array(takes, level: base + 3) { out, take in write(take, level: base + 4, into: &out) }
                    }
                    out.key("transport", level: base + 3)
                    out.string(finding.transport.rawValue)
                }
            }
            out.key("namespace", level: base + 1)
            out.string(report.namespace)
            out.key("ownersComplete", level: base + 1)
            out.bool(report.ownersComplete)
            if let schemaVersion {
                out.key("schemaVersion", level: base + 1)
                out.number(schemaVersion)
            }
            out.key("skippedRows", level: base + 1)
            out.number(report.skippedRows)
            out.key("socketDetails", level: base + 1)
            out.bool(report.socketDetails)
            out.key("sockets", level: base + 1)
            out.array(report.sockets, level: base + 1) { out, socket in
                out.object(level: base + 2) { out in
                    out.key("address", first: true, level: base + 3)
                    out.string(socket.address)
                    if let device = socket.device {
                        out.key("device", level: base + 3)
                        out.string(device)
                    }
                    out.key("inode", level: base + 3)
                    out.number(socket.inode)
                    if let options = socket.options {
                        out.key("options", level: base + 3)
                        write(options, level: base + 3, into: &out)
                    }
                    out.key("owners", level: base + 3)
                    out.array(socket.owners, level: base + 3) { out, owner in write(owner, level: base + 4, into: &out) }
                    out.key("port", level: base + 3)
                    out.number(socket.port)
                    if let remote = socket.remote {
                        out.key("remote", level: base + 3)
                        out.string(remote)
                    }
                    out.key("transport", level: base + 3)
                    out.string(socket.transport.rawValue)
                    out.key("uid", level: base + 3)
                    out.number(socket.uid)
                    out.key("user", level: base + 3)
                    out.string(socket.user)
                    if let v6only = socket.v6only {
                        out.key("v6only", level: base + 3)
                        out.bool(v6only)
                    }
                }
            }
            if let source = report.source {
                out.key("source", level: base + 1)
                out.string(source.rawValue)
            }
        }
    }
}
