import CHijackLab
import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

/// Output a fleet collects: every namespace, changes over time, Prometheus and JSON lines.
@Suite("Audit for fleets")
struct AuditFleetTests {
    // MARK: Helpers

    /// Whether Python's prometheus_client (the parser node_exporter's users trust) is installed.
    static let prometheusClient: Bool = (try? python(["-c", "import prometheus_client"], input: "").status) == 0

    /// Runs python3 with `input` on stdin; its stdout and exit status.
    static func python(_ arguments: [String], input: String) throws -> (status: Int32, out: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: out, as: UTF8.self))
    }

    struct ParsedFamily: Decodable {
        struct Sample: Decodable {
            var name: String
            var labels: [String: String]
            var value: Double
        }
        var name: String
        var type: String
        var samples: [Sample]
    }

    /// The exposition text as prometheus_client's own parser reads it.
    static func parsePrometheus(_ text: String) throws -> [String: ParsedFamily] {
        let script = """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            out = [{"name": f.name, "type": f.type, "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
                   for f in text_string_to_metric_families(sys.stdin.read())]
            print(json.dumps(out))
            """
        let (status, out) = try python(["-c", script], input: text)
        try #require(status == 0, "prometheus_client refused the text:\n\(text)")
        let families = try JSONDecoder().decode([ParsedFamily].self, from: Data(out.utf8))
        return Dictionary(families.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    static func socket(_ address: String, port: UInt16, uid: UInt32, pid: Int32, command: String = "p", inode: UInt64) -> AuditSocket {
        AuditSocket(transport: .tcp, address: address, port: port, uid: uid, user: String(uid), inode: inode,
                    owners: [SocketOwner(pid: pid, command: command)])
    }

    /// Two namespaces' audits made from sockets: one with an interception on 8080 whose owner
    /// and namespace name hold every character the exposition format escapes.
    static func sampleAudits() -> [NamespaceAudit] {
        let sockets = [socket("0.0.0.0", port: 8080, uid: 0, pid: 10, command: "web", inode: 1),
                       socket("127.0.0.1", port: 8080, uid: 1000, pid: 20, command: "evil\"\\\nx", inode: 2)]
        let report = AuditReport(namespace: "net:[4026531840]", sockets: sockets, findings: Audit.findings(sockets), ownersComplete: true, skippedRows: 0)
        let quiet = AuditReport(namespace: "net:[4026532999]", sockets: [], findings: [], ownersComplete: true, skippedRows: 0)
        return [
            NamespaceAudit(netns: NetworkNamespace(inode: 4026531840, pid: 1, command: "init", current: true, path: "/proc/1/ns/net"), report: report),
            NamespaceAudit(netns: NetworkNamespace(inode: 4026532999, names: ["lab \"1\"\\\nend"], pid: 77, command: "sleep",
                                                   container: ContainerLabel(runtime: "docker", id: String(repeating: "ab", count: 32)), path: "/run/netns/x"),
                           report: quiet),
            NamespaceAudit(netns: NetworkNamespace(inode: 4026533000, pid: 99, command: "locked", path: "/proc/99/ns/net"), error: "could not enter it: setns: EPERM"),
        ]
    }

    static func run(_ arguments: [String]) -> (status: Int32, out: String, err: String) {
        let captured = TestLab.Captured()
        let status = CLI.run(arguments, console: captured.console, agentExecutable: TestLab.agentExecutable)
        return (status, captured.out, captured.err)
    }

    /// An agent holding one listening TCP socket, with SO_REUSEPORT: a second process of the
    /// same uid may then take a more specific address on the port, as the catalog's shadowing does.
    static func listener(_ id: String, _ address: String, port: UInt16, netns: String? = nil) throws -> AgentClient {
        let agent = try AgentClient(executable: TestLab.agentExecutable, id: id, extraArguments: netns.map { ["--netns", $0] } ?? [], timeout: 10)
        do {
            try agent.awaitReady()
            let calls = try agent.calls(.open(SocketRequest(transport: .tcp, address: address, port: port, options: ["SO_REUSEPORT"]), listen: true))
            try #require(calls.last?.result == .ok, "\(id) could not listen on \(address):\(port): \(calls)")
        } catch {
            agent.kill()
            throw error
        }
        return agent
    }

    // MARK: Namespaces

    @Test("Container names come from the cgroup paths the runtimes write", arguments: [
        ("0::/system.slice/docker-4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b.scope", "docker 4f3c2a1b0e9d"),
        ("12:pids:/docker/4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\n0::/", "docker 4f3c2a1b0e9d"),
        ("0::/machine.slice/libpod-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope/container", "podman 0123456789ab"),
        ("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-aaaaaaaaaaaabbbbbbbbbbbbccccccccccccddddddddddddeeeeeeeeeeeeffff.scope",
         "kubernetes aaaaaaaaaaaa pod 1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"),
        ("11:memory:/kubepods/besteffort/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/aaaaaaaaaaaabbbbbbbbbbbbccccccccccccddddddddddddeeeeeeeeeeeeffff",
         "kubernetes aaaaaaaaaaaa pod 1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"),
        ("0::/kubepods.slice/kubepods-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/crio-aaaaaaaaaaaabbbbbbbbbbbbccccccccccccddddddddddddeeeeeeeeeeeeffff.scope",
         "kubernetes aaaaaaaaaaaa pod 1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"),
        ("0::/lxc/web01", "lxc web01"),
        ("0::/lxc.payload.web01/system.slice/nginx.service", "lxc web01"),
        ("0::/machine.slice/machine-my\\x2dvm.scope", "machine my-vm"),
        ("0::/machine.slice/libpod-conmon-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope", "-"),
        ("0::/system.slice/sshd.service", "-"),
        ("0::/user.slice/user-1000.slice/session-3.scope", "-"),
        ("0::/", "-"),
    ])
    func containers(cgroup: String, expected: String) {
        #expect(Namespaces.container(fromCgroup: cgroup)?.text ?? "-" == expected)
    }

    @Test("The current namespace is found, first, labelled with its inode and a holder")
    func discoversCurrent() throws {
        var own = stat()
        try #require(stat("/proc/self/ns/net", &own) == 0)
        let (namespaces, _) = Namespaces.discover()
        let first = try #require(namespaces.first)
        #expect(first.current && first.inode == UInt64(own.st_ino))
        #expect(namespaces.filter(\.current).count == 1)
        #expect(Set(namespaces.map(\.inode)).count == namespaces.count)
        let current = Namespaces.current()
        #expect(current.inode == first.inode && current.pid == first.pid)
    }

    @Test("A namespace that cannot be entered is reported with the kernel's answer, not skipped")
    func unenterable() {
        // /dev/null opens, but is no namespace: setns answers EINVAL, as root or not.
        let bogus = NetworkNamespace(inode: 1, path: "/dev/null")
        let audits = FleetAudit.audit([bogus], port: nil, agentExecutable: TestLab.agentExecutable, timeout: 10)
        #expect(audits.count == 1)
        #expect(audits[0].report == nil)
        #expect(audits[0].error?.contains("setns(/dev/null): EINVAL") == true, "\(audits[0].error ?? "")")
        let text = AuditFormats.prometheus(audits, duration: 0.1, timestamp: .now())
        #expect(text.contains("hijack_lab_netns_audited{netns=\"1\"} 0"))
    }

    // MARK: Formats

    @Test("Prometheus: ESC, BEL, CR and other control bytes in a process name arrive as text, never raw",
          .enabled(if: Self.prometheusClient, "needs Python's prometheus_client (pip install prometheus_client)"))
    func prometheusControlBytes() throws {
        let name = "evil\u{1b}]0;owned\u{07}\r\u{85}\u{7f}end"
        let sockets = [Self.socket("0.0.0.0", port: 8080, uid: 0, pid: 10, command: "web", inode: 1),
                       Self.socket("127.0.0.1", port: 8080, uid: 1000, pid: 20, command: name, inode: 2)]
        let report = AuditReport(namespace: "net:[4026531840]", sockets: sockets, findings: Audit.findings(sockets), ownersComplete: true, skippedRows: 0)
        let named = NetworkNamespace(inode: 4026531840, names: [name], pid: 1, command: name, current: true, path: "/proc/1/ns/net")
        let text = AuditFormats.prometheus([NamespaceAudit(netns: named, report: report)], duration: 0.1, timestamp: .now())
        let raw = text.unicodeScalars.filter { ($0.value < 0x20 && $0 != "\n") || (0x7f...0x9f).contains($0.value) }
        #expect(raw.isEmpty, "raw control bytes: \(raw.map { String($0.value, radix: 16) })")
        // Python's text-mode read splits lines at CR too: with none left, every line is whole.
        let families = try Self.parsePrometheus(text)
        let info = try #require(families["hijack_lab_netns_info"]?.samples.first)
        #expect(info.labels["name"] == "evil\\x1b]0;owned\\x07\\x0d\\x85\\x7fend")
        #expect(AuditFormats.labelValue("a\u{1b}b") == "a\\\\x1bb")
    }

    @Test("A namespace's name is quoted in labels with its own quotes and backslashes escaped")
    func labelQuotes() {
        let namespace = NetworkNamespace(inode: 7, names: ["a\" b\\c"], path: "/run/netns/x")
        #expect(namespace.label == "7 \"a\\\" b\\\\c\"")
    }

    @Test("--all-netns: a finding is 1; nothing found but part of the host unread is 3; all read and clean is 0")
    func incompleteStatus() {
        let audits = Self.sampleAudits()
        let clean = audits.filter { $0.report?.findings.isEmpty == true }
        #expect(AuditCommand.exitStatus(audits, unreadable: 0, allNamespaces: true) == .differs)
        #expect(AuditCommand.exitStatus(clean, unreadable: 0, allNamespaces: true) == .success)
        #expect(AuditCommand.exitStatus(clean, unreadable: 4, allNamespaces: true).code == 3)
        // A namespace that could not be entered leaves the answer incomplete too.
        #expect(AuditCommand.exitStatus(clean + audits.filter { $0.error != nil }, unreadable: 0, allNamespaces: true) == .incomplete)
        #expect(AuditCommand.exitStatus(audits, unreadable: 4, allNamespaces: true) == .differs)
        #expect(ExitStatus(code: 3) == .incomplete && ExitStatus.incomplete.worst(.differs) == .differs && ExitStatus.success.worst(.incomplete) == .incomplete)
    }

    @Test("The unreadable-namespace line says what root's refusal means, and the other users' one only to them")
    func unreadableWording() {
        #expect(AuditCommand.unreadableText(1, root: true) == "the network namespace of 1 process could not be read even as root (EACCES or EPERM: a security module or a user namespace refused)")
        #expect(AuditCommand.unreadableText(2, root: false) == "the network namespace of 2 processes could not be read (other users'; root sees them)")
        #expect(!AuditCommand.unreadableText(3, root: true).contains("root sees them"))
    }


    @Test("Prometheus text: prometheus_client parses it, every label value round-trips, HELP and TYPE are there",
          .enabled(if: Self.prometheusClient, "needs Python's prometheus_client (pip install prometheus_client)"))
    func prometheusParses() throws {
        let audits = Self.sampleAudits()
        let text = AuditFormats.prometheus(audits, unreadableProcesses: 3, duration: 0.0421, timestamp: WallTime(secondsSince1970: 1_700_000_000.5))
        let families = try Self.parsePrometheus(text)
        let findings = try #require(families["hijack_lab_findings"])
        #expect(findings.type == "gauge")
        let interception = try #require(findings.samples.first { $0.labels["kind"] == "interception" })
        #expect(interception.labels == ["kind": "interception", "severity": "alarm", "port": "8080", "netns": "4026531840"])
        #expect(interception.value == 1)
        #expect(families["hijack_lab_listeners"]?.samples.map(\.value).sorted() == [0, 2])
        let info = try #require(families["hijack_lab_netns_info"]?.samples.first { $0.labels["netns"] == "4026532999" })
        #expect(info.labels["name"] == "lab \"1\"\\\nend")
        #expect(info.labels["container"] == "docker abababababab")
        #expect(families["hijack_lab_netns_audited"]?.samples.first { $0.labels["netns"] == "4026533000" }?.value == 0)
        #expect(families["hijack_lab_unreadable_processes"]?.samples.first?.value == 3)
        #expect(families["hijack_lab_audit_duration_seconds"]?.samples.first?.value == 0.0421)
        #expect(families["hijack_lab_audit_timestamp_seconds"]?.samples.first?.value == 1_700_000_000.5)
        for name in ["hijack_lab_findings", "hijack_lab_listeners", "hijack_lab_audit_duration_seconds", "hijack_lab_audit_timestamp_seconds"] {
            #expect(text.contains("# HELP \(name) ") && text.contains("# TYPE \(name) gauge"))
        }
        #expect(AuditFormats.labelValue("a\\b\"c\nd") == "a\\\\b\\\"c\\nd")
    }

    @Test("audit --format prometheus --output FILE: a complete file, replaced by rename, that prometheus_client reads",
          .enabled(if: Self.prometheusClient, "needs Python's prometheus_client (pip install prometheus_client)"))
    func prometheusFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hijack-lab-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/hijack_lab.prom"
        try "stale\n".write(toFile: path, atomically: false, encoding: .utf8)
        let (status, out, err) = Self.run(["audit", "--format", "prometheus", "--output", path])
        #expect(status == 0 || status == 1, "\(err)")
        #expect(out.isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["hijack_lab.prom"])
        let families = try Self.parsePrometheus(try String(contentsOfFile: path, encoding: .utf8))
        var own = stat()
        try #require(stat("/proc/self/ns/net", &own) == 0)
        #expect(families["hijack_lab_listeners"]?.samples.map { $0.labels["netns"] } == [String(own.st_ino)])
        #expect(families["hijack_lab_audit_timestamp_seconds"].map { abs($0.samples[0].value - WallTime.now().secondsSince1970) < 60 } == true)
        #expect(families["hijack_lab_audit_duration_seconds"].map { $0.samples[0].value > 0 } == true)
    }

    @Test("jsonl: one complete JSON object per finding, with its namespace, time and owners")
    func jsonLines() throws {
        let text = AuditFormats.jsonLines(Self.sampleAudits(), timestamp: WallTime(secondsSince1970: 1_700_000_000.25))
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.last == "")
        let objects = try lines.dropLast().map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(objects.count == Audit.findings(Self.sampleAudits()[0].report!.sockets).count)
        for object in objects {
            #expect(Set(object.keys).isSuperset(of: ["timestamp", "netns", "kind", "severity", "transport", "port", "destinations", "explanation", "owners"]))
            #expect(object["timestamp"] as? String == "2023-11-14T22:13:20.250Z")
            #expect((object["netns"] as? [String: Any])?["inode"] as? Int == 4026531840)
        }
        let interception = try #require(objects.first { $0["kind"] as? String == "interception" })
        let owners = try #require(interception["owners"] as? [[String: Any]])
        #expect(owners.map { $0["socket"] as? String } == ["127.0.0.1:8080", "0.0.0.0:8080"])
        #expect((owners[0]["processes"] as? [[String: Any]])?.first?["command"] as? String == "evil\"\\\nx")
        #expect(AuditFormats.jsonLines(Self.sampleAudits(), minimum: .alarm, timestamp: .now()).split(separator: "\n").count == 1)
    }

    /// What JSONEncoder wrote for each jsonl record before the audit stopped linking Foundation.
    struct EncodedFindingLine: Encodable {
        struct Owner: Encodable {
            var socket: String
            var inode: UInt64
            var uid: UInt32
            var user: String
            var processes: [SocketOwner]
        }
        var timestamp: String
        var netns: NetworkNamespace
        var kind: AuditFinding.Kind
        var severity: AuditFinding.Severity
        var transport: Transport
        var port: UInt16
        var destinations: [String]
        var explanation: String
        var owners: [Owner]
        /// Written only when the finding has them, as JSONEncoder leaves out a nil optional.
        var fix: String?
        var evidence: String?
    }

    @Test("The hand-written fleet JSON and jsonl are JSONEncoder's bytes, error and container included")
    func handWrittenJSONMatchesJSONEncoder() throws {
        var audits = Self.sampleAudits()
        audits.append(NamespaceAudit(netns: NetworkNamespace(inode: 7, names: ["x/y"], pid: 12, command: "sh", container: ContainerLabel(runtime: "kubernetes", id: "ab", pod: "p-1"), current: false, path: "/proc/12/ns/net"),
                                     error: "setns: EPERM \u{1}"))
        let fleet = AuditFormats.fleetJSON(audits, unreadableProcesses: 2)
        #expect(String(decoding: fleet, as: UTF8.self) == String(decoding: JSONFormat.encode(AuditFormats.FleetDocument(namespaces: audits, unreadableProcesses: 2)), as: UTF8.self))

        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let time = WallTime(secondsSince1970: 1_700_000_000.999_6)
        var expected = ""
        for audit in audits {
            guard let report = audit.report else { continue }
            for finding in report.findings {
                let owners = finding.inodes.compactMap { inode in report.sockets.first { $0.inode == inode } }.map {
                    EncodedFindingLine.Owner(socket: $0.label + ($0.remote.map { " -> \($0)" } ?? ""), inode: $0.inode, uid: $0.uid, user: $0.user, processes: $0.owners)
                }
                let line = EncodedFindingLine(timestamp: "2023-11-14T22:13:21.000Z", netns: audit.netns, kind: finding.kind, severity: finding.severity,
                                              transport: finding.transport, port: finding.port, destinations: finding.destinations,
                                              explanation: finding.explanation, owners: owners, fix: finding.fix, evidence: finding.evidence)
                expected += String(decoding: try encoder.encode(line), as: UTF8.self) + "\n"
            }
        }
        #expect(!expected.isEmpty)
        #expect(AuditFormats.jsonLines(audits, timestamp: time) == expected)
    }

    @Test("A table cell with characters outside the BMP keeps every character; padding never cuts half a pair")
    func wideCharactersAreNotCut() {
        var socket = AuditSocket(transport: .tcp, address: "::1", port: 47123, uid: 0, user: "root", inode: 1,
                                 owners: [SocketOwner(pid: 29977, command: "😀😀😀abc")])
        socket.v6only = true
        let report = AuditReport(namespace: "net:[1]", sockets: [socket], findings: [], ownersComplete: true, skippedRows: 0)
        #expect(AuditText.render(report).contains("29977/😀😀😀abc"))
        #expect("abc😀def".padded(toUTF16Length: 4) == "abc ")
        #expect("abc😀def".padded(toUTF16Length: 5) == "abc😀")
        #expect("ab".padded(toUTF16Length: 4) == "ab  ")
        #expect(fixedPoint(1e300, decimals: 2).hasSuffix(".00") && !fixedPoint(1e300, decimals: 2).contains("e"))
    }

    @Test("The front alone, without hijack-lab-full beside it: its own commands work, the others exit 127 and say why")
    func frontWithoutFull() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hijack-lab-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let alone = folder + "/hijack-lab"
        try TestLab.copyProgram(TestLab.toolExecutable, to: alone)
        // Bounded: a front that hung instead of failing would fail the test, not stall it.
        func run(_ arguments: [String]) throws -> (status: Int32, err: String) {
            let child = try ChildProcess(executable: alone, arguments: arguments, mergeStandardError: true)
            let output = child.readAll(until: .after(seconds: 10))
            let status = child.finish(until: .after(seconds: 5))
            try #require(output != nil, "hijack-lab \(arguments) did not end within 10 s")
            return ((status >> 8) & 0xff, output!)
        }
        #expect(try run(["--version"]).status == 0)
        #expect(try run(["--version", "extra"]).status == 2)
        let list = try run(["list"])
        #expect(list.status == 127)
        #expect(list.err.contains("cannot start hijack-lab-full") && list.err.contains("ENOENT"), "\(list.err)")
    }

    @Test("--format json and --json carry schemaVersion 1 and the report as before")
    func jsonSchema() throws {
        let port = try Topology.freeHostPort(for: .tcp)
        for arguments in [["--format", "json"], ["--json", "-"], ["--format", "json", "--output", "-"]] {
            let (status, out, err) = Self.run(["audit", "--port", String(port)] + arguments)
            #expect(status == 0, "\(err)")
            let object = try #require(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            #expect(object["schemaVersion"] as? Int == 1)
            let report = try JSONDecoder().decode(AuditReport.self, from: Data(out.utf8))
            #expect(report.sockets.isEmpty)
        }
    }

    @Test("Options that do not go together are refused, and help names every option", arguments: [
        (["--json", "-", "--format", "json"], "give one or the other"),
        (["--json", "x.json", "--output", "y"], "give one or the other"),
        (["--watch", "--format", "jsonl"], "--watch prints changes"),
        (["--interval", "2"], "add --watch"),
        (["--watch", "--interval", "0"], "--interval expects seconds"),
        (["--format", "josn"], "did you mean json?"),
    ])
    func usage(arguments: [String], message: String) {
        let (status, _, err) = Self.run(["audit"] + arguments)
        #expect(status == 2)
        #expect(err.contains(message), "\(err)")
    }

    @Test("audit --help documents every option")
    func help() {
        let (status, out, _) = Self.run(["audit", "--help"])
        #expect(status == 0)
        for option in AuditCommand.options { #expect(out.contains(option.name), "\(option.name)") }
        for name in ["--all-netns", "--watch", "--interval", "--format", "--output", "prometheus", "jsonl", "schemaVersion"] {
            #expect(out.contains(name), "\(name)")
        }
    }

    // MARK: Watch

    @Test("--watch: an owner not found for one audit is one \"unknown owner\" line, never a finding that appears and clears")
    func watchOwnerRace() throws {
        // One process holds 0.0.0.0 and 127.0.0.1 (the per-address fix): no finding, unless the
        // loopback socket's owner is missed, which makes it look like another program's.
        func audit(_ loopbackOwners: [Int32]) -> [NamespaceAudit] {
            let sockets = [Self.socket("0.0.0.0", port: 8080, uid: 1000, pid: 10, inode: 1),
                           AuditSocket(transport: .tcp, address: "127.0.0.1", port: 8080, uid: 1000, user: "1000", inode: 2,
                                       owners: loopbackOwners.map { SocketOwner(pid: $0, command: "p") })]
            let context = Audit.Context(ipv6: false)
            let report = AuditReport(namespace: "net:[1]", sockets: sockets, findings: Audit.findings(sockets, context: context), ownersComplete: true, skippedRows: 0)
            return [NamespaceAudit(netns: NetworkNamespace(inode: 1, path: "/proc/1/ns/net"), report: report)]
        }
        var script = [[10], [], [10], [10], [], [], [], [10]].map(audit)
        let watcher = AuditWatcher { script.removeFirst() }
        #expect(watcher.step().isEmpty)
        // The race: one line that says so, and no finding.
        let raced = watcher.step()
        #expect(raced.count == 1 && raced[0].contains(" unknown owner of tcp 127.0.0.1:8080 (uid 1000 (1000)): no process held it"), "\(raced)")
        #expect(watcher.step().isEmpty, "the owner came back: nothing to clear")
        #expect(watcher.step().isEmpty)
        // Missing twice in a row is no race: the finding stands, once, and clears once.
        #expect(watcher.step().count == 1)
        let standing = watcher.step()
        #expect(standing.count == 1 && standing[0].contains("appears [warning] shadowing tcp/8080"), "\(standing)")
        #expect(watcher.step().isEmpty)
        let cleared = watcher.step()
        #expect(cleared.count == 1 && cleared[0].contains("clears  [warning] shadowing tcp/8080"), "\(cleared)")

        // A socket that never has an owner (a kernel's own, nfsd's or WireGuard's) is there from
        // the start: the first audit shows its finding at once, and no later one calls it a race.
        var kernelOwned = [[], [], []].map(audit)
        let fromStart = AuditWatcher { kernelOwned.removeFirst() }
        let first = fromStart.step()
        #expect(first.count == 1 && first[0].contains("appears [warning] shadowing tcp/8080"), "\(first)")
        #expect(fromStart.step().isEmpty)
        #expect(fromStart.step().isEmpty)
    }

    @Test("--watch: an intruder that binds shows up within two intervals, and clears when it goes")
    func watchSeesIntruder() throws {
        let port = try Topology.freeHostPort(for: .tcp)
        let victim = try Self.listener("victim", "0.0.0.0", port: port)
        defer { victim.kill() }
        let watcher = AuditWatcher { [NamespaceAudit(netns: Namespaces.current(), report: Audit.run(port: port))] }
        // Before: the victim alone (takeable where IPv6 exists: its wildcard is one family's,
        // and any user could bind ::1).
        let first = watcher.step()
        #expect(first.allSatisfy { $0.contains("appears [warning] takeable tcp/\(port)") }, "\(first)")
        #expect(watcher.step().isEmpty)

        let intruder = try Self.listener("intruder", "127.0.0.1", port: port)
        defer { intruder.kill() }
        var lines: [String] = []
        let interval = 0.2
        // "Within two intervals" is counted in watch steps, not in seconds: the loop stops after
        // two, so a line found here came from one of them, however slow the machine is.
        var steps = 0
        watcher.run(interval: interval, output: { lines.append($0) }) { done in
            steps = done
            return done >= 2 || lines.contains { $0.contains("shadowing") }
        }
        #expect(steps <= 2)
        let appears = try #require(lines.first { $0.contains("appears [warning] shadowing tcp/\(port)") }, "\(lines)")
        #expect(appears.contains("127.0.0.1:\(port)") && appears.contains("pid \(intruder.pid)/"))
        #expect(lines.contains { $0.contains("listens tcp 127.0.0.1:\(port)") && $0.contains("pid \(intruder.pid)/") }, "\(lines)")
        // A timestamp leads every line: 2025-06-01T12:00:00.123Z.
        #expect(lines.allSatisfy { $0.count > 24 && $0.dropFirst(23).hasPrefix("Z ") })

        intruder.kill()
        var after: [String] = []
        watcher.run(interval: interval, output: { after.append($0) }) { steps in steps >= 2 || after.contains { $0.contains("clears") } }
        #expect(after.contains { $0.contains("clears  [warning] shadowing tcp/\(port)") }, "\(after)")
        #expect(after.contains { $0.contains("stops   tcp 127.0.0.1:\(port)") }, "\(after)")
        #expect(!after.contains { $0.contains("exposure") })
    }

    @Test("audit --watch as a process: SIGINT ends it with 130")
    func watchInterrupted() throws {
        var fds: [Int32] = [-1, -1]
        try #require(hl_pipe_cloexec(&fds) == 0)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        let command: [String] = [TestLab.toolExecutable, "audit", "--watch", "--interval", "0.2"]
        let argv = command.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        // The test runner's threads may block or ignore SIGINT; the watch starts as a shell would start it.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGINT)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, TestLab.toolExecutable, &actions, &attributes, argv, environ)
        Glibc.close(fds[1])
        defer { Glibc.close(fds[0]) }
        try #require(spawned == 0)
        let handle = hl_pidfd_open(pid)
        defer { if handle >= 0 { Glibc.close(handle) } }
        // It says "watching" once its SIGINT handler is in place.
        var output = ""
        let deadline = Deadline.after(seconds: 30)
        while !output.contains("watching"), (try? waitFor(fds[0], events: Int16(POLLIN), until: deadline)) == true {
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = read(fds[0], &chunk, chunk.count)
            if count <= 0 { break }
            output += String(decoding: chunk[..<count], as: UTF8.self)
        }
        let ready = output.contains("watching")
        kill(pid, ready ? SIGINT : SIGKILL)
        let ended = handle >= 0 && (try? waitFor(handle, events: Int16(POLLIN), until: .after(seconds: 30))) == true
        if !ended { kill(pid, SIGKILL) }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        try #require(ready, "no \"watching\" line: \(output)")
        try #require(ended, "the watch did not end within 30 s of SIGINT")
        #expect((status & 0x7f) == 0 && (status >> 8) & 0xff == 130, "wait status \(status)")
    }
}

/// --all-netns against namespaces the test makes with `ip netns add`.
@Suite("Audit for fleets: every namespace (root, ip)", .enabled(if: Topology.netnsMissing() == nil, "needs root and iproute2's ip"))
struct AuditAllNamespacesTests {
    static func ip(_ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(Topology.ipExecutable()))
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    @Test("Both named namespaces' sockets are found, each labelled with its inode and name; the exit status counts them")
    func namedNamespaces() throws {
        let names = (0..<2).map { _ in "hl-test-\(UInt32.random(in: 0...UInt32.max))" }
        var made: [String] = []
        // Deleted on every path: a name left under /run/netns outlives the test.
        defer { for name in made { _ = try? Self.ip(["netns", "delete", name]) } }
        for name in names {
            try #require(try Self.ip(["netns", "add", name]) == 0, "ip netns add \(name)")
            made.append(name)
        }
        var agents: [AgentClient] = []
        defer { agents.forEach { $0.kill() } }
        // One listener in the first; in the second a wildcard and a loopback socket of two
        // unrelated processes: shadowing, which makes the exit status 1.
        agents.append(try AuditFleetTests.listener("a", "127.0.0.1", port: 10_001, netns: "/run/netns/\(names[0])"))
        agents.append(try AuditFleetTests.listener("b-victim", "0.0.0.0", port: 10_002, netns: "/run/netns/\(names[1])"))
        agents.append(try AuditFleetTests.listener("b-intruder", "127.0.0.1", port: 10_002, netns: "/run/netns/\(names[1])"))

        let (status, out, err) = AuditFleetTests.run(["audit", "--all-netns", "--json", "-"])
        #expect(status == 1, "\(err)")
        let document = try JSONDecoder().decode(AuditFormats.FleetDocument.self, from: Data(out.utf8))
        #expect(document.schemaVersion == 1)
        #expect(document.namespaces.first?.netns.current == true)
        for (index, name) in names.enumerated() {
            var status = stat()
            try #require(stat("/run/netns/\(name)", &status) == 0)
            let audit = try #require(document.namespaces.first { $0.netns.names.contains(name) }, "\(name) not listed")
            #expect(audit.netns.inode == UInt64(status.st_ino))
            let report = try #require(audit.report, "\(audit.error ?? "")")
            #expect(report.namespace == "net:[\(status.st_ino)]")
            if index == 0 {
                #expect(report.sockets.map(\.endpoint) == ["127.0.0.1:10001"])
                #expect(report.sockets.first?.owners.map(\.pid) == [agents[0].pid])
            } else {
                #expect(Set(report.sockets.map(\.endpoint)) == ["0.0.0.0:10002", "127.0.0.1:10002"])
                #expect(report.findings.contains { $0.kind == .shadowing })
            }
        }
        // Every namespace appears once.
        #expect(Set(document.namespaces.map(\.netns.inode)).count == document.namespaces.count)

        // The table names them too, and jsonl labels each finding with its namespace.
        let table = AuditFleetTests.run(["audit", "--all-netns", "--min-severity", "warning"])
        #expect(table.out.contains("== network namespace ") && table.out.contains("\"\(names[1])\""))
        let lines = AuditFleetTests.run(["audit", "--all-netns", "--format", "jsonl", "--port", "10002"])
        #expect(lines.out.split(separator: "\n").contains { $0.contains("\"shadowing\"") && $0.contains("\"\(names[1])\"") })
    }
}
