import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent

@Suite("Agent wire: every command and message reads back as written")
struct AgentWireTests {
    static let socket = SocketRequest(transport: .udp, address: "::ffff:127.0.0.1", port: 40_123, options: ["SO_REUSEPORT", "IPV6_V6ONLY"], device: "lab0")

    static let commands: [AgentCommand] = [
        .bind(socket),
        .bind(SocketRequest(transport: .tcp, address: "0.0.0.0", port: 1)),
        .open(socket, listen: true),
        .listen, .serve, .sync,
        .close(waitMilliseconds: nil), .close(waitMilliseconds: 100), .exit(waitMilliseconds: 2000),
        .exec(argv: ["/bin/sh", "-c", "echo \"a\\b\"\n\t\u{1b}[31m"], input: "link set lo up\naddr add 1/8 dev lo", timeoutMilliseconds: 5000),
        .exec(argv: ["/bin/true"], input: nil, timeoutMilliseconds: 1),
        .audit(port: nil), .audit(port: 65_535), .audit(port: 60_001, ephemeral: .all), .audit(port: nil, ephemeral: .seen([1, 4_026_531_840, UInt64.max])),
        .audit(port: nil, ephemeral: .seen([])),
        .sysctl(.icmpRatemask, value: "0"), .sysctl(.icmpRatelimit, value: "1000"),
        .probe(ProbeRequest(transport: .tcp, destinations: [.init(address: "localhost", count: 8), .init(address: "::1", count: 16)], port: 10_000,
                            closes: .serverFirst, timeoutMilliseconds: 2000, labRanges: true)),
    ]

    @Test("Commands", arguments: commands)
    func command(_ command: AgentCommand) throws {
        let line = AgentWire.encode(command)
        #expect(!line.contains(UInt8(ascii: "\n")), "one line per command")
        #expect(try AgentWire.decodeCommand(line) == command)
    }

    static let messages: [AgentMessage] = [
        .event(.ready(pid: 4_194_304, uid: 65_534, failure: nil)),
        .event(.ready(pid: 1, uid: 0, failure: "setuid(65534): EPERM (Operation not permitted)")),
        .event(.accepted(peer: "[::ffff:127.0.0.1]:40000")), .event(.accepted(peer: nil)), .event(.received(peer: "127.0.0.1:5")),
        .reply(.done(calls: [])),
        .reply(.done(calls: [SyscallRecord(call: "socket", arguments: "AF_INET6, SOCK_STREAM", result: .ok),
                             SyscallRecord(call: "setsockopt", arguments: "SO_BINDTODEVICE, \"lo\"", result: .errno("EPERM")),
                             SyscallRecord(call: "bind", arguments: "[::1]:1", result: .notAttempted),
                             SyscallRecord(call: "listen", arguments: "128", result: .notApplicable)])),
        .reply(.executed(SyscallRecord(call: "exec", arguments: "ip -batch -", result: .toolFailed("exit 1")), output: "RTNETLINK answers: File exists\n")),
        .reply(.executed(SyscallRecord(call: "exec", arguments: "ip", result: .toolFailed("signal 9")), output: nil)),
        .reply(.probed(connections: [ProbeConnection(local: "127.0.0.1:50000", identity: "victim 12 0", remote: "127.0.0.1"),
                                     ProbeConnection(error: "ECONNREFUSED", remote: "::1"),
                                     ProbeConnection(local: "[::1]:1", remote: "::1", lost: true, tries: 3)], resolved: ["::1", "127.0.0.1"])),
        .reply(.probed(connections: [], resolved: nil)),
        .reply(.refused(reason: "unknown option SO_\"x\"")),
    ]

    @Test("Replies and events", arguments: messages)
    func message(_ message: AgentMessage) throws {
        let line = AgentWire.encode(message)
        #expect(!line.contains(UInt8(ascii: "\n")), "one line per message")
        #expect(try AgentWire.decodeMessage(line) == message)
    }

    /// The audit travels as AuditJSON writes it, on one line, and comes back through the
    /// audit types' own Decodable conformance: every field, optional ones absent or present.
    @Test("An audit reads back whole")
    func audit() throws {
        let report = AuditSpeedTests.sample()
        let line = AgentWire.encode(.reply(.audited(report)))
        #expect(!line.contains(UInt8(ascii: "\n")))
        #expect(try AgentWire.decodeMessage(line) == .reply(.audited(report)))
        var bare = AuditReport(namespace: "net:[1]", sockets: [], findings: [], ownersComplete: true, skippedRows: 0)
        bare.source = nil
        #expect(try AgentWire.decodeMessage(AgentWire.encode(.reply(.audited(bare)))) == .reply(.audited(bare)))
    }

    @Test("A line that is not the protocol is refused with the reason")
    func unreadable() {
        for line in ["", "[]", "{\"op\":\"dance\"}", "{\"op\":\"bind\"}", "{\"op\":\"sysctl\",\"path\":\"/proc/sys/kernel/panic\",\"value\":\"1\"}",
                     "{\"op\":\"audit\",\"port\":70000}", "{\"reply\":\"done\",\"calls\":[{\"call\":1}]}"] {
            #expect(throws: AgentWire.Unreadable.self, "\(line)") { try AgentWire.decodeCommand(Array(line.utf8)) }
        }
        #expect(throws: AgentWire.Unreadable.self) { try AgentWire.decodeMessage(Array("{\"reply\":\"done\",\"calls\":[{\"call\":1}]}".utf8)) }
    }

    @Test("Syscall results keep the strings of the JSON output", arguments: [
        ("ok", SyscallResult.ok), ("EADDRINUSE", .errno("EADDRINUSE")), ("not-attempted", .notAttempted),
        ("not-applicable", .notApplicable), ("exit 2", .toolFailed("exit 2")), ("signal 15", .toolFailed("signal 15")),
    ])
    func resultText(_ text: String, _ result: SyscallResult) {
        #expect(SyscallResult(text: text) == result)
        #expect(result.text == text)
        #expect("\(SyscallRecord(call: "bind", arguments: "0.0.0.0:1", result: result))" == "bind(0.0.0.0:1) = \(text)")
    }

    @Test("The identity line is read in one place, strictly")
    func identity() {
        #expect(AgentIdentity(line: "victim 42 0") == AgentIdentity(id: "victim", pid: 42, uid: 0))
        #expect(AgentIdentity(line: AgentIdentity(id: "a", pid: 1, uid: 65_534).description) == AgentIdentity(id: "a", pid: 1, uid: 65_534))
        for bad in ["", "victim", "victim 42", "victim x 0", "victim 42 0 extra", " 42 0", "victim  42 0"] {
            #expect(AgentIdentity(line: bad) == nil, "\(bad)")
        }
        #expect(AgentIdentity.receiver(named: "victim 1 0") == "victim")
        #expect(AgentIdentity.receiver(named: "forged line") == "forged")
    }

    @Test("LabError's seconds read as before, without Foundation", arguments: [
        (5.0, 2, "5"), (0.5, 2, "0.5"), (1.25, 2, "1.25"), (1.256, 2, "1.26"), (60.0, 3, "60"), (0.0015, 3, "0.002"), (2.1, 3, "2.1"),
    ])
    func decimals(_ value: Double, _ digits: Int, _ expected: String) {
        #expect(LabError.decimal(value, digits: digits) == expected)
    }

    @Test("The agent's command line, read in the Agent module for any executable that hosts the role")
    func arguments() throws {
        let agent = try Agent(arguments: ["--id", "victim", "--netns", "new", "--user", "other", "--host-client", "--bind-service"])
        #expect(agent.id == "victim" && agent.netns == "new" && agent.runAsOther && agent.hostClient)
        // Another user's agent never keeps CAP_NET_BIND_SERVICE.
        #expect(!agent.bindService)
        #expect(try Agent(arguments: ["--bind-service", "--id", "a"]).bindService)
        for bad in [[], ["--netns", "new"], ["--id"], ["--id", "a", "--user", "root"], ["--id", "a", "--colour"]] {
            #expect(throws: Agent.ArgumentError.self, "\(bad)") { try Agent(arguments: bad) }
        }
    }

    @Test("--user NAME: an account of /etc/passwd, read as a file, never root's; a name it lacks is an error that names it")
    func namedAccount() throws {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nbroken line\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
            + "redis:x:104:110::/var/lib/redis:/usr/sbin/nologin\nwww-data:x:99:99:second:/:/bin/false\n"
        let web = try Agent(arguments: ["--id", "plugin", "--user", "www-data", "--bind-service"], passwd: { passwd })
        #expect(web.account == PasswdFile.Account(name: "www-data", uid: 33, gid: 33))
        #expect(web.runAsOther && !web.bindService)
        #expect(try Agent(arguments: ["--id", "r", "--user", "redis"], passwd: { passwd }).account?.gid == 110)
        #expect(try Agent(arguments: ["--id", "o", "--user", "other"], passwd: { nil }).account == Agent.other)
        #expect(try Agent(arguments: ["--id", "s"], passwd: { passwd }).account == nil)
        func message(_ arguments: [String], _ text: String?) -> String? {
            do { _ = try Agent(arguments: arguments, passwd: { text }); return nil } catch { return error.description }
        }
        #expect(message(["--id", "x", "--user", "memcache"], passwd) == "hijack-lab agent --user memcache: no such account in /etc/passwd")
        #expect(message(["--id", "x", "--user", "root"], passwd)?.contains("uid 0") == true)
        #expect(message(["--id", "x", "--user", "www-data"], nil)?.contains("no such account") == true)
        #expect(message(["--id", "x", "--user", "e\u{1b}[2J"], passwd)?.contains("\u{1b}") == false)
    }
}
