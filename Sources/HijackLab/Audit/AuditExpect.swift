import HijackSystem
import Glibc

/// Who should own a port (`audit --expect`, issue 21): the entries, read from a file or from
/// the command line, and the rule that holds the audit's sockets to them.
///
/// An entry is `PORT=OWNER|OWNER…`:
///
///     PORT   tcp/N or udp/N; a bare N is both transports
///     OWNER  uid:N              the socket's uid
///            user:NAME          the socket's user, by name (or the uid the name has here)
///            command:NAME       a process holding it, by /proc/PID/comm (at most 15 bytes)
///            unit:NAME.service  a process holding it, by the systemd unit its cgroup names
///                               (.service, .scope, .socket, .mount or .swap)
///            a bare number is a uid, a bare word a user name (as chown reads them)
///
/// On the command line entries are separated by commas; a file holds one or more per line,
/// with `#` comments and blank lines. The owners of one port, whether in one entry or in
/// several, are alternatives: a socket owned by any of them is expected. Spaces may stand
/// around `=`, `|` and `,`, never inside a port or a name.
public struct AuditExpectations: Sendable, Equatable {
    /// One owner a port may have.
    public struct Owner: Sendable, Equatable, Hashable {
        public enum Kind: String, Sendable, CaseIterable {
            case uid, user, command, unit
        }

        public var kind: Kind
        /// The uid in decimal, the user, command or unit name.
        public var name: String

        public init(_ kind: Kind, _ name: String) {
            self.kind = kind
            self.name = name
        }

        /// `uid 33`, `command nginx`: as explanations name it.
        public var text: String { "\(kind.rawValue) \(name)" }
        /// Whether checking it needs the socket's processes (not only its uid).
        public var needsProcess: Bool { kind == .command || kind == .unit }
    }

    /// A transport and port: `tcp/8080`.
    public struct Port: Sendable, Equatable, Hashable {
        public var transport: Transport
        public var port: UInt16

        public init(_ transport: Transport, _ port: UInt16) {
            self.transport = transport
            self.port = port
        }

        public var text: String { "\(transport.rawValue)/\(port)" }
    }

    /// What one port may be owned by, and where that was said.
    public struct Expectation: Sendable, Equatable {
        public var owners: [Owner] = []
        /// `web.expect line 3`, `--expect`: for the explanation, so a reader finds the entry.
        public var places: [String] = []
    }

    public private(set) var ports: [Port: Expectation] = [:]

    public init() {}

    public var isEmpty: Bool { ports.isEmpty }

    /// Adds owners for a port; an owner or a place already there is not repeated.
    public mutating func expect(_ owners: [Owner], on port: Port, place: String) {
        var expectation = ports[port] ?? Expectation()
        for owner in owners where !expectation.owners.contains(owner) { expectation.owners.append(owner) }
        if !expectation.places.contains(place) { expectation.places.append(place) }
        ports[port] = expectation
    }

    /// Both sets of expectations: for a port in both, the owners of either.
    public mutating func merge(_ other: AuditExpectations) {
        for (port, expectation) in other.ports {
            for place in expectation.places { expect(expectation.owners, on: port, place: place) }
        }
    }

    // MARK: Reading

    /// The largest expectations file read: far more than a fleet's ports, and a bound on what a
    /// mistaken path (a log, a device) can make the audit read.
    public static let maximumFileBytes = 1 << 20

    /// The expectations of every `--expect` value, together.
    public static func load(_ values: [String]) throws(ExpectationError) -> AuditExpectations {
        var all = AuditExpectations()
        for value in values { all.merge(try load(value)) }
        return all
    }

    /// One `--expect` value: a file when a file of that name exists, or when the value holds
    /// no `=`; otherwise entries written inline (`tcp/8080=www-data,udp/53=dnsmasq`).
    public static func load(_ value: String) throws(ExpectationError) -> AuditExpectations {
        var status = stat()
        if value.utf8.contains(UInt8(ascii: "=")) && stat(value, &status) != 0 {
            return try parse(inline: value)
        }
        return try parse(file: try read(value), path: value)
    }

    /// Entries from the command line, separated by commas.
    public static func parse(inline text: String) throws(ExpectationError) -> AuditExpectations {
        var expectations = AuditExpectations()
        let place = ExpectationError.Place(source: "--expect")
        for (index, entry) in text.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
            var at = place
            at.entry = index + 1
            try expectations.add(entry: entry, at: at)
        }
        return expectations
    }

    /// A file's lines: entries separated by commas, `#` to the end of the line a comment.
    /// Each line must be UTF-8; a line may end in CR LF.
    public static func parse(file bytes: [UInt8], path: String) throws(ExpectationError) -> AuditExpectations {
        var expectations = AuditExpectations()
        for (index, raw) in bytes.split(separator: 0x0a, omittingEmptySubsequences: false).enumerated() {
            let at = ExpectationError.Place(source: path, line: index + 1)
            var lineBytes = raw
            if lineBytes.last == 0x0d { lineBytes = lineBytes.dropLast() }
            guard let line = String(validating: lineBytes, as: UTF8.self) else {
                throw ExpectationError(at, field: "", expected: "UTF-8 text", found: nil)
            }
            let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
            if content.trimmed.isEmpty { continue }
            let entries = content.split(separator: ",", omittingEmptySubsequences: false)
            for (number, entry) in entries.enumerated() {
                var place = at
                if entries.count > 1 { place.entry = number + 1 }
                try expectations.add(entry: entry, at: place)
            }
        }
        return expectations
    }

    /// A file's bytes, at most `maximumFileBytes`.
    static func read(_ path: String) throws(ExpectationError) -> [UInt8] {
        let place = ExpectationError.Place(source: path)
        let expected = "a readable file of PORT=OWNER entries (a value with '=' that names no file is read as entries)"
        switch ProcNet.readBytes(path, limit: maximumFileBytes) {
        case .success(let bytes): return bytes
        case .failure(.tooLarge): throw ExpectationError(place, field: "", expected: "a file of at most 1 MiB", found: "more")
        case .failure(.failed(let error)): throw ExpectationError(place, field: "", expected: expected, found: error.description)
        }
    }

    /// The example every "expected" names.
    static let entryExample = "PORT=OWNER, such as tcp/8080=www-data or udp/53=user:dnsmasq|unit:systemd-resolved.service"

    private mutating func add(entry: Substring, at place: ExpectationError.Place) throws(ExpectationError) {
        let text = entry.trimmed
        guard !text.isEmpty else {
            throw ExpectationError(place, field: "", expected: "an entry " + Self.entryExample, found: "an empty entry")
        }
        let halves = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard halves.count == 2 else {
            throw ExpectationError(place, field: "", expected: Self.entryExample, found: "\"\(text)\", with no '='")
        }
        let portText = halves[0].trimmed
        guard let ports = Self.ports(portText) else {
            throw ExpectationError(place, field: "port", expected: "tcp/N, udp/N or N (both transports), N a port from 1 to 65535", found: "\"\(portText)\"")
        }
        var owners: [Owner] = []
        for ownerText in halves[1].split(separator: "|", omittingEmptySubsequences: false) {
            owners.append(try Self.owner(ownerText.trimmed, at: place))
        }
        let said = place.line.map { "\(place.source) line \($0)" } ?? place.source
        for port in ports { expect(owners, on: port, place: said) }
    }

    /// `tcp/80`, `udp/53`, or `443` for both.
    static func ports(_ text: Substring) -> [Port]? {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        func number(_ digits: Substring) -> UInt16? {
            guard !digits.isEmpty, digits.count <= 5, digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let value = UInt16(digits), value > 0 else { return nil }
            return value
        }
        if parts.count == 1 { return number(parts[0]).map { port in Transport.allCases.map { Port($0, port) } } }
        guard let transport = Transport(rawValue: String(parts[0])), let port = number(parts[1]) else { return nil }
        return [Port(transport, port)]
    }

    static let ownerExpected = "uid:N, user:NAME, command:NAME or unit:NAME.service (a bare number is a uid, a bare word a user name)"
    static let unitSuffixes = [".service", ".scope", ".socket", ".mount", ".swap"]

    static func owner(_ text: Substring, at place: ExpectationError.Place) throws(ExpectationError) -> Owner {
        guard !text.isEmpty else {
            throw ExpectationError(place, field: "owner", expected: Self.ownerExpected, found: "nothing")
        }
        var kind: Owner.Kind
        var name: Substring
        if let colon = text.firstIndex(of: ":") {
            guard let named = Owner.Kind(rawValue: String(text[..<colon])) else {
                throw ExpectationError(place, field: "owner", expected: Self.ownerExpected, found: "\"\(text)\"")
            }
            kind = named
            name = text[text.index(after: colon)...]
        } else {
            name = text
            kind = text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) ? .uid : .user
        }
        let field = kind.rawValue
        guard !name.isEmpty else {
            throw ExpectationError(place, field: field, expected: "a name after \"\(field):\"", found: "\"\(text)\"")
        }
        let forbidden: Set<Unicode.Scalar> = [" ", "\t", ",", "|", "#", "="]
        guard !name.unicodeScalars.contains(where: { forbidden.contains($0) || UntrustedText.isControl($0) }) else {
            throw ExpectationError(place, field: field, expected: "a name without spaces, control characters, ',', '|', '#' or '='", found: "\"\(name)\"")
        }
        switch kind {
        case .uid:
            guard name.count <= 10, name.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let uid = UInt32(name), uid != UInt32.max else {
                throw ExpectationError(place, field: field, expected: "a uid, a whole number from 0 to 4294967294", found: "\"\(name)\"")
            }
            return Owner(.uid, String(uid))
        case .user:
            guard name.utf8.count <= 256 else {
                throw ExpectationError(place, field: field, expected: "a user name of at most 256 bytes", found: "\"\(name.prefix(40))…\"")
            }
        case .command:
            // TASK_COMM_LEN is 16 with its NUL: longer names are cut, and would never match.
            guard name.utf8.count <= 15 else {
                throw ExpectationError(place, field: field, expected: "a command name of at most 15 bytes, as /proc/PID/comm holds it (the kernel keeps the first 15: systemd-resolved is systemd-resolve)",
                                       found: "\"\(name)\" (\(name.utf8.count) bytes)")
            }
        case .unit:
            guard name.utf8.count <= 255, Self.unitSuffixes.contains(where: { name.hasSuffix($0) && name.count > $0.count }) else {
                throw ExpectationError(place, field: field, expected: "a systemd unit that runs processes, with its type: NAME.service, .scope, .socket, .mount or .swap, as /proc/PID/cgroup names it",
                                       found: "\"\(name)\"")
            }
        }
        return Owner(kind, String(name))
    }

    // MARK: The rule

    /// Where the rule learns what /proc and the password database say of owners.
    public struct Context {
        /// The systemd unit a process runs in, from /proc/PID/cgroup.
        public var unit: (Int32) -> ProcessUnit
        /// The uid a user name has here, nil when it has none.
        public var uid: (String) -> UInt32?

        public init(unit: @escaping (Int32) -> ProcessUnit = ProcessUnits().unit, uid: @escaping (String) -> UInt32? = UserIDs().uid) {
            self.unit = unit
            self.uid = uid
        }
    }

    /// What a process's cgroup says of its unit.
    public enum ProcessUnit: Sendable, Equatable {
        case unit(String)
        /// The cgroup names no unit (a host without systemd, a process under `/`).
        case none
        /// /proc/PID/cgroup could not be read: most likely the process has exited.
        case unreadable
    }

    /// Every namespace's report with the findings of the expectations added.
    public func apply(to audits: [NamespaceAudit], context: Context = Context()) -> [NamespaceAudit] {
        audits.map { audit in
            var audit = audit
            if let report = audit.report { audit.report = apply(to: report, netns: audit.netns, context: context) }
            return audit
        }
    }

    /// The report with this rule's findings among the others, after its port's.
    public func apply(to report: AuditReport, netns: NetworkNamespace? = nil, context: Context = Context()) -> AuditReport {
        var report = report
        report.findings = Self.merged(report.findings, findings(report, netns: netns, context: context))
        return report
    }

    /// Whether a finding is an expectation that could not be checked: the socket's processes
    /// were not seen, and the expectation names a command or unit. It is a warning, not an
    /// alarm; the audit's exit status says "incomplete" (3) for it.
    public static func isUnchecked(_ finding: AuditFinding) -> Bool {
        finding.kind == .unexpectedOwner && finding.severity < .alarm
    }

    /// A socket on an expected port (receiving, or a connected UDP socket there) whose owner is
    /// none of the expected: an alarm. Where its processes cannot be seen (another user's, when
    /// not root; a kernel's socket), a uid or user still decides; an expectation that needs the
    /// process (command, unit) and nothing else matched is a warning that says it could not be
    /// checked, never passed in silence.
    public func findings(_ report: AuditReport, netns: NetworkNamespace? = nil, context: Context = Context()) -> [AuditFinding] {
        guard !ports.isEmpty else { return [] }
        var onPort: [Port: [AuditSocket]] = [:]
        for socket in report.sockets {
            let port = Port(socket.transport, socket.port)
            if ports[port] != nil { onPort[port, default: []].append(socket) }
        }
        var findings: [AuditFinding] = []
        for (port, sockets) in onPort.sorted(by: { $0.key.text < $1.key.text }) {
            let expectation = ports[port]!
            let verdicts = sockets.map { ($0, Self.match($0, expectation.owners, context: context)) }
            let expected = verdicts.filter { $0.1 == .expected }.map(\.0)
            for (socket, verdict) in verdicts where verdict != .expected {
                findings.append(finding(socket, verdict: verdict, port: port, expectation: expectation, expected: expected,
                                        ownersComplete: report.ownersComplete, netns: netns, context: context))
            }
        }
        return findings
    }

    enum Match: Equatable {
        case expected
        case unexpected
        /// An owner that needs the process could not be checked, and no other matched.
        case unchecked
    }

    static func match(_ socket: AuditSocket, _ owners: [Owner], context: Context) -> Match {
        var unknown = false
        for owner in owners {
            switch owner.kind {
            case .uid:
                if String(socket.uid) == owner.name { return .expected }
            case .user:
                if socket.user == owner.name || context.uid(owner.name) == socket.uid { return .expected }
            case .command:
                if socket.owners.isEmpty { unknown = true }
                if socket.owners.contains(where: { $0.command == owner.name }) { return .expected }
            case .unit:
                if socket.owners.isEmpty { unknown = true }
                for process in socket.owners {
                    switch context.unit(process.pid) {
                    case .unit(let unit) where unit == owner.name: return .expected
                    case .unreadable: unknown = true
                    default: break
                    }
                }
            }
        }
        return unknown ? .unchecked : .unexpected
    }

    private func finding(_ socket: AuditSocket, verdict: Match, port: Port, expectation: Expectation, expected: [AuditSocket],
                         ownersComplete: Bool, netns: NetworkNamespace?, context: Context) -> AuditFinding {
        let name = Self.socketText(socket)
        let wanted = "\(expectation.owners.map(\.text).joined(separator: " or ")), from \(expectation.places.joined(separator: ", "))"
        let holder = Self.who(socket, context: context)
        let pids = socket.owners.map { String($0.pid) }
        // Where no process holds the socket although every process was read, no one is hidden:
        // it is a kernel's socket, one held in another PID namespace, or one caught starting.
        let nobody = "no process visible here holds the socket (a kernel's socket, one held in another PID namespace, or one caught starting or closing)"
        var explanation: String
        let fix: String
        let severity: AuditFinding.Severity
        if verdict == .unexpected {
            severity = .alarm
            explanation = "\(name) (\(holder)) is none of the owners expected on \(port.text) (\(wanted))."
            if expected.isEmpty {
                explanation += " No socket on \(port.text) is an expected owner's: if the expected service should be listening, this one most likely bound first and keeps it from binding."
            } else {
                explanation += " Beside it, " + expected.map { "\(Self.socketText($0)) (\(Self.who($0, context: context)))" }.joined(separator: " and ")
                    + (expected.count == 1 ? " is" : " are") + " the expected owner's: what reaches this socket goes to the wrong program."
            }
            if !pids.isEmpty {
                let list = pids.joined(separator: ",")
                fix = "Find who started pid \(list) (`ps -o user,lstart,args -p \(list)`, `systemctl status \(pids[0])`) and stop it, then restart the expected service; if it belongs on \(port.text), add it to the expectations."
            } else if ownersComplete {
                explanation += " Its owner cannot be named: " + nobody + "."
                fix = "Find what made it (a kernel service such as nfsd or WireGuard, or a process in another PID namespace) and stop it unless it belongs on \(port.text)."
            } else {
                fix = "Run the audit as root to see which process of uid \(socket.uid) (\(socket.user)) holds it, and stop it unless it belongs on \(port.text) (then add it to the expectations)."
            }
        } else {
            severity = .warning
            let needing = expectation.owners.filter(\.needsProcess).map(\.text).joined(separator: " or ")
            let reason: String
            if socket.owners.isEmpty {
                reason = ownersComplete ? nobody : "its process belongs to another user, whose descriptors this audit cannot read (root can)"
                fix = ownersComplete
                    ? "Audit again; if no process holds it then either, find what made it (a kernel service such as nfsd or WireGuard, or a process in another PID namespace)."
                    : "Run the audit as root, which sees every process, to check \(needing)."
            } else {
                reason = "the cgroup of pid \(pids.joined(separator: ",")) could not be read (the process may have just exited)"
                fix = "Audit again: the process may have exited while it was read."
            }
            explanation = "\(name) (\(holder)) may be none of the owners expected on \(port.text) (\(wanted)): \(needing) cannot be checked, since \(reason)."
            let byUID = expectation.owners.filter { !$0.needsProcess }
            if !byUID.isEmpty {
                explanation += " Its uid \(socket.uid) (\(socket.user)) is not \(byUID.map(\.text).joined(separator: " or "))."
            }
        }
        return AuditFinding(kind: .unexpectedOwner, severity: severity, transport: socket.transport, port: socket.port,
                            destinations: [socket.address], inodes: [socket.inode], explanation: explanation,
                            fix: fix, evidence: Self.evidence(port, netns: netns))
    }

    /// `tcp 0.0.0.0:8080`, `udp 127.0.0.1:5353 connected to 127.0.0.1:9`.
    static func socketText(_ socket: AuditSocket) -> String {
        "\(socket.transport.rawValue) \(socket.label)" + (socket.remote.map { " connected to \($0)" } ?? "")
    }

    /// `uid 0 (root), pid 4242/python3 in session-3.scope`: the socket's owner with each
    /// process's unit, where its cgroup names one.
    static func who(_ socket: AuditSocket, context: Context) -> String {
        guard !socket.owners.isEmpty else { return socket.who }
        return "uid \(socket.uid) (\(socket.user)), " + socket.owners.map { owner in
            var text = "pid \(owner.pid)/\(owner.command)"
            if case .unit(let unit) = context.unit(owner.pid) { text += " in \(unit)" }
            return text
        }.joined(separator: ", ")
    }

    /// The command that shows the port's sockets with their processes and uids, in the
    /// namespace the finding is in: `ss -tlnpe 'sport = :8080'`, through nsenter for another.
    static func evidence(_ port: Port, netns: NetworkNamespace?) -> String {
        let ss = "ss -\(port.transport == .tcp ? "tln" : "uan")pe 'sport = :\(port.port)'"
        guard let netns, !netns.current, !netns.path.isEmpty else { return ss }
        return "nsenter --net=" + shellQuoted(netns.path) + " " + ss
    }

    /// A word as a POSIX shell reads it back: as it is when plain, else in single quotes.
    static func shellQuoted(_ text: String) -> String {
        let plain = text.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) || "/._-+:@%".utf8.contains(byte)
        }
        return plain && !text.isEmpty ? text : "'" + text.replacing("'", with: "'\\''") + "'"
    }

    /// `old` with `new` after the findings of their port, in the rules' order of ports (their
    /// text, "tcp/10000" before "tcp/9000"); at the end when `old` is in no such order.
    static func merged(_ old: [AuditFinding], _ new: [AuditFinding]) -> [AuditFinding] {
        guard !new.isEmpty else { return old }
        let key = { (finding: AuditFinding) in "\(finding.transport.rawValue)/\(finding.port)" }
        let keys = old.map(key)
        guard zip(keys, keys.dropFirst()).allSatisfy({ $0 <= $1 }) else { return old + new }
        let numbered = zip(keys, old).enumerated().map { (key: $1.0, index: $0, finding: $1.1) }
            + new.enumerated().map { (key: key($1), index: old.count + $0, finding: $1) }
        return numbered.sorted { ($0.key, $0.index) < ($1.key, $1.index) }.map(\.finding)
    }

    // MARK: Units and users

    /// The systemd unit of a cgroup path: its innermost component that is a unit which runs
    /// processes (`/system.slice/nginx.service` is nginx.service; a delegated subgroup below
    /// it, `/system.slice/nginx.service/worker`, is still nginx.service). Unit names keep
    /// systemd's escapes (`\x2d`), as `systemctl` shows them.
    public static func unit(fromCgroupPath path: Substring) -> String? {
        path.split(separator: "/").reversed().first { component in
            unitSuffixes.contains { component.hasSuffix($0) && component.count > $0.count }
        }.map(String.init)
    }

    /// The unit of /proc/PID/cgroup's text: from the unified hierarchy (`0::`), or on a
    /// cgroup v1 host from systemd's own (`N:name=systemd:`).
    public static func unit(fromCgroup text: String) -> ProcessUnit {
        var unified: Substring?
        var systemd: Substring?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            if fields[0] == "0" && fields[1].isEmpty { unified = fields[2] }
            if fields[1] == "name=systemd" { systemd = fields[2] }
        }
        for path in [unified, systemd].compactMap({ $0 }) {
            if let unit = unit(fromCgroupPath: path) { return .unit(unit) }
        }
        return .none
    }

    /// Units read from /proc once per process and audit.
    public final class ProcessUnits {
        private var known: [Int32: ProcessUnit] = [:]

        public init() {}

        public func unit(_ pid: Int32) -> ProcessUnit {
            if let unit = known[pid] { return unit }
            let unit = ProcNet.read("/proc/\(pid)/cgroup").map(AuditExpectations.unit(fromCgroup:)) ?? .unreadable
            known[pid] = unit
            return unit
        }
    }

    /// User names' uids from the C library (NSS), looked up once per name and audit.
    public final class UserIDs {
        private var known: [String: UInt32?] = [:]

        public init() {}

        public func uid(_ name: String) -> UInt32? {
            if let uid = known[name] { return uid }
            var record = passwd()
            var result: UnsafeMutablePointer<passwd>?
            var buffer = [CChar](repeating: 0, count: 4096)
            let uid: UInt32? = getpwnam_r(name, &record, &buffer, buffer.count, &result) == 0 && result != nil ? record.pw_uid : nil
            known[name] = uid
            return uid
        }
    }
}

/// A mistake in `--expect`: where (the file and line, or the entry on the command line), the
/// field, what was expected there and what was found.
public struct ExpectationError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Place: Sendable, Equatable {
        /// The file's path, or `--expect` for entries on the command line.
        public var source: String
        /// In a file: the line, from 1.
        public var line: Int?
        /// The entry, from 1: on the command line, or on a line of several.
        public var entry: Int?

        public init(source: String, line: Int? = nil, entry: Int? = nil) {
            self.source = source
            self.line = line
            self.entry = entry
        }
    }

    public var place: Place
    /// port, owner, uid, user, command or unit; empty for the entry or the file as a whole.
    public var field: String
    public var expected: String
    /// What is there instead, quoted where it is the file's text; that text is escaped only
    /// in `description`.
    public var found: String?

    public init(_ place: Place, field: String, expected: String, found: String?) {
        self.place = place
        self.field = field
        self.expected = expected
        self.found = found
    }

    /// `web.expect: line 3: field \`uid\`: expected a uid, …; found "x"`, escaped for a terminal.
    public var description: String {
        var text = UntrustedText.terminal(place.source)
        if let line = place.line { text += ": line \(line)" }
        if let entry = place.entry { text += ": entry \(entry)" }
        if !field.isEmpty { text += ": field `\(field)`" }
        return text + ": expected \(expected)" + (found.map { "; found " + UntrustedText.terminal($0) } ?? "")
    }
}
