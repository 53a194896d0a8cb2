import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

@Suite("Audit")
struct AuditTests {
    static func fixture(_ name: String) throws -> String {
        try String(contentsOfFile: TestLab.fixtures + "/procnet/" + name, encoding: .utf8)
    }

    @Test("Parses real /proc/net/tcp: hundreds of rows, listeners and an established pair")
    func parsesIPv4() throws {
        let (entries, skipped) = ProcNet.parse(try Self.fixture("tcp"), transport: .tcp)
        #expect(skipped == 0)
        #expect(entries.count == 303)
        let listeners = entries.filter(\.isReceiving)
        #expect(listeners.count == 301)
        #expect(listeners.filter { $0.local == "127.0.0.1" && (20000..<20300).contains($0.port) }.count == 300)
        #expect(listeners.contains { $0.local == "0.0.0.0" && $0.port == 8080 })
        // The accepted and the client side of one connection: established (01), not receiving.
        let established = entries.filter { $0.state == 0x01 }
        #expect(established.count == 2)
        #expect(established.contains { $0.port == 8080 && $0.remote == "127.0.0.1" })
        #expect(established.allSatisfy { !$0.isReceiving })
    }

    @Test("Parses /proc/net/tcp6: ::1, dual-stack [::] and a v4-mapped address, word by word")
    func parsesIPv6() throws {
        let (entries, skipped) = ProcNet.parse(try Self.fixture("tcp6"), transport: .tcp)
        #expect(skipped == 0)
        #expect(Set(entries.map { "\($0.local) \($0.port)" }) == ["::1 5432", ":: 9090", "::ffff:127.0.0.1 9090"])
        #expect(entries.allSatisfy { $0.isReceiving })
    }

    @Test("UDP: a bound socket receives; a connected one only hears its peer")
    func parsesUDP() throws {
        let (entries, _) = ProcNet.parse(try Self.fixture("udp"), transport: .udp)
        #expect(entries.filter(\.isReceiving).map { "\($0.local):\($0.port)" } == ["0.0.0.0:53"])
        #expect(entries.contains { $0.local == "127.0.0.1" && $0.port == 5353 && $0.remotePort == 53 && !$0.isReceiving })
        let (v6, _) = ProcNet.parse(try Self.fixture("udp6"), transport: .udp)
        #expect(v6.map(\.local) == ["::1"])
    }

    @Test("Hex endpoints decode as the kernel prints them", arguments: [
        ("0100007F:1F90", "127.0.0.1", UInt16(8080)),
        ("00000000:0035", "0.0.0.0", 53),
        ("00000000000000000000000001000000:1538", "::1", 5432),
        ("0000000000000000FFFF00000100007F:2382", "::ffff:127.0.0.1", 9090),
        ("B80D0120000000000000000001000000:0050", "2001:db8::1", 80),
    ])
    func endpoints(hex: String, address: String, port: UInt16) throws {
        let decoded = try #require(ProcNet.endpoint(Substring(hex)))
        #expect(decoded.0 == address)
        #expect(decoded.1 == port)
    }

    @Test("Malformed rows are counted and skipped, not fatal")
    func malformed() {
        let text = "  sl  local_address rem_address st ...\n   0: ZZZZ:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1\n   1: short\n"
        let (entries, skipped) = ProcNet.parse(text, transport: .tcp)
        #expect(entries.isEmpty)
        #expect(skipped == 2)
    }

    static func socket(_ address: String, port: UInt16 = 8080, uid: UInt32 = 1000, pid: Int32? = 100, inode: UInt64, transport: Transport = .tcp) -> AuditSocket {
        AuditSocket(transport: transport, address: address, port: port, uid: uid, user: String(uid), inode: inode,
                    owners: pid.map { [SocketOwner(pid: $0, command: "p\($0)")] } ?? [])
    }

    static func kinds(_ sockets: [AuditSocket], context: Audit.Context = Audit.Context()) -> [String] {
        Audit.findings(sockets, context: context).map { "\($0.severity.rawValue) \($0.kind.rawValue)" }.sorted()
    }

    @Test("Findings follow the rules: who takes what, from whom")
    func rules() {
        // Another uid in front of a wildcard: interception; the specific socket takes.
        let findings = Audit.findings([Self.socket("0.0.0.0", uid: 0, pid: 1, inode: 1), Self.socket("127.0.0.1", uid: 65534, pid: 2, inode: 2)])
        #expect(findings.map(\.kind) == [.interception, .exposure])
        #expect(findings[0].inodes == [2, 1])
        #expect(findings[0].destinations == ["127.0.0.1"])
        #expect(findings[0].explanation.contains("127.0.0.1:8080 (uid 65534"))
        // Same uid, other process: shadowing. Same process holding both: the fix, no finding.
        #expect(Self.kinds([Self.socket("0.0.0.0", pid: 1, inode: 1), Self.socket("127.0.0.1", pid: 2, inode: 2)]) == ["warning exposure", "warning shadowing"])
        #expect(Self.kinds([Self.socket("0.0.0.0", pid: 1, inode: 1), Self.socket("127.0.0.1", pid: 1, inode: 2), Self.socket("::", pid: 1, inode: 3)]) == [])
        // A v4-mapped bind shadows 0.0.0.0 like 127.0.0.1 does.
        #expect(Self.kinds([Self.socket("0.0.0.0", uid: 0, pid: 1, inode: 1), Self.socket("::ffff:127.0.0.1", uid: 5, pid: 2, inode: 2)]) == ["alarm interception", "warning exposure"])
        // localhost split across uids: ::1 takes the name's clients.
        #expect(Self.kinds([Self.socket("127.0.0.1", uid: 0, pid: 1, inode: 1), Self.socket("::1", uid: 65534, pid: 2, inode: 2)]) == ["alarm interception"])
        // One family only: exposure; below the unprivileged port start only info.
        #expect(Self.kinds([Self.socket("127.0.0.1", pid: 1, inode: 1)]) == ["warning exposure"])
        #expect(Self.kinds([Self.socket("::1", pid: 1, inode: 1)]) == ["warning exposure"])
        #expect(Self.kinds([Self.socket("127.0.0.1", port: 631, pid: 1, inode: 1)]) == ["info exposure"])
        #expect(Self.kinds([Self.socket("::", pid: 1, inode: 1)]) == [])
    }

    static func v6only(_ socket: AuditSocket, _ flag: Bool?) -> AuditSocket {
        var socket = socket
        socket.v6only = flag
        return socket
    }

    @Test("No false alarms: multicast, a resolver on 127.0.0.53, one daemon on both families, sibling workers, UDP client ports")
    func noFalseAlarms() {
        // Group addresses deliver to every member: nothing is taken from 0.0.0.0.
        #expect(Self.kinds([Self.socket("0.0.0.0", port: 1900, uid: 0, pid: 1, inode: 1, transport: .udp),
                            Self.socket("239.255.255.250", port: 1900, uid: 65534, pid: 2, inode: 2, transport: .udp)], context: .init(ipv6: false)) == [])
        // 127.0.0.53 is not what "localhost" means: no localhost split between the two owners.
        // (::1:53 alone does leave 127.0.0.1:53 free: below 1024, an info-level exposure.)
        #expect(Self.kinds([Self.socket("127.0.0.53", port: 53, uid: 100, pid: 1, inode: 1, transport: .udp),
                            Self.socket("::1", port: 53, uid: 0, pid: 2, inode: 2, transport: .udp)]) == ["info exposure"])
        // Siblings are not one service for shadowing: two programs started by one shell.
        #expect(Self.kinds([Self.socket("0.0.0.0", pid: 1, inode: 1), Self.socket("127.0.0.1", pid: 2, inode: 2)],
                           context: .init(ipv6: false, related: { _, _ in true })) == ["warning shadowing"])
        // sshd: 0.0.0.0 and a V6ONLY [::] in one process.
        #expect(Self.kinds([Self.socket("0.0.0.0", port: 22, uid: 0, pid: 7, inode: 1), Self.v6only(Self.socket("::", port: 22, uid: 0, pid: 7, inode: 2), true)]) == [])
        // A V6ONLY [::] does not take IPv4, but it does take "localhost" (::1 first) from 127.0.0.1,
        // which alone would receive it: the families are split between owners (the matrix shows it).
        #expect(Self.kinds([Self.v6only(Self.socket("::", uid: 0, pid: 1, inode: 1), true), Self.socket("127.0.0.1", uid: 65534, pid: 2, inode: 2)])
            == ["alarm interception"])
        // nginx workers: siblings under one master are one service.
        let workers = [Self.socket("0.0.0.0", pid: 11, inode: 1), Self.socket("0.0.0.0", pid: 12, inode: 2)]
        let siblings = Audit.findings(workers, context: .init(ipv6: false, related: { _, _ in true }))
        #expect(siblings.map(\.kind) == [.loadBalancing])
        #expect(!siblings[0].explanation.contains("unrelated"))
        // A bound UDP socket on an ephemeral port is a client, not a service.
        #expect(Self.kinds([Self.socket("0.0.0.0", port: 45_000, pid: 1, inode: 1, transport: .udp)]) == [])
        // Without IPv6 on the host nobody can bind ::1.
        #expect(Self.kinds([Self.socket("127.0.0.1", pid: 1, inode: 1)], context: .init(ipv6: false)) == [])
    }

    @Test("Hijacks the catalog shows are found: family split, UDP SO_REUSEADDR across uids, a bound device, a connected UDP socket")
    func catalogHijacks() {
        // v6only-leaves-ipv4-open: [::] V6ONLY (root) and 0.0.0.0 (uid 65534).
        let split = Audit.findings([Self.v6only(Self.socket("::", uid: 0, pid: 1, inode: 1), true), Self.socket("0.0.0.0", uid: 65534, pid: 2, inode: 2)])
        #expect(split.map(\.kind) == [.interception])
        #expect(split[0].inodes == [2, 1])
        // udp-reuseaddr-same-address across uids: only SO_REUSEADDR allows it, and the newest gets all.
        let shared = Audit.findings([Self.socket("0.0.0.0", uid: 0, pid: 1, inode: 1, transport: .udp), Self.socket("0.0.0.0", uid: 65534, pid: 2, inode: 2, transport: .udp)],
                                    context: .init(ipv6: false))
        #expect(shared.map(\.kind) == [.interception])
        #expect(shared[0].explanation.contains("most recently bound"))
        // bindtodevice-shadow: 0.0.0.0%lo beside 0.0.0.0, same uid, other process.
        var bound = Self.socket("0.0.0.0", pid: 2, inode: 2)
        bound.device = "lo"
        #expect(Self.kinds([Self.socket("0.0.0.0", pid: 1, inode: 1), bound], context: .init(ipv6: false)) == ["warning shadowing"])
        // A connected UDP socket of another uid takes its peer's datagrams.
        var connected = Self.socket("0.0.0.0", port: 5000, uid: 65534, pid: 2, inode: 2, transport: .udp)
        connected.remote = "127.0.0.1:40000"
        let stolen = Audit.findings([Self.socket("0.0.0.0", port: 5000, uid: 0, pid: 1, inode: 1, transport: .udp), connected], context: .init(ipv6: false))
        #expect(stolen.map(\.kind) == [.interception])
        #expect(stolen[0].explanation.contains("connected to 127.0.0.1:40000"))
        // A V6ONLY [::] alone leaves IPv4 free.
        #expect(Self.kinds([Self.v6only(Self.socket("::", pid: 1, inode: 1), true)]) == ["warning exposure"])
    }

    @Test("Load balancing: noted always, with different uids and unrelated processes called out")
    func loadBalancing() {
        let workers = [Self.socket("0.0.0.0", pid: 10, inode: 1), Self.socket("0.0.0.0", pid: 11, inode: 2), Self.socket("::", pid: 10, inode: 3)]
        let related = Audit.findings(workers, context: .init(related: { _, _ in true }))
        #expect(related.map(\.kind) == [.loadBalancing])
        #expect(!related[0].explanation.contains("unrelated"))
        let strangers = Audit.findings(workers, context: .init(related: { _, _ in false }))
        #expect(strangers[0].explanation.contains("unrelated"))
        var mixed = workers
        mixed[1].uid = 65534
        #expect(Audit.findings(mixed)[0].explanation.contains("different uids (1000, 65534)"))
    }

    @Test("The table's order does not depend on inodes, which change every run")
    func stableOrder() {
        func table(_ victimInode: UInt64, _ attackerInode: UInt64) -> String {
            var bound = Self.socket("0.0.0.0", pid: 2, inode: attackerInode)
            bound.device = "lo"
            let sockets = [Self.socket("0.0.0.0", pid: 1, inode: victimInode), bound,
                           Self.socket("0.0.0.0", port: 9, pid: 3, inode: victimInode + 7), Self.socket("0.0.0.0", port: 9, pid: 4, inode: attackerInode + 7)]
            let report = AuditReport(namespace: "", sockets: sockets, findings: Audit.findings(sockets, context: .init(ipv6: false)), ownersComplete: true, skippedRows: 0)
            return AuditText.render(report, name: { "agent\($0.pid)" })
        }
        #expect(table(10, 20) == table(20, 10))
        #expect(table(10, 20).contains("agent1"))
    }

    @Test("The exit status is 1 only for interception or shadowing")
    func exitStatus() {
        func status(_ sockets: [AuditSocket]) -> Int32 {
            AuditReport(namespace: "", sockets: sockets, findings: Audit.findings(sockets), ownersComplete: true, skippedRows: 0).exitStatus
        }
        #expect(status([Self.socket("127.0.0.1", inode: 1)]) == 0)
        #expect(status([Self.socket("0.0.0.0", pid: 1, inode: 1), Self.socket("127.0.0.1", pid: 2, inode: 2)]) == 1)
    }
}

/// The audit against sockets the lab really created, in its own namespace.
@Suite("Audit on live lab sockets (netns, as root)", .enabled(if: Topology.netnsMissing() == nil, "needs root and iproute2's ip"))
struct LiveAuditTests {
    @Test("Every socket is seen, not only the first page of /proc/net/tcp")
    func morethanOnePage() throws {
        // 200 listeners make /proc/net/tcp about 30 KB: several pages of the kernel's output.
        let sockets = try (0..<200).map { offset -> Socket in
            let socket = try Socket(family: AF_INET, transport: .tcp)
            try socket.bind(to: SocketAddress(host: "127.0.0.3", port: 0)!)
            try socket.listen()
            return socket
        }
        let ports = Set(try sockets.map { try $0.localAddress().port })
        let text = try #require(ProcNet.read("/proc/net/tcp"))
        let seen = ProcNet.parse(text, transport: .tcp).entries.filter { $0.local == "127.0.0.3" && $0.isReceiving }
        #expect(Set(seen.map(\.port)) == ports)
        let owned = Audit.run().sockets.filter { $0.address == "127.0.0.3" }
        #expect(owned.count == 200)
        #expect(owned.allSatisfy { $0.owners.map(\.pid) == [getpid()] })
    }

    @Test("A clean lab namespace has no receiving socket and no finding")
    func clean() throws {
        let runner = Runner(settings: NetworkTests.netnsSettings())
        defer { runner.shutdown() }
        let audit = try runner.auditLab()
        #expect(audit.sockets.isEmpty)
        #expect(audit.findings.isEmpty)
        #expect(audit.exitStatus == 0)
    }

    @Test("The audit finds exactly the planted findings, with the right owners")
    func planted() throws {
        var settings = NetworkTests.netnsSettings()
        settings.auditAll = true
        let runner = Runner(settings: settings)
        defer { runner.shutdown() }

        let shadow = runner.run(try TestLab.scenario("wildcard-then-loopback-reuseport"))
        let shadowAudit = try #require(shadow.audit)
        let victim = try #require(shadow.sockets.first { $0.id == "victim" })
        let attacker = try #require(shadow.sockets.first { $0.id == "attacker" })
        #expect(shadowAudit.sockets.count == 2)
        #expect(shadowAudit.findings.map(\.kind) == [.shadowing, .takeable])
        let shadowing = shadowAudit.findings[0]
        let taker = try #require(shadowAudit.sockets.first { $0.inode == shadowing.inodes[0] })
        let loser = try #require(shadowAudit.sockets.first { $0.inode == shadowing.inodes[1] })
        #expect(taker.owners.map(\.pid) == [attacker.pid!])
        #expect(taker.address == "127.0.0.1")
        #expect(loser.owners.map(\.pid) == [victim.pid!])
        #expect(shadowAudit.exitStatus == 1)

        let split = runner.run(try TestLab.scenario("ipv4-only-leaves-ipv6-loopback-open"))
        let splitAudit = try #require(split.audit)
        #expect(splitAudit.findings.map(\.kind) == [.interception])
        let interception = splitAudit.findings[0]
        let intruder = try #require(splitAudit.sockets.first { $0.inode == interception.inodes[0] })
        #expect(intruder.address == "::1")
        #expect(intruder.uid == 65534)
        #expect(intruder.owners.map(\.pid) == [split.sockets.first { $0.id == "attacker" }!.pid!])

        // What sock_diag adds: IPV6_V6ONLY, and the device of SO_BINDTODEVICE.
        let family = runner.run(try TestLab.scenario("v6only-leaves-ipv4-open"))
        let familyAudit = try #require(family.audit)
        #expect(familyAudit.socketDetails)
        #expect(familyAudit.sockets.first { $0.address == "::" }?.v6only == true)
        #expect(familyAudit.findings.map(\.kind) == [.interception])
        #expect(familyAudit.sockets.first { $0.inode == familyAudit.findings[0].inodes[0] }?.uid == 65534)
        let device = runner.run(try TestLab.scenario("bindtodevice-shadow"))
        let deviceAudit = try #require(device.audit)
        #expect(deviceAudit.sockets.compactMap(\.device) == ["lo"])
        #expect(deviceAudit.findings.contains { $0.kind == .shadowing && $0.explanation.contains("arrives on lo") })

        // The fix leaves no exposure and no interception. The lab runs one process per socket,
        // so its defender is four processes of one uid: the audit, which cannot know they are
        // one service, sees ::1 and 127.0.0.1 split between two of them, and says so.
        let fixed = runner.run(try TestLab.scenario("per-interface-fix-dualstack"))
        let fixedAudit = try #require(fixed.audit)
        #expect(fixedAudit.sockets.count == 4)
        #expect(fixedAudit.findings.map(\.kind) == [.shadowing])
        let pid = { (id: String) in fixed.sockets.first { $0.id == id }!.pid! }
        #expect(fixedAudit.findings[0].inodes.map { inode in fixedAudit.sockets.first { $0.inode == inode }!.owners.map(\.pid) }
            == [[pid("defender-lo6")], [pid("defender-lo4")]])
    }
}
