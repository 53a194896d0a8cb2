import Foundation
import Glibc
import Testing
@testable import CHijackLab
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

/// The audit's fast paths (sock_diag, the byte-buffer table, the hand-written JSON, the
/// streamed /proc/net) against the plain ones they replace: same sockets, same bytes.
@Suite("Audit speed: fast paths say what the plain ones said")
struct AuditSpeedTests {
    static func socket(_ address: String, port: UInt16 = 8080, uid: UInt32 = 1000, user: String? = nil, owners: [SocketOwner], inode: UInt64,
                       transport: Transport = .tcp, v6only: Bool? = nil, device: String? = nil, remote: String? = nil) -> AuditSocket {
        AuditSocket(transport: transport, address: address, port: port, uid: uid, user: user ?? String(uid), inode: inode, owners: owners,
                    v6only: v6only, device: device, remote: remote)
    }

    /// Every shape the output has: hostile and wide names, a tie broken by owner, optionals
    /// set and not, empty arrays, extreme numbers; in no particular order.
    static func sample() -> AuditReport {
        let sockets = [
            socket("127.0.0.1", uid: 65534, user: "nobody", owners: [SocketOwner(pid: 11, command: "x\n[alarm] \"forged\"\\/\u{7f}")], inode: 2,
                   device: "e\u{1b}[8m"),
            socket("0.0.0.0", uid: 0, user: "root", owners: [SocketOwner(pid: 10, command: "nginx"), SocketOwner(pid: Int32.max, command: "zoë e\u{301} 😀😀")], inode: 1),
            socket("::", port: 9090, uid: 0, user: "root", owners: [], inode: UInt64.max, v6only: true),
            socket("0.0.0.0", port: 9090, uid: 0, user: "root", owners: [SocketOwner(pid: 12, command: "b")], inode: 3),
            socket("0.0.0.0", port: 9090, uid: 0, user: "root", owners: [SocketOwner(pid: 13, command: "a")], inode: 4),
            socket("127.0.0.1", port: 5353, uid: 7, user: "\u{202e}evil\u{0}\u{8}\u{c}\t\r", owners: [SocketOwner(pid: 14, command: "dig")], inode: 5,
                   transport: .udp, remote: "127.0.0.53:53"),
            socket("0.0.0.0", port: 5353, uid: 0, owners: [SocketOwner(pid: 15, command: "avahi")], inode: 6, transport: .udp),
            socket("::ffff:127.0.0.1", port: 7070, owners: [SocketOwner(pid: 16, command: "java")], inode: 7, v6only: false),
        ]
        var withOptions = sockets
        withOptions[1].options = SocketOptions(reuseAddress: true, reusePort: false, type: "SOCK_STREAM", protocol: "IPPROTO_TCP")
        withOptions[2].options = SocketOptions(reuseAddress: false, reusePort: true, v6only: true, device: "lo\u{1b}", type: "SOCK_STREAM", protocol: "IPPROTO_TCP")
        withOptions[0].options = .unknown("needs root or uid 65534")
        var findings = Audit.findings(sockets)
        findings.append(AuditFinding(kind: .takeable, severity: .warning, transport: .tcp, port: 1, destinations: ["127.0.0.1", "localhost"], inodes: [1],
                                     explanation: "e", fix: "drop \"SO_REUSEPORT\"", evidence: "hijack-lab try '0.0.0.0:8080'",
                                     takes: [AuditTake(destination: "127.0.0.1", who: .sameUID, binds: [AuditBind(address: "127.0.0.1", options: ["SO_REUSEPORT"]),
                                                                                                       AuditBind(address: "::", options: [])]),
                                             AuditTake(destination: "::1", who: .otherUID, binds: [])]))
        return AuditReport(namespace: "net:[4026531840]", sockets: withOptions, findings: findings, ownersComplete: false,
                           skippedRows: 3, socketDetails: false, source: .proc)
    }

    static func encoded(_ report: AuditReport) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(report))
    }

    static var samples: [AuditReport] {
        var bare = AuditReport(namespace: "", sockets: [], findings: [], ownersComplete: true, skippedRows: 0)
        var detailed = sample()
        detailed.source = .sockDiag
        detailed.socketDetails = true
        bare.source = nil
        return [sample(), detailed, bare]
    }

    @Test("The rules on two threads find what they find on one: the same findings, in the same order")
    func rulesOnTwoThreads() {
        let stream = SocketOptions(reuseAddress: false, reusePort: false, type: "SOCK_STREAM", protocol: "IPPROTO_TCP")
        var sockets: [AuditSocket] = []
        var inode: UInt64 = 1
        func add(_ address: String, _ port: UInt16, uid: UInt32 = 1000, transport: Transport = .tcp, v6only: Bool? = nil, options: SocketOptions? = nil) {
            var socket = Self.socket(address, port: port, uid: uid, owners: [SocketOwner(pid: Int32(inode % 7) + 100, command: "p")], inode: inode,
                                     transport: transport, v6only: v6only)
            socket.options = options
            sockets.append(socket)
            inode += 1
        }
        // Enough ports of six shapes that the second thread takes half of them.
        for index in 0..<(Audit.parallelFrom * 2 + 5) {
            let port = UInt16(1000 + index)
            var reusePort = stream
            reusePort.reusePort = true
            switch index % 6 {
            case 0: add("0.0.0.0", port, options: reusePort); add("127.0.0.1", port, uid: 33, options: stream)
            case 1: add("::", port, v6only: true, options: SocketOptions(reuseAddress: false, reusePort: false, v6only: true, type: "SOCK_STREAM", protocol: "IPPROTO_TCP"))
            case 2: add("0.0.0.0", port, transport: .udp, options: SocketOptions(reuseAddress: true, reusePort: false, type: "SOCK_DGRAM", protocol: "IPPROTO_UDP"))
            case 3: add("127.0.0.1", port, options: .unknown("needs root or uid 1000"))
            case 4: add("0.0.0.0", port, options: reusePort); add("0.0.0.0", port, options: reusePort)
            default: add("::ffff:127.0.0.1", port, v6only: false, options: stream); add("127.0.0.1", port, uid: 0, options: stream)
            }
        }
        sockets.sort(by: AuditSocket.precedes)
        let one = Audit.findings(sockets, context: Audit.Context())
        var split = Audit.Context()
        split.anotherThread = { Audit.Context() }
        let two = Audit.findings(sockets, context: split)
        #expect(one.count > Audit.parallelFrom)
        #expect(Set(one.map(\.kind)).count >= 4)
        #expect(one == two)
    }

    @Test("The hand-written JSON is JSONEncoder's, byte for byte, and parses to the same object")
    func json() throws {
        #expect(try Self.encoded(Self.sample()).count > 1000)
        for report in Self.samples {
            let fast = AuditJSON.encode(report)
            let plain = try Self.encoded(report)
            #expect(fast == plain, "\(String(decoding: fast, as: UTF8.self))")
            let parsed = try JSONSerialization.jsonObject(with: Data(fast)) as? NSDictionary
            let expected = try JSONSerialization.jsonObject(with: Data(plain)) as? NSDictionary
            #expect(parsed != nil && parsed == expected)
            #expect(try JSONDecoder().decode(AuditReport.self, from: Data(fast)) == report)
        }
    }

    @Test("The JSON writer knows every property: one added to the model is a failing test, not a missing key")
    func jsonKeys() {
        let report = Self.sample()
        let properties = { (value: Any) in Mirror(reflecting: value).children.compactMap(\.label).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) } }
        #expect(properties(report) == AuditJSON.reportKeys)
        #expect(properties(report.sockets[0]) == AuditJSON.socketKeys)
        #expect(properties(report.sockets[0].owners[0]) == AuditJSON.ownerKeys)
        #expect(properties(report.findings[0]) == AuditJSON.findingKeys)
        #expect(properties(SocketOptions()) == AuditJSON.optionsKeys)
        #expect(properties(AuditTake(destination: "", who: .sameUID, binds: [])) == AuditJSON.takeKeys)
        #expect(properties(AuditBind(address: "", options: [])) == AuditJSON.bindKeys)
    }

    @Test("The JSON streams in pieces that add up to the document")
    func jsonPieces() throws {
        let report = Self.large()
        var pieces: [[UInt8]] = []
        AuditJSON.write(report) { pieces.append(Array($0)) }
        #expect(pieces.count > 2)
        #expect(pieces.dropLast().allSatisfy { $0.count >= 65_536 && $0.count < 65_536 + 4096 })
        #expect(Array(pieces.joined()) == (try Self.encoded(report)))
    }

    /// Thousands of sockets: a table and a JSON of several pieces.
    static func large() -> AuditReport {
        var sockets: [AuditSocket] = []
        // More rows than two threads take in one chunk each: the table's parallel path, chunks and a remainder.
        for index in 0..<(AuditText.rowChunk * 3 + 17) {
            let address = index % 3 == 0 ? "::1" : "127.0.0.\(1 + index % 3)"
            let owner = SocketOwner(pid: Int32(100 + index % 7), command: "server\(index % 7)")
            sockets.append(socket(address, port: UInt16(10_000 + index / 3), uid: UInt32(index % 2), owners: [owner], inode: UInt64(50_000 - index)))
        }
        return AuditReport(namespace: "net:[1]", sockets: sockets, findings: Audit.findings(sockets), ownersComplete: true, skippedRows: 0, source: .sockDiag)
    }

    @Test("The table is the plain renderer's, character for character", arguments: AuditFinding.Severity.allCases)
    func table(minimum: AuditFinding.Severity) {
        for report in Self.samples + [Self.large()] {
            #expect(AuditText.render(report, minimum: minimum) == ReferenceAuditText.render(report, minimum: minimum))
            // As the report renders it: owners by name, ports as PORT.
            let name = { (owner: SocketOwner) in owner.pid == 11 ? "intruder (\(owner.command))" : "agent\(owner.pid % 3)" }
            let port = { @Sendable (port: UInt16) in port == 8080 ? "PORT" : String(port) }
            #expect(AuditText.render(report, minimum: minimum, name: name, portText: port)
                == ReferenceAuditText.render(report, minimum: minimum, name: name, portText: port))
            // Sorted first, as Audit.run hands it over, and reversed.
            var sorted = report
            sorted.sockets.sort(by: AuditSocket.inOrder)
            #expect(AuditText.render(sorted, minimum: minimum, name: name) == ReferenceAuditText.render(sorted, minimum: minimum, name: name))
            sorted.sockets.reverse()
            #expect(AuditText.render(sorted, minimum: minimum, name: name) == ReferenceAuditText.render(sorted, minimum: minimum, name: name))
        }
    }

    @Test("The fast comparison is inOrder's order, and the fast replacement the standard library's (Foundation's on printable ASCII)")
    func equivalents() {
        var sockets = Self.sample().sockets + Self.large().sockets.prefix(40)
        sockets[0].device = nil
        sockets[1].device = ""
        #expect(sockets.allSatisfy { a in sockets.allSatisfy { b in AuditSocket.precedes(a, b) == AuditSocket.inOrder(a, b) } })
        // The byte order stands in for the standard library's only where both texts are ASCII.
        let texts = ["", "::", "::1", "::ffff:127.0.0.1", "0.0.0.0", "127.0.0.1", "127.0.0.10", "2001:db8::1", "fe80::1%lo", "Z", "a",
                     "é", "e\u{301}", "e\u{301}x", "ÿ", "😀", "\u{212A}", "K", "a long address of more than fifteen bytes"]
        #expect(texts.allSatisfy { a in texts.allSatisfy { b in AuditSocket.textPrecedes(a, b) == (a < b) } })
        let cases = [("pid 1/x", "1/x", "uid 0, pid 1/x and pid 1/xy (pid 1/x)"), ("aa", "b", "aaaaa"), ("pid 2/x", "n", "pid 1/x"),
                     ("pid 1/é", "1/e", "pid 1/é, pid 1/e\u{301}"), ("pid 1/x\r", "1", "pid 1/x\r\n"), (":8080", ":PORT", "127.0.0.1:8080 and [::]:80801"),
                     ("x", "y", ""), ("port 53", "port PORT", "port 53")]
        // Whole characters: "x\r" is not found inside the one character "\r\n", and "é" matches its
        // decomposed spelling. Foundation, which the audit no longer links, agrees on printable ASCII.
        for (target, replacement, text) in cases {
            #expect(AuditText.replacing(target, with: replacement, in: text) == text.replacing(target, with: replacement))
            if (target + text).utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) {
                #expect(AuditText.replacing(target, with: replacement, in: text) == text.replacingOccurrences(of: target, with: replacement))
            }
        }
        #expect(AuditText.replacing("1/e\u{301}", with: "E", in: "pid 1/é") == "pid E")
    }

    @Test("The table streams in pieces of whole lines that, printed as lines, are the text")
    func tablePieces() {
        let report = Self.large()
        var pieces: [String] = []
        AuditText.write(report) { pieces.append($0) }
        #expect(pieces.count > 2)
        #expect(pieces.allSatisfy { !$0.hasSuffix("\n") })
        #expect(pieces.map { $0 + "\n" }.joined() == AuditText.render(report) + "\n")
    }

    @Test("/proc/net parsed as it arrives, in pieces of any size, is /proc/net parsed whole", arguments: [1, 7, 150, 4096])
    func streamed(piece: Int) throws {
        for (name, transport) in [("tcp", Transport.tcp), ("tcp6", .tcp), ("udp", .udp), ("udp6", .udp)] {
            let text = try AuditTests.fixture(name) + "  9: garbage row\n\n"
            let whole = ProcNet.parse(text, transport: transport)
            #expect(whole.skipped == 1)
            var rows = ProcNet.RowReader(protocol: transport.ipProtocol)
            let bytes = Array(text.utf8)
            for start in stride(from: 0, to: bytes.count, by: piece) {
                bytes[start..<min(start + piece, bytes.count)].withUnsafeBytes { rows.feed($0) }
            }
            rows.finish()
            #expect(rows.sockets.map { ProcNetEntry($0) } == whole.entries)
            #expect(rows.skipped == whole.skipped)
        }
    }
}

/// A thread in a network namespace of its own, holding planted sockets while both readers
/// read them: the namespace ends with the thread and the sockets.
@Suite("Audit: sock_diag and /proc/net read the same planted sockets (netns, as root)",
       .enabled(if: Topology.mayCreateNamespaces(), "needs root or CAP_SYS_ADMIN for a network namespace"))
struct AuditSourceTests {
    final class Outcome: @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        var result: Result<(diag: AuditReport, proc: AuditReport, port: [AuditReport], host: String), SystemError>?
    }

    static func loopbackUp() throws(SystemError) {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw SystemError.last("socket") }
        defer { Glibc.close(fd) }
        var request = ifreq()
        withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { $0.copyBytes(from: Array("lo".utf8)) }
        guard ioctl(fd, UInt(SIOCGIFFLAGS), &request) == 0 else { throw SystemError.last("ioctl(SIOCGIFFLAGS)") }
        request.ifr_ifru.ifru_flags |= Int16(IFF_UP)
        guard ioctl(fd, UInt(SIOCSIFFLAGS), &request) == 0 else { throw SystemError.last("ioctl(SIOCSIFFLAGS)") }
    }

    static func plantAndAudit() throws(SystemError) -> (diag: AuditReport, proc: AuditReport, port: [AuditReport], host: String) {
        let host = Audit.namespace
        guard hl_unshare_net() == 0 else { throw SystemError.last("unshare(CLONE_NEWNET)") }
        try loopbackUp()
        var held: [Socket] = []
        defer { for socket in held { try? socket.close() } }
        func plant(_ family: Int32, _ transport: Transport, _ address: String, _ port: UInt16, _ options: [SocketOption] = [],
                   listen: Bool = true) throws(SystemError) -> Socket {
            let socket = try Socket(family: family, transport: transport)
            held.append(socket)
            for option in options { try socket.set(option) }
            try socket.bind(to: SocketAddress(host: address, port: port)!)
            if transport == .tcp && listen { try socket.listen() }
            return socket
        }
        // TCP: a wildcard and a specific address in front of it, a V6ONLY [::] beside 0.0.0.0,
        // ::1 alone, a v4-mapped bind, a reuseport pair, and an established connection (which
        // neither reader may report).
        _ = try plant(AF_INET, .tcp, "0.0.0.0", 8080, [.reusePort])
        _ = try plant(AF_INET, .tcp, "127.0.0.1", 8080, [.reusePort])
        _ = try plant(AF_INET6, .tcp, "::", 9090, [.ipv6Only])
        _ = try plant(AF_INET, .tcp, "0.0.0.0", 9090)
        _ = try plant(AF_INET6, .tcp, "::1", 5432)
        _ = try plant(AF_INET6, .tcp, "::ffff:127.0.0.1", 7070)
        _ = try plant(AF_INET, .tcp, "127.0.0.2", 6060, [.reusePort])
        _ = try plant(AF_INET, .tcp, "127.0.0.2", 6060, [.reusePort])
        let client = try Socket(family: AF_INET, transport: .tcp)
        held.append(client)
        try client.connect(to: SocketAddress(host: "127.0.0.1", port: 8080)!, until: .after(seconds: 5))
        // UDP: a wildcard, one bound to lo, one connected on the same port, ::1 alone, and a
        // connected client on a port nobody receives on (not reported).
        _ = try plant(AF_INET, .udp, "0.0.0.0", 5353, [.reuseAddress])
        _ = try plant(AF_INET, .udp, "0.0.0.0", 5353, [.reuseAddress, .bindToDevice("lo")])
        let connected = try plant(AF_INET, .udp, "127.0.0.1", 5353, [.reuseAddress])
        try connected.connect(to: SocketAddress(host: "127.0.0.1", port: 9)!, until: .after(seconds: 5))
        _ = try plant(AF_INET6, .udp, "::1", 5300)
        let lone = try plant(AF_INET, .udp, "127.0.0.1", 40_000)
        try lone.connect(to: SocketAddress(host: "127.0.0.1", port: 9)!, until: .after(seconds: 5))
        // The planted sockets are this process's alone, and only this process's descriptors
        // are looked at. Another test's posix_spawn copies this process's whole descriptor
        // table into its child, which holds the planted sockets until its exec closes them: a
        // read that lands in that window names the child as a second owner and the other read
        // does not (seen in the full suite: a pid with the spawning thread's name beside
        // this one). Which sockets each source lists, and what the rules make of them, is what
        // is compared; the owner scan is the same code for both.
        let me = getpid()
        let own = { (inodes: [UInt64], options: Bool, families: [UInt8]) -> SocketOwners.Scan in
            var scan = SocketOwners.scan(sorted: inodes, readingOptions: options, families: families)
            scan.owners = scan.owners.map { $0.filter { $0.pid == me } }
            return scan
        }
        func audit(_ port: UInt16?, _ source: AuditReport.Source) -> AuditReport {
            Audit.run(port: port, userNames: .system, source: source, owners: own)
        }
        return (audit(nil, .sockDiag), audit(nil, .proc), [audit(5353, .sockDiag), audit(5353, .proc)], host)
    }

    @Test("Same sockets, same findings, by sock_diag and by /proc/net; V6ONLY, the bound device and the peer from both")
    func bothWays() throws {
        let outcome = Outcome()
        // unshare(CLONE_NEWNET) moves only the calling thread: a thread of its own, never a
        // thread of the test pool.
        Thread { [outcome] in
            outcome.result = Result { () throws(SystemError) in try Self.plantAndAudit() }
            outcome.done.signal()
        }.start()
        try #require(outcome.done.wait(timeout: .now() + 30) == .success)
        let (diag, proc, port, host) = try #require(outcome.result).get()
        #expect(diag.namespace != host && diag.namespace.hasPrefix("net:["))
        #expect(diag.source == .sockDiag && proc.source == .proc)
        #expect(diag.socketDetails && proc.socketDetails)
        #expect(diag.skippedRows == 0 && proc.skippedRows == 0)
        #expect(diag.sockets == proc.sockets)
        #expect(diag.findings == proc.findings)
        #expect(AuditText.render(diag) == AuditText.render(proc))
        #expect(port[0].sockets == port[1].sockets && port[0].findings == port[1].findings)
        #expect(port[0].sockets.count == 3 && port[0].sockets.allSatisfy { $0.port == 5353 })

        let seen = diag.sockets.map { "\($0.transport.rawValue) \($0.endpoint)" + ($0.device.map { "%" + $0 } ?? "") + ($0.remote.map { " -> " + $0 } ?? "") }
        #expect(seen == ["tcp [::1]:5432", "tcp 127.0.0.2:6060", "tcp 127.0.0.2:6060", "tcp [::ffff:127.0.0.1]:7070", "tcp 0.0.0.0:8080",
                         "tcp 127.0.0.1:8080", "tcp 0.0.0.0:9090", "tcp [::]:9090",
                         "udp [::1]:5300", "udp 0.0.0.0:5353", "udp 0.0.0.0:5353%lo", "udp 127.0.0.1:5353 -> 127.0.0.1:9"])
        #expect(diag.sockets.first { $0.address == "::" }?.v6only == true)
        // Binding a specific IPv6 address sets IPV6_V6ONLY in the kernel; a v4-mapped one does not.
        #expect(diag.sockets.first { $0.address == "::1" }?.v6only == true)
        #expect(diag.sockets.first { $0.address == "::ffff:127.0.0.1" }?.v6only == false)
        #expect(diag.sockets.filter { !$0.isIPv6 }.allSatisfy { $0.v6only == nil })
        #expect(diag.sockets.allSatisfy { $0.uid == geteuid() && $0.owners.map(\.pid) == [getpid()] })
        // One process holds them all: shares, and what others could take by the sockets' own
        // options; the port with a device-bound socket keeps the family rule (exposure).
        #expect(Set(diag.findings.map(\.kind)) == [.loadBalancing, .takeable, .exposure])
        #expect(diag.findings.filter { $0.kind == .exposure }.allSatisfy { $0.transport == .udp && $0.port == 5353 })
    }
}

/// The table renderer as it was before it wrote into one buffer: the reference its output is held to.
enum ReferenceAuditText {
    static func render(_ report: AuditReport, minimum: AuditFinding.Severity = .info,
                              name: (SocketOwner) -> String = { "\($0.pid)/\($0.command)" },
                              portText: (UInt16) -> String = { String($0) }) -> String {
        let shown = report.findings.filter { $0.severity >= minimum }
        var lines: [String] = []
        let optionsShown = report.sockets.contains { $0.options != nil }
        let header = ["PROTO", "LOCAL ADDRESS", "PORT"] + (optionsShown ? ["OPTIONS"] : []) + ["UID/USER", "PID/COMMAND", "FINDING"]
        var rows: [[String]] = []
        // Index once: a host can hold tens of thousands of sockets and findings.
        var byInode: [UInt64: [AuditFinding]] = [:]
        for finding in shown { for inode in finding.inodes { byInode[inode, default: []].append(finding) } }
        let socketByInode = Dictionary(report.sockets.map { ($0.inode, $0) }, uniquingKeysWith: { first, _ in first })
        // Ties in the audit's order are broken by the owner's name as shown, not by the inode,
        // so a table that names owners stably (the report's socket ids) reads the same every run.
        var ownerNames: [UInt64: String] = [:]
        for socket in report.sockets { ownerNames[socket.inode] = socket.owners.map(name).joined(separator: ",") }
        let shownOwners = { (socket: AuditSocket) -> String in ownerNames[socket.inode] ?? "" }
        let ordered = report.sockets.sorted { lhs, rhs in
            let left = (lhs.transport.rawValue, lhs.port, lhs.address, lhs.device ?? "", lhs.uid)
            let right = (rhs.transport.rawValue, rhs.port, rhs.address, rhs.device ?? "", rhs.uid)
            return left != right ? AuditSocket.inOrder(lhs, rhs) : (shownOwners(lhs), lhs.inode) < (shownOwners(rhs), rhs.inode)
        }
        for socket in ordered {
            let involved = byInode[socket.inode] ?? []
            let finding = involved.isEmpty ? "-" : involved.map { AuditText.role(of: socket, in: $0) }.joined(separator: ", ")
            let owners = socket.owners.isEmpty ? "?" : socket.owners.map(name).joined(separator: ",")
            let address = socket.address + (socket.device.map { "%\($0)" } ?? "") + (socket.v6only == true ? " v6only" : "")
                + (socket.remote.map { " -> \($0)" } ?? "")
            rows.append(([socket.transport.rawValue, address, portText(socket.port)] + (optionsShown ? [socket.options?.compact ?? "-"] : [])
                            + ["\(socket.uid)/\(socket.user)", owners, finding])
                .map(UntrustedText.terminal))
        }
        // Widths in the UTF-16 units the padding counts: measured in characters, a cell with an
        // emoji (one character, two units) was cut by its own padding.
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].utf16.count }.max() ?? 0 }
        for row in [header] + rows {
            lines.append(row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  "))
        }
        lines.append("")
        if shown.isEmpty {
            lines.append(report.findings.isEmpty ? "No findings." : "No findings at \(minimum.rawValue) or above (\(report.findings.count) below).")
        }
        for finding in shown {
            // Only the finding's own sockets can be named in its explanation, fix and evidence.
            func substituted(_ original: String) -> String {
                var text = original
                if portText(finding.port) != String(finding.port) {
                    text = text.replacingOccurrences(of: ":\(finding.port)", with: ":\(portText(finding.port))")
                        .replacingOccurrences(of: "port \(finding.port)", with: "port \(portText(finding.port))")
                }
                for owner in finding.inodes.compactMap({ socketByInode[$0] }).flatMap(\.owners) {
                    text = text.replacingOccurrences(of: "pid \(owner.pid)/\(owner.command)", with: name(owner))
                }
                return text
            }
            lines.append("[\(finding.severity.rawValue)] \(finding.kind.rawValue) \(finding.transport.rawValue)/\(portText(finding.port)): \(UntrustedText.terminal(substituted(finding.explanation)))")
            if let fix = finding.fix { lines.append("  fix: " + UntrustedText.terminal(substituted(fix))) }
            if let evidence = finding.evidence { lines.append("  evidence: " + UntrustedText.terminal(substituted(evidence))) }
        }
        if !report.ownersComplete {
            lines.append("Some owners are shown as ?: their processes belong to other users. Root sees more.")
        } else if report.sockets.contains(where: { $0.owners.isEmpty }) {
            lines.append("Some owners are shown as ?: no process visible here holds them (one in another PID namespace, or one that just closed them).")
        }
        if !report.socketDetails {
            lines.append("This kernel gave no sock_diag answer: IPV6_V6ONLY and bound devices are unknown, and a lone [::] is read as dual-stack.")
        }
        if report.skippedRows > 0 { lines.append("\(report.skippedRows) rows of /proc/net could not be read and were skipped.") }
        return lines.joined(separator: "\n")
    }

}
