import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

/// Every finding says what to do next (`fix`) and how to see it (`evidence`), issue 21 part 5:
/// the evidence is a `hijack-lab try` that try's own parser takes, for every shape of socket.
@Suite("Audit: every finding has a fix and an evidence command that try takes")
struct AuditNextStepsTests {
    static func socket(_ address: String, uid: UInt32 = 1000, pid: Int32? = 100, inode: UInt64, v6only: Bool? = nil, device: String? = nil,
                       options: SocketOptions? = nil) -> AuditSocket {
        var socket = AuditSocket(transport: .tcp, address: address, port: 8080, uid: uid, user: uid == 0 ? "root" : String(uid), inode: inode,
                                 owners: pid.map { [SocketOwner(pid: $0, command: "p\($0)")] } ?? [], v6only: v6only, device: device)
        socket.options = options
        return socket
    }

    /// Every shape an address, its options and its device take, as the audit reads them.
    static let shapes: [AuditSocket] = [
        socket("0.0.0.0", uid: 0, pid: 1, inode: 1, options: SocketOptions(reuseAddress: true, reusePort: false)),
        socket("0.0.0.0", uid: 65_534, pid: 2, inode: 2, options: SocketOptions(reuseAddress: true, reusePort: true)),
        socket("0.0.0.0", uid: 0, pid: 3, inode: 3, options: .unknown("needs root or uid 0")),
        socket("::", uid: 0, pid: 4, inode: 4, v6only: true),
        socket("::", uid: 65_534, pid: 5, inode: 5),
        socket("::", uid: 0, pid: 6, inode: 6, options: SocketOptions(reuseAddress: false, reusePort: true, v6only: false)),
        socket("127.0.0.1", uid: 65_534, pid: 7, inode: 7, options: SocketOptions(reuseAddress: nil, reusePort: true)),
        socket("127.0.0.1", uid: 0, pid: 8, inode: 8),
        socket("::1", uid: 65_534, pid: 9, inode: 9, v6only: true),
        socket("::ffff:127.0.0.1", uid: 65_534, pid: 10, inode: 10, v6only: false),
        socket("127.0.0.53", uid: 101, pid: 11, inode: 11),
        socket("10.0.0.5", uid: 65_534, pid: 12, inode: 12),
        socket("::ffff:10.0.0.5", uid: 65_534, pid: 13, inode: 13),
        socket("fe80::1", uid: 65_534, pid: 14, inode: 14),
        socket("198.51.100.1", uid: 65_534, pid: 15, inode: 15),
        socket("2001:db8::1", uid: 65_534, pid: 16, inode: 16),
        socket("0.0.0.0", uid: 65_534, pid: 17, inode: 17, device: "lo"),
        socket("0.0.0.0", uid: 65_534, pid: 18, inode: 18, device: "lab0"),
        socket("0.0.0.0", uid: 65_534, pid: 19, inode: 19, device: "eth0"),
        socket("127.0.0.1", uid: 0, pid: 20, inode: 20, options: SocketOptions(reuseAddress: false, reusePort: false, device: "lo")),
        socket("224.0.0.251", uid: 0, pid: 21, inode: 21),
        socket("ff02::fb", uid: 0, pid: 22, inode: 22),
        socket("0.0.0.0", uid: 65_534, pid: nil, inode: 23),
        socket("::ffff:0.0.0.0", uid: 1000, pid: 24, inode: 24, v6only: false),
        socket("::", uid: 0, pid: 25, inode: 25, v6only: false, options: .unknown("no process seen holds it")),
    ]

    /// The words of a command as sh reads them: single quotes only, and nothing else the shell
    /// would expand or act on outside them.
    static func words(_ command: String) throws -> [String] {
        var words: [String] = []
        var current = ""
        var quoted = false
        var inWord = false
        for character in command {
            if quoted {
                if character == "'" { quoted = false } else { current.append(character) }
                continue
            }
            switch character {
            case "'":
                quoted = true
                inWord = true
            case " ":
                if inWord { words.append(current) }
                current = ""
                inWord = false
            default:
                try #require(!"\"\\$;&|<>()`*?[]#~!{}\t\n".contains(character), "\(character) unquoted in \(command)")
                current.append(character)
                inWord = true
            }
        }
        try #require(!quoted, "an unclosed quote in \(command)")
        if inWord { words.append(current) }
        return words
    }

    /// The evidence line read as try reads it: the command before the comment, parsed by
    /// try's own argument reader and `TryCommand.parse`.
    static func parse(_ evidence: String) throws -> (request: TryRequest, comment: String?) {
        let parts = evidence.split(separator: "  # ", maxSplits: 1).map(String.init)
        let words = try Self.words(parts[0])
        try #require(words.count > 2 && words[0] == "hijack-lab" && words[1] == "try", "\(evidence)")
        let arguments = try Arguments(Array(words.dropFirst(2)), command: "try", options: TryCommand.options)
        try #require(arguments.operands.count == 1 && !arguments.help, "\(evidence)")
        return (try TryCommand.parse(arguments.operands[0], arguments).request, parts.count > 1 ? parts[1] : nil)
    }

    static func findings(_ sockets: [AuditSocket], startTimes: Bool) -> [AuditFinding] {
        Audit.findings(sockets, context: Audit.Context(startTime: { startTimes ? UInt64($0) : nil }))
    }

    @Test("Every finding of every pair of shapes, both transports, has a one-line fix and an evidence try parses, of the socket at risk")
    func everyShape() throws {
        var kinds: Set<AuditFinding.Kind> = []
        var checked = 0
        for transport in Transport.allCases {
            let shapes = Self.shapes.map { shape in
                var shape = shape
                shape.transport = transport
                return shape
            }
            // Alone, in pairs, the three wildcards of 0.0.0.0 together, and a connected UDP socket.
            var sets = shapes.map { [$0] } + shapes.indices.flatMap { one in shapes.indices.filter { $0 > one }.map { [shapes[one], shapes[$0]] } }
            sets.append(Array(shapes[0...2]))
            if transport == .udp {
                var connected = Self.socket("127.0.0.1", uid: 65_534, pid: 30, inode: 30)
                connected.transport = .udp
                connected.remote = "127.0.0.1:53"
                sets.append([shapes[0], connected])
            }
            for set in sets {
                for startTimes in [false, true] {
                    for finding in Self.findings(set, startTimes: startTimes) {
                        kinds.insert(finding.kind)
                        let fix = try #require(finding.fix, "\(finding)")
                        let evidence = try #require(finding.evidence, "\(finding)")
                        #expect(!fix.contains("\n") && !evidence.contains("\n"))
                        let (request, comment) = try Self.parse(evidence)
                        #expect(request.transports == [transport], "\(evidence)")
                        #expect(request.port == 8080, "\(evidence)")
                        // The socket at risk: the loser of a take (the receiver, beside a connected
                        // socket; a share's member other than the likely intruder), the exposed one.
                        let members = finding.inodes.map { inode in set.first { $0.inode == inode }! }
                        let atRisk: AuditSocket
                        switch finding.kind {
                        case .interception, .shadowing:
                            if let receiver = members.first(where: { $0.remote == nil }), members.contains(where: { $0.remote != nil }) {
                                atRisk = receiver
                            } else if members.count > 2 || (members[0].address == members[1].address && members[0].device == members[1].device) {
                                atRisk = members.first { $0.inode != finding.likelyIntruder } ?? members[0]
                            } else {
                                atRisk = members[1]
                            }
                        default: atRisk = members[0]
                        }
                        #expect(request.bind.numericHost == AuditNextSteps.tryAddress(atRisk).host, "\(evidence) for \(atRisk.label)")
                        // Its options, V6ONLY and device, where known; said in the comment where not.
                        if let options = atRisk.options, options.isKnown {
                            #expect(request.options.names.contains("SO_REUSEPORT") == (options.reusePort == true), "\(evidence)")
                            #expect(request.options.names.contains("SO_REUSEADDR") == (options.reuseAddress == true), "\(evidence)")
                        } else {
                            #expect(comment?.contains("SO_REUSE") == true, "\(evidence)")
                        }
                        if atRisk.isWildcard6 && atRisk.address == "::" {
                            #expect(request.bind.v6only == (atRisk.v6only == true), "\(evidence)")
                            if atRisk.v6only == nil && atRisk.options?.v6only == nil { #expect(comment?.contains("IPV6_V6ONLY unknown") == true) }
                        }
                        let device = atRisk.device ?? atRisk.options?.device
                        #expect(request.device == (["lo", "lab0"].contains(device ?? "") ? device : nil), "\(evidence)")
                        if let device, request.device == nil { #expect(comment?.contains(device) == true, "\(evidence)") }
                        if AuditNextSteps.tryAddress(atRisk).standIn != nil { #expect(comment?.contains("stands in for \(atRisk.address)") == true, "\(evidence)") }
                        checked += 1
                    }
                }
            }
        }
        // Shapes whose options were read get takeable where others got exposure.
        #expect(Set(kinds) == [.interception, .shadowing, .loadBalancing, .exposure, .takeable])
        #expect(checked > 500)
    }

    @Test("The lab's addresses and devices the evidence names are the ones try binds")
    func labAddresses() throws {
        #expect(AuditNextSteps.labInterface4 == LabAddresses.hostV4)
        #expect(AuditNextSteps.labInterface6 == LabAddresses.hostV6)
        #expect(AuditNextSteps.labDevices == ["lo", LabAddresses.hostInterface])
        for (names, _) in TryCommand.addresses {
            let address = names[0].hasPrefix("[") ? String(names[0].dropFirst().dropLast()) : names[0]
            guard address.first?.isNumber == true || address.hasPrefix(":") else { continue }
            #expect(AuditNextSteps.tryAddress(Self.socket(address, inode: 1)).standIn == nil, "\(address)")
        }
    }

    @Test("Each kind's fix and evidence, as the table shows them")
    func samples() throws {
        // interception: 127.0.0.1 of another uid in front of root's wildcard, whose process started first.
        let intercepted = Self.findings([Self.socket("0.0.0.0", uid: 0, pid: 10, inode: 1, options: SocketOptions(reuseAddress: true, reusePort: false)),
                                         Self.socket("127.0.0.1", uid: 65_534, pid: 20, inode: 2)], startTimes: true)
        let interception = try #require(intercepted.first { $0.kind == .interception })
        #expect(interception.fix == "stop pid 20/p20 (uid 65534 (65534)) or find who started it; then bind the service to each address it serves, one socket per address (127.0.0.1, ::1 and each interface's IPv4 and IPv6 address), with no SO_REUSEPORT")
        #expect(interception.evidence == "hijack-lab try '0.0.0.0:8080' --options SO_REUSEADDR --transport tcp")
        // shadowing: the same uid, unrelated processes, no start times.
        let shadowed = Self.findings([Self.socket("::", pid: 10, inode: 1, v6only: true), Self.socket("::1", pid: 20, inode: 2, v6only: true)], startTimes: false)
        let shadowing = try #require(shadowed.first { $0.kind == .shadowing })
        #expect(shadowing.fix == "stop whichever of pid 20/p20 (uid 1000 (1000)) and pid 10/p10 (uid 1000 (1000)) is not the service, or find who started it (if both are the service, hold every address in one process); then bind the service to each address it serves, one socket per address (127.0.0.1, ::1 and each interface's IPv4 and IPv6 address), with no SO_REUSEPORT")
        #expect(shadowing.evidence == "hijack-lab try '[::]:8080' --v6only --transport tcp  # its SO_REUSEADDR and SO_REUSEPORT are unknown (the audit did not read them): add --options as the service sets them")
        // load-balancing: a reuseport group, options not read, implied by the share.
        let shared = Self.findings([Self.socket("0.0.0.0", pid: 10, inode: 1), Self.socket("0.0.0.0", pid: 11, inode: 2)], startTimes: false)
        let sharing = try #require(shared.first { $0.kind == .loadBalancing })
        #expect(sharing.fix == "nothing to do if these 2 sockets are one service's (its workers); otherwise stop the process that is not, and bind the service with no SO_REUSEPORT, so that no other socket can join 0.0.0.0:8080")
        #expect(sharing.evidence == "hijack-lab try '0.0.0.0:8080' --options SO_REUSEPORT --transport tcp  # SO_REUSEPORT, which TCP listeners need to share an address; whether it sets SO_REUSEADDR too is unknown")
        // A UDP server on 127.0.0.1 alone, mosh-like, its options read: takeable, with the
        // family gap's fix; its options not read: exposure, with the same fix.
        var alone = Self.socket("127.0.0.1", pid: 10, inode: 1, options: SocketOptions(reuseAddress: false, reusePort: false))
        alone.transport = .udp
        alone.port = 60_001
        let takeable = try #require(Audit.findings([alone]).first)
        #expect(takeable.kind == .takeable)
        #expect(takeable.fix == "bind [::1]:60001 too, in the same service and with neither SO_REUSEADDR nor SO_REUSEPORT, so that no one else can take the clients of \"localhost\"")
        #expect(takeable.evidence == "hijack-lab try '127.0.0.1:60001' --transport udp")
        alone.options = nil
        let exposure = try #require(Audit.findings([alone]).first)
        #expect(exposure.kind == .exposure && exposure.fix == takeable.fix)
        #expect(exposure.evidence == "hijack-lab try '127.0.0.1:60001' --transport udp  # its SO_REUSEADDR and SO_REUSEPORT are unknown (the audit did not read them): add --options as the service sets them")
        // interception by a connected UDP socket of another uid: the receiver is at risk, and the
        // two could share the port only with SO_REUSEADDR on both.
        var receiver = Self.socket("0.0.0.0", uid: 0, pid: 10, inode: 1)
        var connected = Self.socket("127.0.0.1", uid: 65_534, pid: 20, inode: 2)
        receiver.transport = .udp
        connected.transport = .udp
        connected.remote = "127.0.0.1:53"
        let heard = try #require(Self.findings([receiver, connected], startTimes: true).first { $0.kind == .interception })
        #expect(heard.fix == "stop pid 20/p20 (uid 65534 (65534)) or find who started it; then bind 0.0.0.0:8080 with neither SO_REUSEADDR nor SO_REUSEPORT, so that no socket can bind its port beside it")
        #expect(heard.evidence == "hijack-lab try '0.0.0.0:8080' --options SO_REUSEADDR --transport udp  # SO_REUSEADDR, which a socket of another uid on an overlapping address needs; whether it sets SO_REUSEPORT too is unknown")
        // An interface's own address: the lab's stands in, and says so.
        let interface = AuditNextSteps.evidence(for: Self.socket("10.0.0.5", inode: 1, device: "eth0", options: SocketOptions(reuseAddress: false, reusePort: true)))
        #expect(interface == "hijack-lab try '198.51.100.1:8080' --options SO_REUSEPORT --transport tcp  # 198.51.100.1, the lab interface's address, stands in for 10.0.0.5; without its SO_BINDTODEVICE eth0: try binds only the lab's devices, lo and lab0; try runs this in its netns topology only, as root")
    }

    @Test("The table shows fix and evidence under their finding, escaped and with the report's names; jsonl carries both keys")
    func shown() throws {
        let sockets = [Self.socket("0.0.0.0", uid: 0, pid: 10, inode: 1),
                       AuditSocket(transport: .tcp, address: "127.0.0.1", port: 8080, uid: 65_534, user: "nobody", inode: 2,
                                   owners: [SocketOwner(pid: 20, command: "x\n[alarm] \u{1b}[2J")])]
        let report = AuditReport(namespace: "", sockets: sockets, findings: Self.findings(sockets, startTimes: true), ownersComplete: true, skippedRows: 0)
        let lines = AuditText.render(report).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let at = try #require(lines.firstIndex { $0.hasPrefix("[alarm] interception tcp/8080") })
        // The table names owners as its PID/COMMAND column does, without "pid".
        #expect(lines[at + 1] == "  fix: stop 20/x\\n[alarm] \\x1b[2J (uid 65534 (nobody)) or find who started it; then bind the service to each address it serves, one socket per address (127.0.0.1, ::1 and each interface's IPv4 and IPv6 address), with no SO_REUSEPORT")
        #expect(lines[at + 2] == "  evidence: hijack-lab try '0.0.0.0:8080' --transport tcp  # its SO_REUSEADDR and SO_REUSEPORT are unknown (the audit did not read them): add --options as the service sets them")
        #expect(lines.allSatisfy { !$0.contains("\u{1b}") })
        // As the report renders it: the owner by name, the port as PORT.
        let named = AuditText.render(report, name: { $0.pid == 20 ? "intruder" : "victim" }, portText: { _ in "PORT" })
        #expect(named.contains("  fix: stop intruder (uid 65534 (nobody))"))
        #expect(named.contains("  evidence: hijack-lab try '0.0.0.0:PORT' --transport tcp"))

        let jsonl = AuditFormats.jsonLines([NamespaceAudit(netns: NetworkNamespace(inode: 1, path: "/proc/1/ns/net"), report: report)], timestamp: .now())
        for line in jsonl.split(separator: "\n") {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["fix"] is String && object["evidence"] is String)
            // Keys in sorted order, as every JSON this tool writes.
            let positions = ["\"destinations\":", "\"evidence\":", "\"explanation\":", "\"fix\":", "\"kind\":"].map { line.range(of: $0)?.lowerBound }
            #expect(positions.allSatisfy { $0 != nil } && zip(positions, positions.dropFirst()).allSatisfy { $0! < $1! }, "\(line)")
        }
        // Without them, neither key.
        var bare = report
        for index in bare.findings.indices { bare.findings[index].fix = nil; bare.findings[index].evidence = nil }
        let plain = AuditFormats.jsonLines([NamespaceAudit(netns: NetworkNamespace(inode: 1, path: "/proc/1/ns/net"), report: bare)], timestamp: .now())
        #expect(!plain.contains("\"fix\"") && !plain.contains("\"evidence\""))
    }
}
