import CHijackLab
import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

/// Issue 9, "give nothing away": names stay in the lab, and each agent holds only the
/// descriptors and capabilities it needs.
@Suite("Isolation: lab names and least privilege")
struct IsolationTests {
    // MARK: - Names

    @Test("The lab resolves names from its own hosts file, in RFC 6724 order whatever the file's order")
    func labHostsOrder() {
        #expect(LabHosts.lab.addresses(for: "localhost").map(\.host) == ["::1", "127.0.0.1"])
        #expect(LabHosts.lab.addresses(for: "LocalHost", port: 80).map(\.description) == ["[::1]:80", "127.0.0.1:80"])
        #expect(LabHosts.lab.addresses(for: "ip6-loopback").map(\.host) == ["::1"])
        #expect(LabHosts.lab.addresses(for: "example.com").isEmpty)
        #expect(LabHosts.lab.names == ["localhost", "ip6-localhost", "ip6-loopback"])
        // Precedence first (::1 50, other IPv6 40, IPv4 35), then the smaller scope
        // (link-local before global), then the file's order; the same for either file order.
        let lines = ["198.51.100.1 many", "127.0.0.1 many", "2001:db8::1 many", "fe80::1 many", "::1 many", "# ::2 many", "127.0.0.2 many # a comment"]
        let expected = ["::1", "fe80::1", "2001:db8::1", "127.0.0.1", "127.0.0.2", "198.51.100.1"]
        #expect(LabHosts(parsing: lines.joined(separator: "\n")).addresses(for: "many").map(\.host) == expected)
        #expect(LabHosts(parsing: lines.reversed().joined(separator: "\n")).addresses(for: "many").map(\.host) == ["::1", "fe80::1", "2001:db8::1", "127.0.0.2", "127.0.0.1", "198.51.100.1"])
        #expect(LabHosts(parsing: "not-an-address many\n127.0.0.1\n").addresses(for: "many").isEmpty)
    }

    static func scenarioText(probing name: String) throws -> String {
        let text = try String(contentsOfFile: "\(TestLab.scenariosDirectory)/ipv4-only-leaves-ipv6-loopback-open.json", encoding: .utf8)
        #expect(text.contains("\"to\": \"localhost\""))
        return text.replacingOccurrences(of: "\"to\": \"localhost\"", with: "\"to\": \"\(name)\"")
    }

    @Test("A name the lab's hosts file does not hold is a scenario error, and the CLI exits 2 before any agent starts")
    func unknownNameIsAnInputError() throws {
        let text = try Self.scenarioText(probing: "example.com")
        let error = #expect(throws: ScenarioError.self) {
            try ScenarioFile.parse(Data(text.utf8), file: "ipv4-only-leaves-ipv6-loopback-open.json")
        }
        #expect(error?.field == "probes[0].to")
        #expect(error?.expected.hasPrefix("an address symbol (wildcard4, loopback4, ") == true)
        #expect(error?.expected.hasSuffix("a name in the lab's hosts file (localhost, ip6-localhost, ip6-loopback) or an address") == true, "\(error?.expected ?? "")")
        #expect(error?.found == "\"example.com\"")

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hijack-lab-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try text.write(toFile: "\(directory)/ipv4-only-leaves-ipv6-loopback-open.json", atomically: true, encoding: .utf8)
        let captured = TestLab.Captured()
        // An executable that does not exist: the error must come before anything is started.
        let status = CLI.run(["run", "ipv4-only-leaves-ipv6-loopback-open", "--scenarios", directory],
                             console: captured.console, agentExecutable: "/nonexistent/hijack-lab")
        #expect(status == 2, "\(captured.out)\(captured.err)")
        #expect(captured.err.contains("field `probes[0].to`: expected an address symbol (") && captured.err.contains("a name in the lab's hosts file"), "\(captured.err)")
    }

    static var realNscdRuns: Bool {
        ["/run/nscd/socket", "/var/run/nscd/socket"].contains { FileManager.default.fileExists(atPath: $0) }
    }

    @Test("A probe to localhost, and the lab's audit, ask no nscd: a stand-in at /var/run/nscd/socket hears nothing from the lab",
          .enabled(if: Topology.netnsMissing() == nil, "needs root and iproute2's ip (the netns topology)"),
          .enabled(if: !realNscdRuns, "an nscd socket already exists: a real nscd runs here"))
    func noNscd() throws {
        let nscd = try StandInNscd()
        defer { _ = nscd.stop() }
        var scenario = try TestLab.scenario("ipv4-only-leaves-ipv6-loopback-open")
        // The lab's audit names uids too: from /etc/passwd, never through nscd.
        scenario.audit = true
        let runner = Runner(settings: LabSettings(agentExecutable: TestLab.agentExecutable, topology: .netns(reason: "tests")))
        let outcome = runner.run(scenario)
        runner.shutdown()
        let lab = Set(runner.startedProcesses.map(\.pid))
        // Every lookup would have happened before the probe's reply; wait a little longer all the same.
        let heard = nscd.waitForVisit(until: .after(seconds: 0.5)) { lab.contains($0.pid) || $0.asksForHosts }
        let visits = nscd.stop()
        #expect(outcome.status == .ran, "\(outcome.error ?? "")")
        #expect(outcome.probes.first { $0.id == "by-name" }?.resolved == ["::1", "127.0.0.1"])
        #expect(outcome.probes.first { $0.id == "by-name" }?.receivedBy == ["attacker": 8])
        // Other tests of this process may look up users meanwhile; none of the lab's processes
        // may connect at all, and nobody may ask for a host.
        #expect(heard == nil, "the stand-in nscd heard \(visits)")
        #expect(!visits.contains { lab.contains($0.pid) || $0.asksForHosts }, "the stand-in nscd heard \(visits)")
        #expect(!FileManager.default.fileExists(atPath: StandInNscd.path))
    }

    // MARK: - Privileges

    static let netAdmin: UInt64 = 1 << 12
    static let audit: UInt64 = 1 << 2 | 1 << 19  // CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE

    /// What /proc says an agent holds, and a descriptor the test leaked on purpose.
    struct Held {
        var status: [String: String]
        var descriptors: [Int32: String]

        init(_ pid: pid_t) throws {
            let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
            status = Dictionary(text.split(separator: "\n").compactMap { line in
                let parts = line.split(separator: ":", maxSplits: 1)
                return parts.count == 2 ? (String(parts[0]), parts[1].trimmingCharacters(in: .whitespaces)) : nil
            }, uniquingKeysWith: { first, _ in first })
            descriptors = [:]
            for entry in try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") {
                guard let fd = Int32(entry) else { continue }
                descriptors[fd] = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(entry)")) ?? "?"
            }
        }

        func mask(_ key: String) -> UInt64? { status[key].flatMap { UInt64($0, radix: 16) } }
    }

    /// A file opened without O_CLOEXEC, as a shell's `exec 7</etc/shadow` leaves one.
    final class LeakedFile {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("hijack-lab-leak-\(UUID().uuidString)").path
        let fd: Int32

        init() throws {
            fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
            if fd == -1 { throw SystemError(call: "open", code: errno) }
            #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC == 0)
        }

        deinit {
            close(fd)
            unlink(path)
        }
    }

    /// Checks one live agent: NO_NEW_PRIVS, exactly the capabilities it is documented to
    /// keep (`effective`, `permitted`; and, when root, the bounding set), and no descriptor
    /// but its pipes and the sockets it made itself.
    static func expectLeast(_ pid: pid_t, _ what: String, effective: UInt64, permitted: UInt64, bounding: UInt64, sockets: Int = 0, leaked: LeakedFile) throws {
        let held = try Held(pid)
        let isRoot = geteuid() == 0
        #expect(held.status["NoNewPrivs"] == "1", "\(what)")
        #expect(held.mask("CapEff") == (isRoot ? effective : 0), "\(what): CapEff \(held.status["CapEff"] ?? "?")")
        #expect(held.mask("CapPrm") == (isRoot ? permitted : 0), "\(what): CapPrm \(held.status["CapPrm"] ?? "?")")
        #expect(held.mask("CapInh") == 0, "\(what)")
        #expect(held.mask("CapAmb") == 0, "\(what)")
        if isRoot { #expect(held.mask("CapBnd") == bounding, "\(what): CapBnd \(held.status["CapBnd"] ?? "?")") }
        #expect(held.descriptors[0]?.hasPrefix("pipe:") == true && held.descriptors[1]?.hasPrefix("pipe:") == true, "\(what): \(held.descriptors)")
        #expect(held.descriptors[2] != nil, "\(what)")
        let own = held.descriptors.filter { $0.key > 2 }
        #expect(own.count == sockets && own.values.allSatisfy { $0.hasPrefix("socket:") }, "\(what) holds \(own)")
        #expect(!held.descriptors.values.contains { $0.hasPrefix(leaked.path) }, "\(what) holds the leaked file")
    }

    @Test("A same-user socket agent holds no capability, sets NO_NEW_PRIVS and gets none of the runner's stray descriptors")
    func sameUserAgent() throws {
        let leaked = try LeakedFile()
        let agent = try AgentClient(executable: TestLab.agentExecutable, id: "least", timeout: 5)
        defer { agent.kill() }
        try agent.awaitReady()
        try Self.expectLeast(agent.pid, "idle socket agent", effective: 0, permitted: 0, bounding: 0, leaked: leaked)
        let calls = try agent.calls(.bind(SocketRequest(transport: .tcp, address: "127.0.0.1", port: 0)))
        #expect(calls.last == SyscallRecord(call: "bind", arguments: "127.0.0.1:0", result: .ok))
        try Self.expectLeast(agent.pid, "bound socket agent", effective: 0, permitted: 0, bounding: 0, sockets: 1, leaked: leaked)
    }

    @Test("The uid 65534 agent holds nothing, not even in its bounding set", .enabled(if: geteuid() == 0, "needs root to start an agent as uid 65534"))
    func otherUserAgent() throws {
        let leaked = try LeakedFile()
        let agent = try AgentClient(executable: TestLab.agentExecutable, id: "least-other", extraArguments: ["--user", "other"], timeout: 5)
        defer { agent.kill() }
        try agent.awaitReady()
        #expect(agent.uid == 65534)
        #expect(try Held(agent.pid).status["Uid"]?.split(separator: "\t").allSatisfy { $0 == "65534" } == true)
        try Self.expectLeast(agent.pid, "uid 65534 agent", effective: 0, permitted: 0, bounding: 0, leaked: leaked)
    }

    @Test("A named account's agent (www-data) runs as that uid and gid, holds no capability, and cannot bind below the unprivileged ports",
          .enabled(if: geteuid() == 0 && PasswdFile.account(named: "www-data", in: ProcNet.read(PasswdFile.path) ?? "") != nil,
                   "needs root and a www-data account in /etc/passwd"))
    func namedAccountAgent() throws {
        let account = try #require(PasswdFile.account(named: "www-data", in: ProcNet.read(PasswdFile.path) ?? ""))
        let leaked = try LeakedFile()
        let agent = try AgentClient(executable: TestLab.agentExecutable, id: "least-named", extraArguments: ["--netns", "new", "--user", "www-data", "--bind-service"], timeout: 5)
        defer { agent.kill() }
        try agent.awaitReady()
        #expect(agent.uid == account.uid)
        let status = try Held(agent.pid).status
        #expect(status["Uid"]?.split(separator: "\t").allSatisfy { $0 == "\(account.uid)" } == true)
        #expect(status["Gid"]?.split(separator: "\t").allSatisfy { $0 == "\(account.gid)" } == true)
        #expect(status["Groups"]?.trimmingCharacters(in: .whitespaces) == "")
        // In a namespace of its own (so that port 80 is the lab's, not the host's), its bounding
        // set keeps CAP_NET_ADMIN as every such agent's does; setuid left it nothing to use.
        try Self.expectLeast(agent.pid, "www-data agent", effective: 0, permitted: 0, bounding: Capability.netAdmin.mask, leaked: leaked)
        // --bind-service is not kept for another account: port 80 is refused as it would be to www-data.
        let calls = try agent.calls(.bind(SocketRequest(transport: .tcp, address: "127.0.0.1", port: 80)))
        #expect(calls.last?.call == "bind")
        #expect(calls.last?.result == .errno("EACCES"))
    }

    @Test("The loopback host client keeps only what the audit needs to read other processes' descriptors, and only in a lab that audits",
          arguments: [false, true])
    func loopbackHostClient(audits: Bool) throws {
        let leaked = try LeakedFile()
        let network = try LabNetwork.make(TestLab.settings(), audits: audits) { _ in }
        defer { network.kill() }
        let kept = audits ? Self.audit : 0
        try Self.expectLeast(network.hostClient.pid, "loopback host client", effective: kept, permitted: kept, bounding: 0, leaked: leaked)
    }

    @Test("A run's host client gets the audit's capabilities only when a scenario audits or --audit asks; before that it holds none")
    func hostClientCapabilitiesByRun() throws {
        let leaked = try LeakedFile()
        let runner = Runner(settings: TestLab.settings())
        defer { runner.shutdown() }
        try runner.prepare()
        let plain = try #require(runner.startedProcesses.last)
        try Self.expectLeast(plain.pid, "host client of a run without --audit", effective: 0, permitted: 0, bounding: 0, leaked: leaked)
        // The first audit makes the clients anew, with the capabilities.
        _ = try runner.auditLab()
        let auditing = try #require(runner.startedProcesses.last)
        #expect(auditing.pid != plain.pid)
        #expect(TestLab.isGone(plain))
        try Self.expectLeast(auditing.pid, "host client of an audit", effective: Self.audit, permitted: Self.audit, bounding: 0, leaked: leaked)
        var settings = TestLab.settings()
        settings.auditAll = true
        let withAudit = Runner(settings: settings)
        defer { withAudit.shutdown() }
        try withAudit.prepare()
        try Self.expectLeast(try #require(withAudit.startedProcesses.last).pid, "host client of run --audit", effective: Self.audit, permitted: Self.audit, bounding: 0, leaked: leaked)
    }

    @Test("The netns clients keep CAP_NET_ADMIN only for the ip they exec, which gets it and nothing else",
          .enabled(if: Topology.netnsMissing() == nil, "needs root and iproute2's ip"))
    func netnsClients() throws {
        let leaked = try LeakedFile()
        // make() itself runs `ip -batch` in both namespaces, so it also shows that ip still works.
        let network = try LabNetwork.make(NetworkTests.netnsSettings(), audits: true) { _ in }
        defer { network.kill() }
        let peer = try #require(network.peerClient)
        try Self.expectLeast(network.hostClient.pid, "netns host client", effective: Self.audit, permitted: Self.audit | Self.netAdmin, bounding: Self.netAdmin, leaked: leaked)
        try Self.expectLeast(peer.pid, "netns peer client", effective: 0, permitted: Self.netAdmin, bounding: Self.netAdmin, leaked: leaked)
        // What a tool the client execs holds: CAP_NET_ADMIN, no new privileges, no stray descriptor.
        let reply = try peer.request(.exec(argv: ["/bin/sh", "-c", "cat /proc/self/status; ls -l /proc/self/fd/"], input: nil, timeoutMilliseconds: 5000))
        guard case .executed(let call, let output) = reply else {
            Issue.record("exec answered \(reply)")
            return
        }
        #expect(call.result == .ok, "\(reply)")
        let lines = (output ?? "").split(separator: "\n")
        func field(_ name: String) -> String? {
            lines.first { $0.hasPrefix(name + ":") }.map { $0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces) }
        }
        #expect(field("CapEff").flatMap { UInt64($0, radix: 16) } == Self.netAdmin)
        #expect(field("CapPrm").flatMap { UInt64($0, radix: 16) } == Self.netAdmin)
        #expect(field("NoNewPrivs") == "1")
        #expect(!(output ?? "").contains(leaked.path))
    }
}

/// A stand-in for nscd: a Unix stream socket where glibc's nscd client connects. It
/// accepts each connection at once, notes who connected (SO_PEERCRED) and what was asked,
/// and closes it, so that a client that does ask falls back without waiting.
final class StandInNscd: @unchecked Sendable {
    static let directory = "/var/run/nscd"
    static let path = directory + "/socket"

    struct Visit: Sendable, CustomStringConvertible {
        var pid: pid_t
        /// glibc's request_type: 4-7 by name or address, 13 the hosts map, 14 getaddrinfo.
        var request: Int32?
        var key: String

        var asksForHosts: Bool { [4, 5, 6, 7, 13, 14].contains(request ?? -1) }
        var description: String { "pid \(pid) request \(request.map(String.init) ?? "?") \"\(key)\"" }
    }

    private let listener: Int32
    private var stopPipe: [Int32] = [-1, -1]
    private let createdDirectory: Bool
    private let lock = NSLock()
    private var visits: [Visit] = []
    private let arrived = DispatchSemaphore(value: 0)
    private let ended = DispatchSemaphore(value: 0)
    /// Only the test's own thread stops it.
    private var stopped = false

    init() throws {
        var created = false
        if !FileManager.default.fileExists(atPath: Self.directory) {
            guard mkdir(Self.directory, 0o755) == 0 else { throw SystemError(call: "mkdir", code: errno) }
            created = true
        }
        createdDirectory = created
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(Self.path.utf8) + [0])
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let bound = fd >= 0 && withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
        guard bound, listen(fd, 64) == 0, hl_pipe_cloexec(&stopPipe) == 0 else {
            let code = errno
            if fd >= 0 { close(fd) }
            if bound { unlink(Self.path) }
            if created { rmdir(Self.directory) }
            throw SystemError(call: "stand-in nscd", code: code)
        }
        listener = fd
        Thread { [self] in serve() }.start()
    }

    private func serve() {
        defer { ended.signal() }
        while true {
            var watched = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0), pollfd(fd: stopPipe[0], events: Int16(POLLIN), revents: 0)]
            if poll(&watched, 2, -1) == -1 { if errno == EINTR { continue } else { return } }
            if watched[0].revents != 0 { answer() }
            if watched[1].revents != 0 { return }
        }
    }

    private func answer() {
        let connection = accept(listener, nil, nil)
        guard connection >= 0 else { return }
        defer { close(connection) }
        // Not inherited by anything spawned meanwhile, should a spawn slip in between.
        _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
        // struct ucred: pid, uid, gid.
        var credentials: [Int32] = [0, 0, 0]
        var length = socklen_t(12)
        _ = getsockopt(connection, SOL_SOCKET, SO_PEERCRED, &credentials, &length)
        // request_header: version, type, key length; then the key.
        var bytes: [UInt8] = []
        let deadline = Deadline.after(seconds: 0.3)
        while bytes.count < 12 || bytes.count < 12 + Int(min(max(Self.int32(bytes, 8), 0), 256)) {
            guard (try? waitFor(connection, events: Int16(POLLIN), until: deadline)) == true else { break }
            var chunk = [UInt8](repeating: 0, count: 512)
            let count = read(connection, &chunk, chunk.count)
            if count <= 0 { break }
            bytes += chunk[..<count]
        }
        let key = bytes.count > 12 ? String(decoding: bytes[12...].prefix { $0 != 0 }, as: UTF8.self) : ""
        lock.withLock { visits.append(Visit(pid: credentials[0], request: bytes.count >= 8 ? Self.int32(bytes, 4) : nil, key: key)) }
        arrived.signal()
    }

    private static func int32(_ bytes: [UInt8], _ offset: Int) -> Int32 {
        guard bytes.count >= offset + 4 else { return 0 }
        return bytes[offset..<offset + 4].withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }
    }

    /// The first visit that `matters`, waiting for one until the deadline; nil if none came.
    func waitForVisit(until deadline: Deadline, matters: (Visit) -> Bool) -> Visit? {
        while true {
            if let visit = lock.withLock({ visits.first(where: matters) }) { return visit }
            let left = deadline.pollTimeout
            if left == 0 || arrived.wait(timeout: .now() + .milliseconds(Int(left))) == .timedOut {
                return lock.withLock { visits.first(where: matters) }
            }
        }
    }

    /// Stops listening and removes the socket, and the directory if this made it. Returns every visit.
    func stop() -> [Visit] {
        if !stopped {
            stopped = true
            _ = write(stopPipe[1], "x", 1)
            ended.wait()
            close(listener)
            unlink(Self.path)
            if createdDirectory { rmdir(Self.directory) }
            close(stopPipe[0])
            close(stopPipe[1])
        }
        return lock.withLock { visits }
    }
}
