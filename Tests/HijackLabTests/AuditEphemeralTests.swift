import Foundation
import Glibc
import Testing
@testable import CHijackLab
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

/// UDP servers in the ephemeral range (issue 21, part 4): a socket there counts when it is
/// bound to an address of its own, when --watch saw it in two audits in a row, or with
/// --include-ephemeral; a resolver's query socket, there for one audit, never does.
@Suite("Audit: UDP sockets in the ephemeral range")
struct AuditEphemeralTests {
    static func udp(_ address: String, port: UInt16, inode: UInt64, pid: Int32 = 100) -> AuditSocket {
        AuditSocket(transport: .udp, address: address, port: port, uid: 1000, user: "1000", inode: inode,
                    owners: [SocketOwner(pid: pid, command: "p\(pid)")])
    }

    static func kinds(_ sockets: [AuditSocket], _ policy: EphemeralUDP) -> [String] {
        Audit.findings(sockets, context: Audit.Context(ephemeralUDP: policy)).map { "\($0.kind.rawValue) \($0.transport.rawValue)/\($0.port)" }
    }

    @Test("The rule: a wildcard socket in the range counts when seen before or included; one on an address of its own always")
    func rule() {
        let mosh = Self.udp("0.0.0.0", port: 60_001, inode: 1)
        #expect(Self.kinds([mosh], .bound) == [])
        #expect(Self.kinds([mosh], .seen([2])) == [])
        #expect(Self.kinds([mosh], .seen([1])) == ["exposure udp/60001"])
        #expect(Self.kinds([mosh], .all) == ["exposure udp/60001"])
        // Only bind() gives an unconnected UDP socket an address of its own: kept on purpose.
        #expect(Self.kinds([Self.udp("127.0.0.1", port: 47_556, inode: 3)], .bound) == ["exposure udp/47556"])
        #expect(Self.kinds([Self.udp("::1", port: 47_556, inode: 4)], .bound) == ["exposure udp/47556"])
        // Outside the range nothing changes: 5555 is a server's whatever the policy.
        #expect(Self.kinds([Self.udp("0.0.0.0", port: 5555, inode: 5)], .bound) == ["exposure udp/5555"])
        // A query's wildcard socket beside a kept one on the port holds its family: whatever
        // holds an address counts for "held", only what is kept can be exposed.
        // (The same process's, as two processes' wildcards of one family each are a split.)
        let query6 = AuditSocket(transport: .udp, address: "::", port: 60_001, uid: 1000, user: "1000", inode: 6,
                                 owners: [SocketOwner(pid: 100, command: "p100")], v6only: true)
        #expect(Self.kinds([mosh, query6], .seen([1])) == [])
        #expect(Self.kinds([mosh, query6], .all) == [])
        // The other rules never set the range aside: UDP sockets of two uids sharing one
        // address there is an interception, for a one-shot audit too.
        var other = Self.udp("0.0.0.0", port: 50_000, inode: 8, pid: 200)
        other.uid = 65_534
        #expect(Self.kinds([Self.udp("0.0.0.0", port: 50_000, inode: 7), other], .bound) == ["interception udp/50000"])
    }

    @Test("Findings found again under a policy replace the port's own, in the rules' order")
    func applying() throws {
        let range = Audit.ephemeralPorts
        try #require(range.count > 10)
        let inRange = range.upperBound - 1
        let sockets = [AuditSocket(transport: .tcp, address: "0.0.0.0", port: 80, uid: 0, user: "root", inode: 1, owners: [SocketOwner(pid: 1, command: "a")]),
                       Self.udp("0.0.0.0", port: 5555, inode: 2), Self.udp("0.0.0.0", port: inRange, inode: 3)]
        let context = Audit.Context(unprivilegedPortStart: Audit.unprivilegedPortStart, ephemeral: range, ipv6: Audit.ipv6Available)
        let report = AuditReport(namespace: "", sockets: sockets, findings: Audit.findings(sockets, context: context), ownersComplete: true, skippedRows: 0)
        #expect(Audit.applying(.bound, to: report) == report)
        #expect(Audit.applying(.seen([2]), to: report) == report)
        let all = Audit.applying(.all, to: report)
        var including = context
        including.ephemeralUDP = .all
        let again = Audit.findings(sockets, context: including)
        #expect(all.findings.map(\.inodes) == again.map(\.inodes))
        #expect(all.findings.contains { $0.port == inRange && $0.evidence != nil })
    }

    final class Outcome: @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        var result: Result<Watched, SystemError>?
    }

    struct Watched {
        var range: ClosedRange<UInt16>
        var steps: [[String]]
        var queryPort: UInt16
        var answer: String?
        var oneShot: AuditReport
        var included: AuditReport
    }

    /// In a network namespace of this thread's own: a mosh-like server on a wildcard, one on
    /// an address of its own, and a resolver on 127.0.0.1:53; the watcher stepped by hand
    /// around a query socket that lives for one audit.
    static func watchInNamespace() throws(SystemError) -> Watched {
        guard hl_unshare_net() == 0 else { throw SystemError.last("unshare(CLONE_NEWNET)") }
        try AuditSourceTests.loopbackUp()
        var held: [Socket] = []
        defer { for socket in held { try? socket.close() } }
        func udp(_ address: String, _ port: UInt16) throws(SystemError) -> Socket {
            let socket = try Socket(family: address.contains(":") ? AF_INET6 : AF_INET, transport: .udp)
            held.append(socket)
            try socket.bind(to: SocketAddress(host: address, port: port)!)
            return socket
        }
        // A new namespace starts with the kernel's default range, 32768-60999.
        let range = Audit.ephemeralPorts
        let resolver = try udp("127.0.0.1", 53)
        _ = try udp("0.0.0.0", 60_001)
        _ = try udp("127.0.0.1", 60_002)
        // The audit as `hijack-lab audit --watch` makes it, here: this thread's namespace.
        let source = AuditSource(port: nil, allNamespaces: false, agentExecutable: TestLab.agentExecutable)
        let watcher = AuditWatcher { seen in source.audit(seen: seen).audits }
        var steps = [watcher.step(), watcher.step()]

        // A resolver's query: bound (port 0: the kernel picks one in the range), one datagram
        // sent and answered, and closed after one audit.
        let query = try Socket(family: AF_INET, transport: .udp)
        held.append(query)
        try query.bind(to: SocketAddress(host: "0.0.0.0", port: 0)!)
        let queryPort = try query.localAddress().port
        try query.send("query", to: SocketAddress(host: "127.0.0.1", port: 53)!)
        if let asked = try resolver.receive(until: .after(seconds: 10)), let from = asked.from {
            try resolver.send("answer", to: from)
        }
        let answer = try query.receive(until: .after(seconds: 10))?.text
        let oneShot = source.audit().audits[0].report!
        var including = source
        including.includeEphemeral = true
        let included = including.audit().audits[0].report!
        steps.append(watcher.step())
        var status = stat()
        guard fstat(query.fd, &status) == 0 else { throw SystemError.last("fstat") }
        try query.close()
        // Closed here is not yet gone: a child that another test is spawning (posix_spawn's
        // clone, before its exec) holds a copy of every descriptor of this process for a
        // moment, and the socket lives until that copy closes. An audit then really sees it,
        // for a second time or without an owner, so the next step waits until the kernel
        // lists it no more.
        let gone = Deadline.after(seconds: 10)
        var nothing: [pollfd] = []
        // Without udp_diag (no sock_diag for UDP) there is nothing to ask, and the step goes on.
        while SockDiag.sockets(.udp, states: SockDiag.everyState)?.contains(where: { $0.inode == UInt64(status.st_ino) }) == true {
            guard !gone.hasPassed else { throw SystemError(call: "the query socket, closed, still listed after 10 s", code: ETIMEDOUT) }
            // Nothing to be told of: the kernel is asked again a millisecond later.
            _ = try? Syscall.poll(&nothing, timeoutMilliseconds: 1)
        }
        steps.append(watcher.step())
        return Watched(range: range, steps: steps, queryPort: queryPort, answer: answer, oneShot: oneShot, included: included)
    }

    @Test("--watch: a UDP server kept on 60001 appears on the second audit; a resolver's query socket, one audit long, never",
          .enabled(if: Topology.mayCreateNamespaces(), "needs root or CAP_SYS_ADMIN for a network namespace"))
    func watch() throws {
        let outcome = Outcome()
        // unshare(CLONE_NEWNET) moves only the calling thread: a thread of its own.
        Thread { [outcome] in
            outcome.result = Result { () throws(SystemError) in try Self.watchInNamespace() }
            outcome.done.signal()
        }.start()
        try #require(outcome.done.wait(timeout: .now() + 60) == .success)
        let watched = try #require(outcome.result).get()
        try #require(watched.range.contains(60_001) && watched.range.contains(60_002) && watched.range.contains(watched.queryPort), "\(watched.range)")
        #expect(watched.answer == "answer", "the query was answered")

        // First audit: the socket bound to 127.0.0.1 counts at once, the wildcard one not yet.
        let first = watched.steps[0].joined(separator: "\n")
        #expect(first.contains("appears [warning] takeable udp/60002:"), "\(first)")
        #expect(first.contains("appears [info] takeable udp/53:"), "\(first)")
        #expect(!first.contains("udp/60001"), "\(first)")
        // Second: kept for two audits in a row, it is a server's.
        #expect(watched.steps[1].count == 1 && watched.steps[1][0].contains("appears [warning] takeable udp/60001: A new socket could bind beside these now, by their own options (0.0.0.0:60001"), "\(watched.steps[1])")
        // The query socket was there for the third audit only: nothing appears, nothing clears.
        #expect(watched.steps[2].isEmpty, "\(watched.steps[2])")
        #expect(watched.steps[3].isEmpty, "\(watched.steps[3])")
        #expect(!watched.steps.joined().contains { $0.contains(":\(watched.queryPort)") || $0.contains("/\(watched.queryPort)") })

        // One-shot, while the query was open: the bound one, not the wildcards in the range.
        let udpPorts = { (report: AuditReport) in Set(report.findings.filter { $0.transport == .udp }.map(\.port)) }
        #expect(watched.oneShot.sockets.contains { $0.port == watched.queryPort })
        #expect(udpPorts(watched.oneShot) == [53, 60_002])
        // --include-ephemeral counts every one, the query's too: that is what it is for.
        #expect(udpPorts(watched.included) == [53, 60_001, 60_002, watched.queryPort])
        let mosh = try #require(watched.included.findings.first { $0.port == 60_001 })
        #expect(mosh.evidence?.hasPrefix("hijack-lab try '0.0.0.0:60001'") == true && mosh.fix?.contains("[::]:60001") == true, "\(mosh)")
    }
}

/// The same rule through an agent in another namespace (`--all-netns`): the policy travels
/// with the audit command, since only the namespace itself knows its range.
@Suite("Audit: the ephemeral range through an agent (root, ip)", .enabled(if: Topology.netnsMissing() == nil, "needs root and iproute2's ip"))
struct AuditEphemeralAgentTests {
    @Test("FleetAudit and audit --all-netns --include-ephemeral: a wildcard UDP socket on 60001 counts when seen or included")
    func throughAgent() throws {
        let name = "hl-test-\(UInt32.random(in: 0...UInt32.max))"
        try #require(try AuditAllNamespacesTests.ip(["netns", "add", name]) == 0, "ip netns add \(name)")
        // Deleted on every path: a name left under /run/netns outlives the test.
        defer { _ = try? AuditAllNamespacesTests.ip(["netns", "delete", name]) }
        try #require(try AuditAllNamespacesTests.ip(["-n", name, "link", "set", "lo", "up"]) == 0)
        let path = "/run/netns/\(name)"
        let server = try AgentClient(executable: TestLab.agentExecutable, id: "mosh", extraArguments: ["--netns", path], timeout: 10)
        defer { server.kill() }
        try server.awaitReady()
        let calls = try server.calls(.open(SocketRequest(transport: .udp, address: "0.0.0.0", port: 60_001), listen: false))
        try #require(calls.last?.result == .ok, "\(calls)")

        var status = stat()
        try #require(stat(path, &status) == 0)
        let namespace = NetworkNamespace(inode: UInt64(status.st_ino), names: [name], path: path)
        func audit(_ policy: EphemeralUDP) throws -> AuditReport {
            let audits = FleetAudit.audit([namespace], port: 60_001, agentExecutable: TestLab.agentExecutable, timeout: 10, ephemeral: { _ in policy })
            return try #require(audits.first?.report, "\(audits.first?.error ?? "no audit")")
        }
        let bound = try audit(.bound)
        let socket = try #require(bound.sockets.first { $0.port == 60_001 && $0.owners.map(\.pid) == [server.pid] })
        #expect(bound.findings.isEmpty)
        #expect(try audit(.seen([socket.inode + 1])).findings.isEmpty)
        #expect(try audit(.seen([socket.inode])).findings.map(\.kind) == [.takeable])
        #expect(try audit(.all).findings.map(\.kind) == [.takeable])

        // The command line, end to end: jsonl names the namespace by its name.
        let plain = AuditFleetTests.run(["audit", "--all-netns", "--port", "60001", "--format", "jsonl"])
        #expect(!plain.out.split(separator: "\n").contains { $0.contains("\"\(name)\"") }, "\(plain.out)")
        let included = AuditFleetTests.run(["audit", "--all-netns", "--include-ephemeral", "--port", "60001", "--format", "jsonl"])
        #expect(included.out.split(separator: "\n").contains { $0.contains("\"\(name)\"") && $0.contains("\"takeable\"") && $0.contains("\"evidence\"") },
                "\(included.out)\(included.err)")
    }
}
