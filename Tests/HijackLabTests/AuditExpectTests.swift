import CHijackLab
import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

/// Issue 21, part 3: `audit --expect`, who should own a port.
@Suite("Audit --expect: who should own a port")
struct AuditExpectTests {
    typealias Owner = AuditExpectations.Owner
    typealias Port = AuditExpectations.Port

    static func file(_ text: String, path: String = "web.expect") throws(ExpectationError) -> AuditExpectations {
        try AuditExpectations.parse(file: Array(text.utf8), path: path)
    }

    // MARK: Parser

    @Test("A file: comments, blank lines, several owners, repeated lines, both transports, spaces around separators, CR LF")
    func goodFile() throws {
        let text = """
            # web host
            tcp/80  = unit:nginx.service | user:www-data   # nginx, or whoever runs as www-data
            tcp/443=unit:nginx.service|user:www-data

            22=command:sshd
            tcp/443 = unit:haproxy.service\r
            udp/53=unbound, udp/5353 = 0
            \t
            """
        let expectations = try Self.file(text)
        #expect(expectations.ports.count == 6)
        #expect(expectations.ports[Port(.tcp, 80)]?.owners == [Owner(.unit, "nginx.service"), Owner(.user, "www-data")])
        #expect(expectations.ports[Port(.tcp, 80)]?.places == ["web.expect line 2"])
        // Repeated lines add owners, as alternatives, and say both places.
        #expect(expectations.ports[Port(.tcp, 443)]?.owners == [Owner(.unit, "nginx.service"), Owner(.user, "www-data"), Owner(.unit, "haproxy.service")])
        #expect(expectations.ports[Port(.tcp, 443)]?.places == ["web.expect line 3", "web.expect line 6"])
        // A bare port is both transports.
        #expect(expectations.ports[Port(.tcp, 22)]?.owners == [Owner(.command, "sshd")])
        #expect(expectations.ports[Port(.udp, 22)]?.owners == [Owner(.command, "sshd")])
        // A bare word is a user name, a bare number a uid.
        #expect(expectations.ports[Port(.udp, 53)]?.owners == [Owner(.user, "unbound")])
        #expect(expectations.ports[Port(.udp, 5353)]?.owners == [Owner(.uid, "0")])
        #expect(expectations.ports[Port(.udp, 80)] == nil)
        // An empty file, or one of comments only, expects nothing.
        #expect(try Self.file("").isEmpty)
        #expect(try Self.file("# nothing yet\n\n").isEmpty)
    }

    @Test("Inline entries, separated by commas; several --expect values add up")
    func goodInline() throws {
        let inline = try AuditExpectations.parse(inline: "tcp/8080=www-data,udp/53=dnsmasq")
        #expect(inline.ports == [Port(.tcp, 8080): .init(owners: [Owner(.user, "www-data")], places: ["--expect"]),
                                 Port(.udp, 53): .init(owners: [Owner(.user, "dnsmasq")], places: ["--expect"])])
        let uids = try AuditExpectations.parse(inline: "tcp/8080 = uid:033 | 33 | user:123abc | command:node_exporter | unit:user@1000.service")
        // A uid is a number, whatever its leading zeros; names are kept as written.
        #expect(uids.ports[Port(.tcp, 8080)]?.owners == [Owner(.uid, "33"), Owner(.user, "123abc"), Owner(.command, "node_exporter"),
                                                        Owner(.unit, "user@1000.service")])
        var both = inline
        both.merge(try AuditExpectations.parse(inline: "tcp/8080=uid:0"))
        #expect(both.ports[Port(.tcp, 8080)]?.owners == [Owner(.user, "www-data"), Owner(.uid, "0")])
        #expect(try AuditExpectations.load(["tcp/8080=www-data", "tcp/8080=uid:0"]).ports[Port(.tcp, 8080)]?.owners.count == 2)
    }

    /// Each bad entry, as a file's only line: the field, a fragment of what was expected, and what was found.
    @Test("Bad input names the file, the line, the field, what was expected and what was found", arguments: [
        ("tcp/80", "", "PORT=OWNER, such as tcp/8080=www-data", "\"tcp/80\", with no '='"),
        ("tcp/0=root", "port", "tcp/N, udp/N or N (both transports), N a port from 1 to 65535", "\"tcp/0\""),
        ("tcp/65536=root", "port", "a port from 1 to 65535", "\"tcp/65536\""),
        ("sctp/80=root", "port", "tcp/N, udp/N or N", "\"sctp/80\""),
        ("TCP/80=root", "port", "tcp/N, udp/N or N", "\"TCP/80\""),
        ("tcp/ 80=root", "port", "tcp/N", "\"tcp/ 80\""),
        ("tcp/+80=root", "port", "tcp/N", "\"tcp/+80\""),
        ("=root", "port", "tcp/N", "\"\""),
        ("tcp/80=", "owner", "uid:N, user:NAME, command:NAME or unit:NAME.service", "nothing"),
        ("tcp/80=root||www-data", "owner", "uid:N, user:NAME", "nothing"),
        ("tcp/80=group:adm", "owner", "uid:N, user:NAME, command:NAME or unit:NAME.service (a bare number is a uid, a bare word a user name)", "\"group:adm\""),
        ("tcp/80=user:", "user", "a name after \"user:\"", "\"user:\""),
        ("tcp/80=uid:-1", "uid", "a uid, a whole number from 0 to 4294967294", "\"-1\""),
        ("tcp/80=uid:4294967295", "uid", "from 0 to 4294967294", "\"4294967295\""),
        ("tcp/80=99999999999", "uid", "from 0 to 4294967294", "\"99999999999\""),
        ("tcp/80=uid:www-data", "uid", "a uid", "\"www-data\""),
        ("tcp/80=command:systemd-resolved", "command", "at most 15 bytes, as /proc/PID/comm holds it", "\"systemd-resolved\" (16 bytes)"),
        ("tcp/80=unit:nginx", "unit", "NAME.service, .scope, .socket, .mount or .swap", "\"nginx\""),
        ("tcp/80=unit:.service", "unit", "NAME.service", "\".service\""),
        ("tcp/80=unit:web.target", "unit", "a systemd unit that runs processes", "\"web.target\""),
        ("tcp/80=command:my app", "command", "a name without spaces, control characters", "\"my app\""),
        ("tcp/80=user:www-data=x", "user", "without spaces, control characters, ',', '|', '#' or '='", "\"www-data=x\""),
        ("tcp/80=command:a\u{1b}[2J", "command", "without spaces, control characters", "\"a\u{1b}[2J\""),
    ])
    func badLine(line: String, field: String, expected: String, found: String) throws {
        let text = "# the web host\n\n" + line + "\n"
        let error = try #require(throws: ExpectationError.self) { try Self.file(text, path: "/etc/hijack-lab/web.expect") }
        #expect(error.place == .init(source: "/etc/hijack-lab/web.expect", line: 3))
        #expect(error.field == field)
        #expect(error.expected.contains(expected), "\(error.expected)")
        #expect(error.found == found)
        let place = "/etc/hijack-lab/web.expect: line 3: " + (field.isEmpty ? "" : "field `\(field)`: ")
        #expect(error.description.hasPrefix(place + "expected "), "\(error.description)")
        // The file's text reaches the terminal escaped.
        #expect(!error.description.utf8.contains(0x1b))
    }

    @Test("Bad inline entries say which entry; a line of several entries says which of them")
    func badEntries() throws {
        let inline = try #require(throws: ExpectationError.self) { try AuditExpectations.parse(inline: "tcp/8080=www-data,udp/53x=dnsmasq") }
        #expect(inline.description == "--expect: entry 2: field `port`: expected tcp/N, udp/N or N (both transports), N a port from 1 to 65535; found \"udp/53x\"")
        let trailing = try #require(throws: ExpectationError.self) { try AuditExpectations.parse(inline: "tcp/8080=www-data,") }
        #expect(trailing.place.entry == 2 && trailing.found == "an empty entry")
        let comment = try #require(throws: ExpectationError.self) { try AuditExpectations.parse(inline: "tcp/8080=www-data # web") }
        #expect(comment.field == "user" && comment.found == "\"www-data # web\"")
        let onLine = try #require(throws: ExpectationError.self) { try Self.file("tcp/80=root\ntcp/81=root, tcp/82=bad:x\n") }
        #expect(onLine.description.hasPrefix("web.expect: line 2: entry 2: field `owner`: expected "))
        let utf8 = try #require(throws: ExpectationError.self) { try AuditExpectations.parse(file: Array("tcp/80=root\n".utf8) + [0x38, 0x30, 0x3d, 0xff, 0x0a], path: "x") }
        #expect(utf8.description == "x: line 2: expected UTF-8 text")
    }

    @Test("A value is a file when such a file exists or it holds no '='; a file that cannot be read is said with errno")
    func fileOrInline() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hijack-lab-expect-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // A file whose name holds '=' is still a file.
        let odd = folder + "/tcp=80"
        try "tcp/80=uid:33\n".write(toFile: odd, atomically: false, encoding: .utf8)
        #expect(try AuditExpectations.load(odd).ports[Port(.tcp, 80)]?.places == [odd + " line 1"])
        // No such file, and a '=': entries, whose port is then wrong.
        let notFile = try #require(throws: ExpectationError.self) { try AuditExpectations.load(folder + "/tcp/80=uid:33") }
        #expect(notFile.place.source == "--expect" && notFile.field == "port")
        let missing = try #require(throws: ExpectationError.self) { try AuditExpectations.load(folder + "/missing") }
        #expect(missing.place.source == folder + "/missing")
        #expect(missing.description.contains("expected a readable file of PORT=OWNER entries") && missing.description.contains("found open: ENOENT"), "\(missing)")
        let directory = try #require(throws: ExpectationError.self) { try AuditExpectations.load(folder) }
        #expect(directory.description.contains("read: EISDIR"), "\(directory)")
        let big = folder + "/big"
        try String(repeating: "# padding\n", count: 110_000).write(toFile: big, atomically: false, encoding: .utf8)
        let tooBig = try #require(throws: ExpectationError.self) { try AuditExpectations.load(big) }
        #expect(tooBig.expected == "a file of at most 1 MiB")
    }

    @Test("The README's expectations file for a web host reads as it says")
    func readmeExample() throws {
        let readme = try String(contentsOfFile: TestLab.packageRoot.appendingPathComponent("README.md").path, encoding: .utf8)
        let start = try #require(readme.range(of: "# /etc/hijack-lab/expect:"))
        let end = try #require(readme[start.lowerBound...].range(of: "```"))
        let expectations = try Self.file(String(readme[start.lowerBound..<end.lowerBound]))
        #expect(expectations.ports[Port(.tcp, 443)]?.owners == [Owner(.unit, "nginx.service"), Owner(.user, "www-data")])
        #expect(expectations.ports[Port(.udp, 53)]?.owners.count == 2 && expectations.ports[Port(.tcp, 53)] != nil)
        #expect(expectations.ports.count == 6)
    }

    @Test("audit --expect: a bad value is a usage error (2) that names the place; help documents it")
    func commandLine() throws {
        let (status, _, err) = AuditFleetTests.run(["audit", "--expect", "tcp/8080=uid:x"])
        #expect(status == 2)
        #expect(err.contains("hijack-lab audit: --expect: entry 1: field `uid`: expected a uid"), "\(err)")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hijack-lab-expect-\(UUID().uuidString)").path
        let missing = AuditFleetTests.run(["audit", "--expect", folder + "/none"])
        #expect(missing.status == 2 && missing.err.contains(folder + "/none: expected a readable file"), "\(missing.err)")
        let help = AuditFleetTests.run(["audit", "--help"])
        for text in ["--expect FILE|LIST", "unexpected-owner", "uid:N, user:NAME, command:NAME", "a bare word", "holds no \"=\"", "--expect 'tcp/443="] {
            #expect(help.out.contains(text), "\(text)")
        }
    }

    // MARK: The rule

    static func socket(_ address: String, port: UInt16 = 8080, uid: UInt32, pid: Int32?, command: String? = nil, inode: UInt64,
                       transport: Transport = .tcp) -> AuditSocket {
        AuditSocket(transport: transport, address: address, port: port, uid: uid, user: uid == 33 ? "www-data" : uid == 0 ? "root" : String(uid), inode: inode,
                    owners: pid.map { [SocketOwner(pid: $0, command: command ?? "p\($0)")] } ?? [])
    }

    /// Units by pid, and user names' uids, as a host would tell them.
    static var context: AuditExpectations.Context {
        AuditExpectations.Context(
            unit: { pid in pid == 10 ? .unit("nginx.service") : pid == 66 ? .unit("session-3.scope") : pid == 99 ? .unreadable : .none },
            uid: { name in name == "www-data" ? 33 : name == "dnsmasq" ? 107 : nil })
    }

    static func report(_ sockets: [AuditSocket], ownersComplete: Bool = true) -> AuditReport {
        AuditReport(namespace: "net:[1]", sockets: sockets, findings: Audit.findings(sockets, context: .init(ipv6: false)), ownersComplete: ownersComplete, skippedRows: 0)
    }

    static func expect(_ text: String, _ sockets: [AuditSocket], ownersComplete: Bool = true) throws -> [AuditFinding] {
        try AuditExpectations.parse(inline: text).findings(report(sockets, ownersComplete: ownersComplete), context: context)
    }

    @Test("A squatter that bound first, the port's only socket, is an alarm that names it, its owner and the expected one")
    func squatter() throws {
        let squatter = Self.socket("0.0.0.0", uid: 1000, pid: 66, command: "python3", inode: 7)
        let findings = try Self.expect("tcp/8080=unit:nginx.service|user:www-data", [squatter])
        #expect(findings.count == 1)
        let finding = try #require(findings.first)
        #expect(finding.kind == .unexpectedOwner && finding.severity == .alarm)
        #expect(finding.transport == .tcp && finding.port == 8080 && finding.inodes == [7] && finding.destinations == ["0.0.0.0"])
        #expect(finding.explanation == "tcp 0.0.0.0:8080 (uid 1000 (1000), pid 66/python3 in session-3.scope) is none of the owners expected on tcp/8080 "
                + "(unit nginx.service or user www-data, from --expect). No socket on tcp/8080 is an expected owner's: if the expected service "
                + "should be listening, this one most likely bound first and keeps it from binding.")
        #expect(finding.fix == "Find who started pid 66 (`ps -o user,lstart,args -p 66`, `systemctl status 66`) and stop it, then restart the expected service; if it belongs on tcp/8080, add it to the expectations.")
        #expect(finding.evidence == "ss -tlnpe 'sport = :8080'")
        #expect(Self.report([squatter]).exitStatus == 0)
        #expect(try AuditExpectations.parse(inline: "tcp/8080=www-data").apply(to: Self.report([squatter]), context: Self.context).exitStatus == 1)
    }

    @Test("A second listener of another owner beside the expected one is an alarm; the expected one is not")
    func beside() throws {
        let nginx = Self.socket("0.0.0.0", port: 443, uid: 33, pid: 10, command: "nginx", inode: 1)
        let intruder = Self.socket("127.0.0.1", port: 443, uid: 0, pid: 66, command: "socat", inode: 2)
        let findings = try Self.expect("tcp/443=unit:nginx.service", [nginx, intruder])
        #expect(findings.map(\.inodes) == [[2]])
        #expect(findings[0].explanation.contains("tcp 127.0.0.1:443 (uid 0 (root), pid 66/socat in session-3.scope) is none of the owners expected on tcp/443"))
        #expect(findings[0].explanation.contains("Beside it, tcp 0.0.0.0:443 (uid 33 (www-data), pid 10/nginx in nginx.service) is the expected owner's"))
        // The report: the interception the rules find, then this finding, after its port's others.
        let applied = try AuditExpectations.parse(inline: "tcp/443=unit:nginx.service").apply(to: Self.report([nginx, intruder]), context: Self.context)
        #expect(applied.findings.map(\.kind) == [.interception, .unexpectedOwner])
        // Every way to name nginx matches it, and none matches the intruder.
        for owner in ["uid:33", "33", "www-data", "user:www-data", "command:nginx", "unit:nginx.service"] {
            #expect(try Self.expect("443=" + owner, [nginx, intruder]).map(\.inodes) == [[2]], "\(owner)")
        }
        // The intruder named too: nothing unexpected.
        #expect(try Self.expect("tcp/443=command:nginx|command:socat", [nginx, intruder]).isEmpty)
        // Another port's or transport's expectation says nothing of this one.
        #expect(try Self.expect("udp/443=uid:1,tcp/80=uid:1", [nginx, intruder]).isEmpty)
    }

    @Test("A user matches by name, or by the uid the name has here where the socket's name is missing")
    func userByUID() throws {
        var unnamed = Self.socket("0.0.0.0", port: 53, uid: 107, pid: 5, inode: 1, transport: .udp)
        unnamed.user = "107"
        #expect(try Self.expect("udp/53=dnsmasq", [unnamed]).isEmpty)
        #expect(try Self.expect("udp/53=user:unbound", [unnamed]).count == 1)
    }

    @Test("A connected UDP socket on an expected port is held to it too")
    func connectedUDP() throws {
        let resolver = Self.socket("127.0.0.53", port: 53, uid: 101, pid: 5, command: "systemd-resolve", inode: 1, transport: .udp)
        var connected = Self.socket("0.0.0.0", port: 53, uid: 1000, pid: 66, command: "evil", inode: 2, transport: .udp)
        connected.remote = "127.0.0.1:40000"
        let findings = try Self.expect("udp/53=command:systemd-resolve", [resolver, connected])
        #expect(findings.map(\.inodes) == [[2]])
        #expect(findings[0].explanation.hasPrefix("udp 0.0.0.0:53 connected to 127.0.0.1:40000 (uid 1000 (1000), pid 66/evil"))
        #expect(findings[0].evidence == "ss -uanpe 'sport = :53'")
    }

    @Test("Owners not seen: a uid or user still decides; a command or unit is a warning that it could not be checked, never a pass")
    func ownersNotSeen() throws {
        let hidden = Self.socket("0.0.0.0", port: 22, uid: 0, pid: nil, inode: 3)
        // uid alone: checked without the process.
        #expect(try Self.expect("tcp/22=uid:0", [hidden], ownersComplete: false).isEmpty)
        let wrongUID = try Self.expect("tcp/22=uid:33", [hidden], ownersComplete: false)
        #expect(wrongUID.map(\.severity) == [.alarm])
        #expect(wrongUID[0].fix?.hasPrefix("Run the audit as root to see which process of uid 0 (root) holds it") == true)
        // A uid that matches passes, whatever else is named.
        #expect(try Self.expect("tcp/22=command:sshd|uid:0", [hidden], ownersComplete: false).isEmpty)
        // A command cannot be checked: a warning, which the exit status counts as incomplete.
        let unchecked = try Self.expect("tcp/22=command:sshd|user:www-data", [hidden], ownersComplete: false)
        #expect(unchecked.map(\.severity) == [.warning])
        #expect(unchecked[0].kind == .unexpectedOwner && AuditExpectations.isUnchecked(unchecked[0]))
        #expect(unchecked[0].explanation == "tcp 0.0.0.0:22 (uid 0 (root), owner not visible) may be none of the owners expected on tcp/22 "
                + "(command sshd or user www-data, from --expect): command sshd cannot be checked, since its process belongs to another user, "
                + "whose descriptors this audit cannot read (root can). Its uid 0 (root) is not user www-data.")
        #expect(unchecked[0].fix == "Run the audit as root, which sees every process, to check command sshd.")
        let audits = [NamespaceAudit(netns: NetworkNamespace(inode: 1, current: true, path: "/proc/1/ns/net"),
                                     report: try AuditExpectations.parse(inline: "tcp/22=command:sshd").apply(to: Self.report([hidden], ownersComplete: false), context: Self.context))]
        #expect(audits[0].report?.exitStatus == 0)
        #expect(AuditCommand.exitStatus(audits, unreadable: 0, allNamespaces: false) == .incomplete)
        // Every process read, and none holds it (a kernel's socket, or a race): said so.
        let kernel = try Self.expect("tcp/22=unit:ssh.service", [hidden])
        #expect(kernel.map(\.severity) == [.warning] && kernel[0].explanation.contains("no process visible here holds the socket"))
        // A process whose cgroup could not be read (it exited): its unit cannot be checked.
        let gone = try Self.expect("tcp/22=unit:ssh.service", [Self.socket("0.0.0.0", port: 22, uid: 0, pid: 99, inode: 3)])
        #expect(gone.map(\.severity) == [.warning] && gone[0].explanation.contains("the cgroup of pid 99 could not be read"))
        // A process seen in no unit at all is simply not that unit.
        #expect(try Self.expect("tcp/22=unit:ssh.service", [Self.socket("0.0.0.0", port: 22, uid: 0, pid: 5, inode: 3)]).map(\.severity) == [.alarm])
    }

    @Test("Several processes on one socket (a master and its workers, socket activation): any of them matches")
    func severalOwners() throws {
        var shared = Self.socket("0.0.0.0", port: 80, uid: 0, pid: 1, command: "systemd", inode: 1)
        shared.owners.append(SocketOwner(pid: 10, command: "nginx"))
        #expect(try Self.expect("tcp/80=unit:nginx.service", [shared]).isEmpty)
        let other = try Self.expect("tcp/80=command:apache2", [shared])
        #expect(other.count == 1 && other[0].explanation.contains("pid 1/systemd, pid 10/nginx in nginx.service"))
        #expect(other[0].fix?.contains("ps -o user,lstart,args -p 1,10") == true)
    }

    @Test("Another namespace's evidence enters it; a path that needs quoting is quoted")
    func evidenceInNamespace() throws {
        let squatter = Self.socket("0.0.0.0", uid: 1000, pid: 66, inode: 7)
        let expectations = try AuditExpectations.parse(inline: "tcp/8080=uid:33")
        let named = NetworkNamespace(inode: 2, names: ["lab"], path: "/run/netns/lab")
        let odd = NetworkNamespace(inode: 3, names: ["it's"], path: "/run/netns/it's")
        let audits = expectations.apply(to: [NamespaceAudit(netns: NetworkNamespace(inode: 1, current: true, path: "/proc/1/ns/net"), report: Self.report([squatter])),
                                             NamespaceAudit(netns: named, report: Self.report([squatter])),
                                             NamespaceAudit(netns: odd, report: Self.report([squatter])),
                                             NamespaceAudit(netns: NetworkNamespace(inode: 4, path: "/proc/9/ns/net"), error: "could not enter it")],
                                        context: Self.context)
        #expect(audits.map { $0.report?.findings.last?.evidence } == ["ss -tlnpe 'sport = :8080'", "nsenter --net=/run/netns/lab ss -tlnpe 'sport = :8080'",
                                                                    "nsenter --net='/run/netns/it'\\''s' ss -tlnpe 'sport = :8080'", nil])
        #expect(audits[3].error == "could not enter it")
    }

    @Test("jsonl and prometheus carry the kind; the table marks the socket")
    func formats() throws {
        let squatter = Self.socket("0.0.0.0", uid: 1000, pid: 66, command: "evil\u{1b}[2J", inode: 7)
        let report = try AuditExpectations.parse(inline: "tcp/8080=uid:33").apply(to: Self.report([squatter]), context: Self.context)
        let audits = [NamespaceAudit(netns: NetworkNamespace(inode: 1, current: true, path: "/proc/1/ns/net"), report: report)]
        let lines = AuditFormats.jsonLines(audits, minimum: .alarm, timestamp: .now()).split(separator: "\n")
        #expect(lines.count == 1)
        let object = try #require(JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(object["kind"] as? String == "unexpected-owner" && object["severity"] as? String == "alarm")
        #expect(AuditFormats.prometheus(audits, duration: 0.1, timestamp: .now())
            .contains("hijack_lab_findings{kind=\"unexpected-owner\",severity=\"alarm\",port=\"8080\",netns=\"1\"} 1"))
        let table = AuditText.render(report)
        #expect(table.contains("[alarm] unexpected-owner tcp/8080: tcp 0.0.0.0:8080 (uid 1000 (1000), 66/evil\\x1b[2J in session-3.scope)"), "\(table)")
        #expect(!table.utf8.contains(0x1b))
        #expect(try JSONDecoder().decode(AuditReport.self, from: Data(AuditJSON.encode(report))) == report)
    }

    @Test("Units come from /proc/PID/cgroup: the unified line, or systemd's own on cgroup v1", arguments: [
        ("0::/system.slice/nginx.service", "nginx.service"),
        ("0::/system.slice/nginx.service/worker", "nginx.service"),
        ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-foo.scope", "app-foo.scope"),
        ("0::/system.slice/system-getty.slice/getty@tty1.service", "getty@tty1.service"),
        ("0::/system.slice/docker-4f3c2a1b0e9d.scope", "docker-4f3c2a1b0e9d.scope"),
        ("0::/init.scope", "init.scope"),
        ("12:pids:/system.slice/ssh.service\n1:name=systemd:/system.slice/ssh.service\n0::/", "ssh.service"),
        ("0::/", "-"),
        ("4:memory:/process_api/4bce\n0::/", "-"),
        ("0::/system.slice", "-"),
    ])
    func units(cgroup: String, expected: String) {
        switch AuditExpectations.unit(fromCgroup: cgroup) {
        case .unit(let unit): #expect(unit == expected)
        case .none: #expect(expected == "-")
        case .unreadable: Issue.record("a text is never unreadable")
        }
    }

    @Test("This process's unit is what its own cgroup names")
    func ownUnit() throws {
        let text = try #require(ProcNet.read("/proc/self/cgroup"))
        #expect(AuditExpectations.ProcessUnits().unit(getpid()) == AuditExpectations.unit(fromCgroup: text))
        #expect(AuditExpectations.ProcessUnits().unit(-1) == .unreadable)
    }
}

/// The rule against a real socket: a squatter that bound first, in a network namespace of its
/// own, so that no other socket on the host can stand on the port.
@Suite("Audit --expect on a live squatter (netns, as root)", .enabled(if: Topology.mayCreateNamespaces(), "needs root or CAP_SYS_ADMIN for a network namespace"))
struct LiveAuditExpectTests {
    final class Outcome: @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        var result: Result<[(status: Int32, out: String, err: String)], SystemError>?
    }

    /// In a thread of its own (unshare moves only the calling thread), in a fresh namespace:
    /// a TCP listener on 127.0.0.1:8080 held by this process, then `audit` run with each
    /// list of arguments, in that thread, where the audit reads that namespace.
    static func squat(_ runs: [[String]]) throws -> [(status: Int32, out: String, err: String)] {
        let outcome = Outcome()
        Thread { [outcome] in
            outcome.result = Result { () throws(SystemError) in
                guard hl_unshare_net() == 0 else { throw SystemError.last("unshare(CLONE_NEWNET)") }
                try AuditSourceTests.loopbackUp()
                let socket = try Socket(family: AF_INET, transport: .tcp)
                defer { try? socket.close() }
                try socket.bind(to: SocketAddress(host: "127.0.0.1", port: 8080)!)
                try socket.listen()
                return runs.map { AuditFleetTests.run(["audit", "--port", "8080"] + $0) }
            }
            outcome.done.signal()
        }.start()
        try #require(outcome.done.wait(timeout: .now() + 60) == .success)
        return try #require(outcome.result).get()
    }

    @Test("A listener of this process on a port expected for another uid, or for nginx: the alarm names it, exit 1; expected, nothing")
    func squatter() throws {
        let other = geteuid() == 65534 ? 65533 : 65534
        let command = try #require(ProcNet.read("/proc/self/comm")).trimmed
        let results = try Self.squat([
            ["--expect", "tcp/8080=uid:\(other)", "--format", "json"],
            ["--expect", "tcp/8080=command:nginx"],
            ["--expect", "tcp/8080=uid:\(geteuid())", "--format", "json"],
            ["--expect", "8080=command:\(command)|unit:nginx.service", "--format", "json"],
        ])
        // Another uid expected: one alarm, on this socket, with this process as its owner.
        let (status, out, err) = results[0]
        #expect(status == 1, "\(err)")
        let report = try JSONDecoder().decode(AuditReport.self, from: Data(out.utf8))
        let socket = try #require(report.sockets.first { $0.address == "127.0.0.1" && $0.port == 8080 }, "\(report.sockets)")
        #expect(socket.owners.contains { $0.pid == getpid() })
        let alarms = report.findings.filter { $0.kind == .unexpectedOwner }
        #expect(alarms.count == 1)
        let alarm = try #require(alarms.first)
        #expect(alarm.severity == .alarm && alarm.inodes == [socket.inode])
        #expect(alarm.explanation.hasPrefix("tcp 127.0.0.1:8080 (uid \(geteuid())"), "\(alarm.explanation)")
        #expect(alarm.explanation.contains("pid \(getpid())/") && alarm.explanation.contains("expected on tcp/8080 (uid \(other), from --expect)"))
        #expect(alarm.explanation.contains("this one most likely bound first"))
        #expect(alarm.evidence == "ss -tlnpe 'sport = :8080'")
        #expect(alarm.fix?.contains("pid \(getpid())") == true)
        // nginx expected: the table says so, escaped, and the status is 1.
        #expect(results[1].status == 1, "\(results[1].err)")
        #expect(results[1].out.contains("[alarm] unexpected-owner tcp/8080: tcp 127.0.0.1:8080"), "\(results[1].out)")
        // The owner it has, by uid or by command: no such finding, and nothing else makes it 1.
        for (status, out, err) in results[2...] {
            #expect(status == 0, "\(err)")
            let report = try JSONDecoder().decode(AuditReport.self, from: Data(out.utf8))
            #expect(report.sockets.count == 1)
            #expect(!report.findings.contains { $0.kind == .unexpectedOwner }, "\(report.findings)")
        }
    }
}

/// --all-netns: the agents' reports come back, and the expectations are held to them here.
@Suite("Audit --expect in every namespace (root, ip)", .enabled(if: Topology.netnsMissing() == nil, "needs root and iproute2's ip"))
struct AuditExpectAllNamespacesTests {
    @Test("A listener in a named namespace, expected for nginx: json, jsonl and prometheus carry the alarm, and it enters that namespace for evidence")
    func namedNamespace() throws {
        let name = "hl-expect-\(UInt32.random(in: 0...UInt32.max))"
        try #require(try AuditAllNamespacesTests.ip(["netns", "add", name]) == 0, "ip netns add \(name)")
        defer { _ = try? AuditAllNamespacesTests.ip(["netns", "delete", name]) }
        // The namespace is this test's alone: no other socket can be on the port there.
        let port = UInt16.random(in: 20_000...29_999)
        let agent = try AuditFleetTests.listener("squatter", "127.0.0.1", port: port, netns: "/run/netns/\(name)")
        defer { agent.kill() }
        let command = try #require(ProcNet.read("/proc/\(agent.pid)/comm")).trimmed

        let base = ["audit", "--all-netns", "--port", String(port)]
        let json = AuditFleetTests.run(base + ["--expect", "tcp/\(port)=command:nginx", "--format", "json"])
        #expect(json.status == 1, "\(json.err)")
        let document = try JSONDecoder().decode(AuditFormats.FleetDocument.self, from: Data(json.out.utf8))
        let audit = try #require(document.namespaces.first { $0.netns.names.contains(name) })
        let report = try #require(audit.report, "\(audit.error ?? "")")
        let alarm = try #require(report.findings.first { $0.kind == .unexpectedOwner })
        #expect(alarm.severity == .alarm)
        #expect(alarm.explanation.contains("tcp 127.0.0.1:\(port) (uid 0 (root), pid \(agent.pid)/\(command)"), "\(alarm.explanation)")
        #expect(alarm.evidence == "nsenter --net=/run/netns/\(name) ss -tlnpe 'sport = :\(port)'")

        let lines = AuditFleetTests.run(base + ["--expect", "tcp/\(port)=command:nginx", "--format", "jsonl", "--min-severity", "alarm"])
        #expect(lines.status == 1)
        #expect(lines.out.split(separator: "\n").contains { $0.contains("\"kind\":\"unexpected-owner\"") && $0.contains("\"\(name)\"") }, "\(lines.out)")
        let metrics = AuditFleetTests.run(base + ["--expect", "tcp/\(port)=command:nginx", "--format", "prometheus"])
        #expect(metrics.out.contains("hijack_lab_findings{kind=\"unexpected-owner\",severity=\"alarm\",port=\"\(port)\",netns=\"\(audit.netns.inode)\"} 1"), "\(metrics.out)")

        // Its own command expected: nothing unexpected anywhere.
        let fine = AuditFleetTests.run(base + ["--expect", "tcp/\(port)=command:\(command)", "--format", "json"])
        let clean = try JSONDecoder().decode(AuditFormats.FleetDocument.self, from: Data(fine.out.utf8))
        let own = try #require(clean.namespaces.first { $0.netns.names.contains(name) }?.report)
        #expect(!own.findings.contains { $0.kind == .unexpectedOwner }, "\(own.findings)")
    }
}
