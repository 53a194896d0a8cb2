import Foundation
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAgent
@testable import HijackCLI

/// `hijack-lab try`: its answer is read off real cases, and agrees with the matrix case by case.
@Suite("try: your own bind, against every second socket")
struct TryTests {
    /// The JSON as a script reads it.
    struct Document: Decodable {
        var schemaVersion: Int
        var destinations: [String]
        var takes: [TryTake]
        var fixTakes: [TryTake]
        var transports: [TryTransport]
        var exitStatus: Int32
    }

    static let netns = Topology.netnsMissing() == nil

    static func temporaryFolder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("try-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }

    /// Runs the command in this process; returns its status, stdout, stderr and the JSON it wrote.
    static func run(_ arguments: [String], json file: String) throws -> (status: Int32, out: String, err: String, document: Document) {
        let captured = TestLab.Captured()
        let status = CLI.run(arguments + ["--json", file], console: captured.console, agentExecutable: TestLab.agentExecutable)
        let document = try JSONDecoder().decode(Document.self, from: Data(contentsOf: URL(fileURLWithPath: file)))
        return (status, captured.out, captured.err, document)
    }

    @Test("[::]:8443 with SO_REUSEPORT: the same user takes 127.0.0.1 and ::1, another user gets EADDRINUSE, and the per-address fix holds",
          .enabled(if: netns && geteuid() == 0, "the lab interface and another user need root and the netns topology"))
    func dualStackReusePort() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let captured = TestLab.Captured()
        let status = CLI.run(["try", "[::]:8443", "--options", "SO_REUSEPORT", "--transport", "tcp", "--json", folder + "/try.json"],
                             console: captured.console, agentExecutable: TestLab.agentExecutable)
        #expect(status == 1, "\(captured.err)")
        let document = try JSONDecoder().decode(Document.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/try.json")))
        #expect(document.schemaVersion == 1)
        #expect(document.exitStatus == 1)
        let grid = "MATRIX.md#tcp-second-socket-same-user-first-so_reuseport-second-so_reuseport"
        for destination in ["127.0.0.1", "::1"] {
            let take = try #require(document.takes.first { $0.transport == .tcp && $0.destination == destination && $0.user == .same }, "\(destination)")
            let own = try #require(take.binds.first { $0.address == destination && $0.options == ["SO_REUSEPORT"] }, "\(take.binds)")
            #expect(own.case == grid)
            #expect(!own.shared && !own.familyGap)
        }
        #expect(document.takes.allSatisfy { take in take.binds.allSatisfy { $0.case?.hasPrefix("MATRIX.md#tcp-second-socket-") == true } })
        #expect(!document.takes.contains { $0.user == .other })
        // Every one of another user's binds was refused, and said how.
        let evidence = try #require(document.transports.first)
        let others = evidence.cases.filter { $0.matrixCase.secondUser == .other }
        #expect(others.count == MatrixEndpoint.standard.count * MatrixOptions.allCases.count)
        #expect(others.allSatisfy { $0.secondBind == "EADDRINUSE" })
        #expect(evidence.cases.allSatisfy { $0.port == 8443 })
        // The fix: four sockets, no SO_REUSEPORT, nothing taken from it by anyone.
        #expect(evidence.fix.addresses.map(\.label) == ["127.0.0.1", "::1", "lab-interface", "lab-interface6"])
        #expect(evidence.fix.options == .none)
        #expect(document.fixTakes.isEmpty)
        #expect(evidence.fixCases.allSatisfy { $0.status == .ran && $0.secondBind != "ok" })
        // The text says the same, without --json on stdout.
        let text = TestLab.Captured()
        #expect(CLI.run(["try", "[::]:8443", "--options", "SO_REUSEPORT", "--transport", "tcp"], console: text.console, agentExecutable: TestLab.agentExecutable) == 1)
        #expect(text.out.contains("127.0.0.1     same user     takes it: 127.0.0.1 SO_REUSEPORT"), "\(text.out)")
        #expect(text.out.contains("Refused, another user: bind EADDRINUSE ×32: every address, with any option"))
        #expect(text.out.contains("it holds, nothing taken"))
        #expect(text.out.contains(grid))
    }

    /// Binds whose every case `try` prints is held to the matrix's own case.
    static let agreement: [(bind: [String], spec: String, transport: Transport)] = [
        (["[::]", "--options", "SO_REUSEPORT"], "[::]/SO_REUSEPORT", .tcp),
        (["0.0.0.0"], "0.0.0.0/none", .udp),
        (["127.0.0.1", "--options", "SO_REUSEADDR"], "127.0.0.1/SO_REUSEADDR", .udp),
        (["[::]", "--v6only"], "[::]v6only/none", .tcp),
        (["2001:db8::1", "--options", "both"], "lab-interface6/both", .tcp),
    ]

    @Test("try agrees with matrix --first on every case it prints",
          .enabled(if: netns && geteuid() == 0, "the lab interface and another user need root and the netns topology"),
          arguments: agreement.indices)
    func agreesWithMatrix(index: Int) throws {
        let (bind, spec, transport) = Self.agreement[index]
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let tried = try Self.run(["try"] + bind + ["--transport", transport.rawValue], json: folder + "/try.json")
        let captured = TestLab.Captured()
        #expect(CLI.run(["matrix", "--first", spec, "--transport", transport.rawValue, "--json", folder + "/matrix.json"],
                        console: captured.console, agentExecutable: TestLab.agentExecutable) == 0, "\(captured.err)")
        let matrix = try JSONDecoder().decode(MatrixResult.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/matrix.json")))
        let cells = Dictionary(uniqueKeysWithValues: matrix.cases.map { ($0.matrixCase, $0.cell) })
        let evidence = try #require(tried.document.transports.first)
        #expect(evidence.cases.count == cells.count)
        for outcome in evidence.cases {
            let theirs = try #require(cells[outcome.matrixCase], "\(outcome.matrixCase)")
            // A destination nobody answered in time (X) is no evidence either way.
            let same = outcome.cell.count == theirs.count && zip(outcome.cell, theirs).allSatisfy { $0 == $1 || $0 == "X" || $1 == "X" }
            #expect(same, "\(spec) / \(outcome.matrixCase.second!.label) \(outcome.matrixCase.secondOptions) \(outcome.matrixCase.secondUser): try \(outcome.cell), matrix \(theirs)")
        }
        // Every take names a case whose cell the matrix has.
        for take in tried.document.takes {
            for bind in take.binds { #expect(bind.case?.hasPrefix("MATRIX.md#\(transport.rawValue)-second-socket-") == true) }
        }
    }

    @Test("Bad binds and options exit 2 and say what is accepted", arguments: [
        (["try"], "which bind?"),
        (["try", "10.0.0.5"], "\"10.0.0.5\" is not an address the lab has; BIND is one of 0.0.0.0, [::], 127.0.0.1, ::1"),
        (["try", "[::"], "opens [ without ]"),
        (["try", "[::]:99999"], "\"99999\" is not a port"),
        (["try", "::1", "--v6only"], "--v6only is for [::] only"),
        (["try", "0.0.0.0", "--options", "SO_REUSEPORTT"], "did you mean SO_REUSEPORT?"),
        (["try", "0.0.0.0", "--transport", "sctp"], "--transport"),
        (["try", "0.0.0.0", "--device", "eth0"], "lo, lab0"),
        (["try", "0.0.0.0", "127.0.0.1"], "try takes one BIND"),
    ])
    func usage(arguments: [String], message: String) {
        let captured = TestLab.Captured()
        #expect(CLI.run(arguments, console: captured.console, agentExecutable: TestLab.agentExecutable) == 2)
        #expect(captured.err.contains(message), "\(captured.err)")
        #expect(captured.out.isEmpty)
    }

    @Test("BIND in any spelling: with a port, bracketed, or by the lab's symbol", arguments: [
        ("0.0.0.0:80", "0.0.0.0", UInt16(80)), ("[::]:8443", "[::]", 8443), ("::", "[::]", nil), ("[::1]:6379", "::1", 6379),
        ("0:0::1", "::1", nil), ("198.51.100.1:53", "lab-interface", 53), ("lab-interface6", "lab-interface6", nil), ("[2001:db8::1]", "lab-interface6", nil),
    ] as [(String, String, UInt16?)])
    func spellings(text: String, label: String, port: UInt16?) throws {
        let parsed = try TryCommand.parseBind(text, v6only: false)
        #expect(parsed.endpoint.label == label)
        #expect(parsed.port == port)
    }

    /// One delivery per destination, as letters: V first, A second, S both, - nobody.
    static func outcome(_ first: MatrixEndpoint, _ second: MatrixEndpoint?, _ letters: String) -> MatrixCaseOutcome {
        var outcome = MatrixCaseOutcome(matrixCase: MatrixCase(transport: .tcp, first: first, firstOptions: .none, second: second), status: .ran)
        outcome.firstBind = "ok"
        outcome.firstListen = "ok"
        if second != nil {
            outcome.secondBind = "ok"
            outcome.secondListen = "ok"
        }
        outcome.deliveries = zip(["127.0.0.1", "::1", "lab-interface", "lab-interface6"], letters).map { destination, letter in
            MatrixDelivery(destination: destination, sent: 1, first: "VS".contains(letter) ? 1 : 0, second: "AS".contains(letter) ? 1 : 0,
                           nobody: letter == "-" ? 1 : 0, lost: 0, refused: letter == "-" ? 1 : 0)
        }
        return outcome
    }

    @Test("Your own bind failing is no answer: exit 3, the errno said, and no \"cannot take it\"",
          .enabled(if: netns && geteuid() == 0, "lab0 exists only in the netns topology"))
    func ownBindFails() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // ::1 is not lab0's address: the kernel refuses the bind with EADDRNOTAVAIL.
        let tried = try Self.run(["try", "::1", "--device", "lab0", "--transport", "tcp"], json: folder + "/try.json")
        #expect(tried.status == 3)
        #expect(tried.document.takes.isEmpty)
        #expect(tried.document.transports.first?.alone.firstBind == "EADDRNOTAVAIL")
        let text = TestLab.Captured()
        #expect(CLI.run(["try", "::1", "--device", "lab0", "--transport", "tcp"], console: text.console, agentExecutable: TestLab.agentExecutable) == 3)
        #expect(text.out.contains("your bind failed: EADDRNOTAVAIL"), "\(text.out)")
        #expect(!text.out.contains("cannot take it"))
        // The fix binds lab0's own addresses, and nothing else.
        #expect(tried.document.transports.first?.fix.addresses.map(\.label) == ["lab-interface", "lab-interface6"])
    }

    @Test("A device-bound service's fix binds that device's addresses only; SO_REUSEPORT and UDP SO_REUSEADDR go")
    func fixFollowsDevice() {
        let wildcard = MatrixEndpoint.standard.first { $0.label == "0.0.0.0" }!
        let onLoopback = TryRequest(bind: wildcard, options: .both, device: "lo").fix(.udp, labInterface: true)
        #expect(onLoopback.addresses.map(\.label) == ["127.0.0.1", "::1"])
        #expect(onLoopback.options == .none)
        #expect(onLoopback.dropped.count == 3)
        let tcp = TryRequest(bind: wildcard, options: .both).fix(.tcp, labInterface: true)
        #expect(tcp.addresses.map(\.label) == ["127.0.0.1", "::1", "lab-interface", "lab-interface6"])
        #expect(tcp.options == .reuseAddress)
        #expect(TryRequest(bind: wildcard, options: .none).fix(.tcp, labInterface: false).addresses.map(\.label) == ["127.0.0.1", "::1"])
    }

    @Test("A bind's case and refusal keys are always in the JSON, null when there is none")
    func bindKeys() throws {
        let bind = TryBind(address: "::1", options: [], label: "::1", case: nil, cell: "VA--", shared: false, familyGap: true, refusal: nil)
        let object = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(bind)) as? [String: Any])
        #expect(object["case"] is NSNull)
        #expect(object["refusal"] is NSNull)
        #expect(try JSONDecoder().decode(TryBind.self, from: JSONEncoder().encode(bind)) == bind)
    }

    @Test("\"cannot take it\" only when every case ran and settled; a skipped or lost case is said")
    func neverNothingWithoutEvidence() {
        let endpoint = { (label: String) in MatrixEndpoint.standard.first { $0.label == label }! }
        var refused = Self.outcome(endpoint("0.0.0.0"), endpoint("127.0.0.1"), "V---")
        refused.secondBind = "EADDRINUSE"
        #expect(TryReport.notTaken([refused, refused]) == "cannot take it (2 binds tried)")
        let skipped = MatrixCaseOutcome(matrixCase: refused.matrixCase, status: .skipped, skipReason: "only root can start another user")
        #expect(TryReport.notTaken([refused, skipped]) == "not taken by the 1 binds that ran; 1 not tried (only root can start another user)")
        var lost = Self.outcome(endpoint("0.0.0.0"), endpoint("[::]v6only"), "V-V-")
        lost.deliveries[1].lost = 1
        lost.deliveries[1].nobody = 0
        lost.deliveries[1].refused = 0
        #expect(TryReport.notTaken([refused, lost]) == "not taken by the 1 binds that ran; 1 did not settle")
        #expect(TryReport.notTaken([skipped]) == "not tried: only root can start another user")
    }

    @Test("Taken: a destination the service serves, or the other-family twin of one; localhost when the service has either loopback")
    func takenRule() throws {
        let endpoint = { (label: String) in MatrixEndpoint.standard.first { $0.label == label }! }
        let served = try #require(TryResult.served(Self.outcome(endpoint("0.0.0.0"), nil, "V-V-")))
        #expect(served == ["127.0.0.1", "lab-interface", "localhost"])
        // [::]v6only beside 0.0.0.0 gets ::1 and 2001:db8::1, both family gaps, and with ::1 the
        // service's own localhost clients, which try ::1 first.
        let beside = TryResult.taken(Self.outcome(endpoint("0.0.0.0"), endpoint("[::]v6only"), "VAVA"), served: served)
        #expect(beside.map(\.destination) == ["::1", "lab-interface6", "localhost"])
        #expect(beside.map(\.gap) == [true, true, false])
        // A share of the service's own address is taken, and not a gap.
        let share = TryResult.taken(Self.outcome(endpoint("0.0.0.0"), endpoint("0.0.0.0"), "S-S-"), served: served)
        #expect(share.map(\.destination) == ["127.0.0.1", "lab-interface", "localhost"])
        #expect(share.allSatisfy { !$0.gap && $0.shared })
        // A second socket whose bind failed takes nothing, whatever its deliveries say.
        var refused = Self.outcome(endpoint("0.0.0.0"), endpoint("127.0.0.1"), "A---")
        refused.secondBind = "EADDRINUSE"
        #expect(TryResult.taken(refused, served: served).isEmpty)
    }
}
