import Foundation
import Glibc
import Testing
@testable import CHijackLab
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

/// Issue 21: the audit reads each socket's options from the socket itself, and predicts
/// from them who could take its traffic before anyone does.
@Suite("Audit: each socket's own options, and who could take it")
struct AuditOptionsTests {
    /// A socket of this process, with options set before it binds (and listens, for TCP).
    static func plant(_ transport: Transport, _ host: String, port: UInt16, _ options: [SocketOption]) throws -> Socket {
        let address = try #require(SocketAddress(host: host, port: port))
        let socket = try Socket(family: address.family, transport: transport)
        for option in options { try socket.set(option) }
        try socket.bind(to: address)
        if transport == .tcp { try socket.listen() }
        return socket
    }

    /// The planted sockets of the issue, on ports no one else uses; audits of one port each
    /// name only this process as owner (a process another test is spawning holds a copy of
    /// every descriptor until its exec).
    static func plantedAudit(_ plants: [(Transport, String, [SocketOption])]) throws -> (sockets: [Socket], reports: [AuditReport]) {
        var sockets: [Socket] = []
        var reports: [AuditReport] = []
        let me = getpid()
        for (transport, host, options) in plants {
            let port = try Topology.freeHostPort(for: transport)
            sockets.append(try plant(transport, host, port: port, options))
            reports.append(Audit.run(port: port, userNames: .system, source: .sockDiag) { inodes, options, families in
                var scan = SocketOwners.scan(sorted: inodes, readingOptions: options, families: families)
                for index in scan.owners.indices where !scan.owners[index].contains(where: { $0.pid == me }) {
                    scan.owners[index] = []
                    if !scan.options.isEmpty { scan.options[index] = hl_socket_options() }
                }
                scan.owners = scan.owners.map { $0.filter { $0.pid == me } }
                return scan
            })
        }
        return (sockets, reports)
    }

    static let issuePlants: [(Transport, String, [SocketOption])] = [
        (.tcp, "0.0.0.0", [.reusePort]),
        (.udp, "0.0.0.0", [.reuseAddress]),
        (.tcp, "::", [.ipv6Only]),
        (.tcp, "127.0.0.1", []),
    ]

    @Test("The options are read exactly from the live sockets, for any user, and agree with sock_diag")
    func exactOptions() throws {
        let (sockets, reports) = try Self.plantedAudit(Self.issuePlants)
        defer { for socket in sockets { try? socket.close() } }
        let read = try reports.map { try #require($0.sockets.first).options }
        #expect(read[0] == SocketOptions(reuseAddress: false, reusePort: true, type: "SOCK_STREAM", protocol: "IPPROTO_TCP"))
        #expect(read[1] == SocketOptions(reuseAddress: true, reusePort: false, type: "SOCK_DGRAM", protocol: "IPPROTO_UDP"))
        #expect(read[2] == SocketOptions(reuseAddress: false, reusePort: false, v6only: true, type: "SOCK_STREAM", protocol: "IPPROTO_TCP"))
        #expect(read[3] == SocketOptions(reuseAddress: false, reusePort: false, type: "SOCK_STREAM", protocol: "IPPROTO_TCP"))
        #expect(read.map { $0?.compact } == ["reuseport", "reuseaddr", "v6only", "-"])
        // Where sock_diag also says IPV6_V6ONLY, the two agree.
        for report in reports {
            for socket in report.sockets where socket.v6only != nil { #expect(socket.options?.v6only == socket.v6only) }
        }
        // The table shows them in a column of their own; --no-options leaves it out.
        #expect(AuditText.render(reports[0]).split(separator: "\n")[0].contains("OPTIONS"))
        var bare = reports[0]
        bare.sockets = bare.sockets.map { var socket = $0; socket.options = nil; return socket }
        #expect(!AuditText.render(bare).contains("OPTIONS"))
    }

    @Test("On the issue's planted sockets, with no intruder, it predicts who takes what")
    func predictions() throws {
        let (sockets, reports) = try Self.plantedAudit(Self.issuePlants + [(.tcp, "::", [.reusePort]), (.tcp, "127.0.0.1", [.bindToDevice("lo")])])
        defer { for socket in sockets { try? socket.close() } }
        func takes(_ report: AuditReport, _ destination: String, _ who: AuditTake.Who) -> [AuditBind] {
            report.findings.filter { $0.kind == .takeable }.flatMap { $0.takes ?? [] }.first { $0.destination == destination && $0.who == who }?.binds ?? []
        }
        let bind = { (address: String, options: [String]) in AuditBind(address: address, options: options) }
        // 0.0.0.0 with SO_REUSEPORT: the same uid takes 127.0.0.1 with SO_REUSEPORT; another cannot.
        #expect(takes(reports[0], "127.0.0.1", .sameUID).contains(bind("127.0.0.1", ["SO_REUSEPORT"])))
        #expect(takes(reports[0], "127.0.0.1", .otherUID).isEmpty)
        // UDP 0.0.0.0 with SO_REUSEADDR: any uid takes 127.0.0.1 with SO_REUSEADDR.
        #expect(takes(reports[1], "127.0.0.1", .otherUID).contains(bind("127.0.0.1", ["SO_REUSEADDR"])))
        #expect(!takes(reports[1], "127.0.0.1", .otherUID).contains(bind("127.0.0.1", [])))
        // A V6ONLY [::]: any uid takes 127.0.0.1, with no option at all.
        #expect(takes(reports[2], "127.0.0.1", .otherUID).contains(bind("127.0.0.1", [])))
        // A plain 127.0.0.1: any uid takes ::1, and with it "localhost".
        #expect(takes(reports[3], "::1", .otherUID).contains(bind("::1", [])))
        #expect(takes(reports[3], "localhost", .otherUID).contains(bind("::1", [])))
        #expect(takes(reports[3], "127.0.0.1", .otherUID).isEmpty && takes(reports[3], "127.0.0.1", .sameUID).isEmpty)
        for report in reports.prefix(4) {
            let finding = try #require(report.findings.first { $0.kind == .takeable })
            #expect(finding.severity == .warning)
            #expect(finding.inodes == [report.sockets[0].inode])
            #expect(finding.fix?.isEmpty == false)
            #expect(finding.evidence?.hasPrefix("hijack-lab try '") == true)
            #expect(!report.findings.contains { $0.kind == .exposure })
        }
        #expect(reports[0].findings.first { $0.kind == .takeable }?.evidence?.contains("--options SO_REUSEPORT --transport tcp") == true)
        #expect(reports[2].findings.first { $0.kind == .takeable }?.evidence?.contains("--v6only") == true)
        // A dual-stack [::] with SO_REUSEPORT: only its own uid could take anything: info.
        let dual = try #require(reports[4].findings.first { $0.kind == .takeable })
        #expect(dual.severity == .info)
        #expect(dual.takes?.allSatisfy { $0.who == .sameUID } == true)
        #expect(dual.takes?.contains { $0.destination == "127.0.0.1" && $0.binds.contains(bind("127.0.0.1", ["SO_REUSEPORT"])) } == true)
        // A socket bound to a device: the rules stop there, and the family rule speaks.
        #expect(reports[5].sockets[0].options?.device == "lo")
        #expect(!reports[5].findings.contains { $0.kind == .takeable })
    }

    @Test("Reading the options leaves the owner's socket as it was: it accepts, same options, same sock_diag record, no copy left")
    func ownerUnaffected() throws {
        let port = try Topology.freeHostPort(for: .tcp)
        let listener = try Self.plant(.tcp, "127.0.0.1", port: port, [.reuseAddress, .reusePort])
        defer { try? listener.close() }
        func options() -> hl_socket_options {
            var read = hl_socket_options()
            read.state = hl_read_socket_options(listener.fd, &read)
            return read
        }
        func record() -> [hl_diag_socket] { (SockDiag.sockets(.tcp, states: SockDiag.listening) ?? []).filter { $0.local_port == port } }
        // This process's descriptors of the listener's socket: the listener alone, or a copy left.
        // (A count of every descriptor would see the other tests that run beside this one.)
        let inode = record().first?.inode ?? 0
        func descriptors() -> Int {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
            return names.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)) == "socket:[\(inode)]" }.count
        }
        let before = (options(), record(), descriptors())
        for _ in 0..<3 {
            let report = Audit.run(port: port)
            #expect(report.sockets.first?.options?.reusePort == true)
        }
        let after = (options(), record(), descriptors())
        #expect(withUnsafeBytes(of: before.0) { Array($0) } == withUnsafeBytes(of: after.0) { Array($0) })
        #expect(before.0.state == 1 && before.0.reuse_port == 1 && before.0.reuse_address == 1)
        #expect(before.1.count == 1 && before.1.map(\.inode) == after.1.map(\.inode) && before.1.map(\.state) == after.1.map(\.state))
        #expect(before.2 == 1 && after.2 == 1, "the copies are closed")
        // It still accepts: a client connects and is accepted by the owner's socket.
        let client = try Socket(family: AF_INET, transport: .tcp)
        defer { try? client.close() }
        try client.connect(to: try #require(SocketAddress(host: "127.0.0.1", port: port)), until: Deadline.after(seconds: 5))
        let (connection, _) = try listener.accept()
        try connection.close()
    }

    @Test("A socket another process owns has its options read from a copy taken with pidfd_getfd")
    func anotherProcess() throws {
        let port = try Topology.freeHostPort(for: .tcp)
        let victim = try AuditFleetTests.listener("victim", "0.0.0.0", port: port)
        defer { victim.kill() }
        let report = Audit.run(port: port)
        let socket = try #require(report.sockets.first { $0.owners.contains { $0.pid == victim.pid } })
        #expect(socket.options == SocketOptions(reuseAddress: false, reusePort: true, type: "SOCK_STREAM", protocol: "IPPROTO_TCP"))
        // The agent's socket still serves: another same-uid socket joins its group, as SO_REUSEPORT allows.
        let joiner = try Self.plant(.tcp, "0.0.0.0", port: port, [.reusePort])
        try joiner.close()
    }

    @Test("Unknown options say why", arguments: [
        (Int32(0), false, uid_t(1000), UInt32(0), "needs root or uid 0"),
        (Int32(0), true, uid_t(0), UInt32(0), "no process seen here holds it"),
        (-EPERM, true, uid_t(1000), UInt32(33), "needs root or uid 33"),
        (-ENOSYS, true, uid_t(0), UInt32(33), "pidfd_getfd needs Linux 5.6"),
        (-ESRCH, true, uid_t(0), UInt32(33), "its process closed it while it was read"),
    ] as [(Int32, Bool, uid_t, UInt32, String)])
    func unknown(state: Int32, seen: Bool, auditor: uid_t, uid: UInt32, reason: String) {
        var read = hl_socket_options()
        read.state = state
        let options = SocketOptions(read, uid: uid, seen: seen, auditor: auditor)
        #expect(options.unknown == reason)
        #expect(options.compact == "unknown (\(reason))")
        #expect(!options.isKnown && options.reusePort == nil)
    }

    static func bound(_ address: String, v6only: Bool = false, _ options: String = "", uid: UInt32 = 1000, order: Int = 0) -> Audit.Takeover.Bound {
        Audit.Takeover.Bound(address: address, v6only: v6only, reuseAddress: options.contains("a"), reusePort: options.contains("p"), uid: uid, order: order)
    }

    @Test("The rule table: the article's fix leaves nothing to take; a SO_REUSEPORT group shares; v4 before v6; the newest first but for IPv6 SO_REUSEPORT")
    func rules() {
        let destinations = Audit.Takeover.Destinations(interfaces: [["198.51.100.1", "2001:db8::1"]], ipv6: true)
        let fix = [Self.bound("127.0.0.1", order: 0), Self.bound("::1", order: 1), Self.bound("198.51.100.1", order: 2), Self.bound("2001:db8::1", order: 3)]
        #expect(Audit.Takeover.takes(fix, transport: .tcp, port: 8080, destinations: destinations, unprivilegedPortStart: 1024).takes.isEmpty)
        // Below ip_unprivileged_port_start another user binds nothing: a plain 127.0.0.1:80
        // leaves ::1 to root (the same uid here) only.
        let privileged = Audit.Takeover.takes([Self.bound("127.0.0.1", uid: 0)], transport: .tcp, port: 80, destinations: destinations, unprivilegedPortStart: 1024)
        #expect(privileged.takes.allSatisfy { $0.who == .sameUID } && !privileged.takes.isEmpty)
        // Group: two SO_REUSEPORT sockets of one address and uid share; of two uids they cannot bind.
        let group = [Self.bound("0.0.0.0", "p", order: 0), Self.bound("0.0.0.0", "p", order: 1)]
        #expect(Audit.Takeover.receivers(of: "127.0.0.1", among: group) == [0, 1])
        #expect(!Audit.Takeover.canBind(Self.bound("0.0.0.0", "p", uid: 2, order: 1), beside: [group[0]], transport: .tcp))
        // Family: 0.0.0.0 before a dual-stack [::] for IPv4, whichever came first.
        #expect(Audit.Takeover.receivers(of: "127.0.0.1", among: [Self.bound("0.0.0.0", "p", order: 0), Self.bound("::", "p", order: 1)]) == [0])
        #expect(Audit.Takeover.receivers(of: "127.0.0.1", among: [Self.bound("::", "p", order: 0), Self.bound("0.0.0.0", "p", order: 1)]) == [1])
        // Order: UDP SO_REUSEADDR, the newest takes; unless it is IPv6 with SO_REUSEPORT.
        #expect(Audit.Takeover.receivers(of: "::1", among: [Self.bound("::", "a", order: 0), Self.bound("::", "a", uid: 2, order: 1)]) == [1])
        #expect(Audit.Takeover.receivers(of: "::1", among: [Self.bound("::", "a", order: 0), Self.bound("::", "ap", uid: 2, order: 1)]) == [0])
        // A TCP listener's SO_REUSEADDR lets nobody in; UDP's lets every uid in.
        #expect(!Audit.Takeover.canBind(Self.bound("127.0.0.1", "a", uid: 2, order: 1), beside: [Self.bound("0.0.0.0", "a")], transport: .tcp))
        #expect(Audit.Takeover.canBind(Self.bound("127.0.0.1", "a", uid: 2, order: 1), beside: [Self.bound("0.0.0.0", "a")], transport: .udp))
        // Specific IPv6 addresses carry IPV6_V6ONLY as the kernel sets it, so ::1 groups with ::1.
        #expect(Audit.Takeover.receivers(of: "::1", among: [Self.bound("::1", "p", order: 0), Self.bound("::1", "p", order: 1)]) == [0, 1])
        // Every rule is stated for MATRIX.md.
        #expect(Audit.Takeover.rules.count >= 8 && Audit.Takeover.rules.allSatisfy { !$0.rule.isEmpty })
    }
}
