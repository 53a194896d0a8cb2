import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

@Suite("Matrix: model, filters, rendering")
struct MatrixModelTests {
    @Test("The full matrix is every stated dimension: 2 transports x 8 x 8 addresses x 4 x 4 options x 2 users")
    func fullSize() {
        let cases = MatrixFilter().cases
        #expect(cases.count == 2 * 8 * 8 * 4 * 4 * 2)
        #expect(Set(cases).count == cases.count)
        #expect(MatrixFilter().baselines.count == 2 * 8 * 4)
    }

    @Test("Filters select subsets and name what they accept")
    func filters() throws {
        var filter = MatrixFilter()
        filter.transports = try MatrixFilter.parseList("udp", flag: "--transport", parse: { Transport(rawValue: $0) }, allowed: ["tcp", "udp"]).get()
        filter.addresses = try MatrixFilter.parseList("0.0.0.0, ::1", flag: "--addresses", parse: { name in MatrixEndpoint.standard.first { $0.label == name } }, allowed: []).get()
        filter.options = [.none, .reusePort]
        filter.users = [.other]
        let cases = filter.cases
        #expect(cases.count == 1 * 2 * 2 * 2 * 2 * 1)
        #expect(cases.allSatisfy { $0.transport == .udp && $0.secondUser == .other && [.none, .reusePort].contains($0.firstOptions) })
        #expect(Set(cases.flatMap { [$0.first.label, $0.second!.label] }) == ["0.0.0.0", "::1"])
        let bad = MatrixFilter.parseList("tcp,sctp", flag: "--transport", parse: { Transport(rawValue: $0) }, allowed: ["tcp", "udp"])
        #expect(throws: MatrixFilter.ListError.self) { try bad.get() }
        if case .failure(let problem) = bad { #expect(problem.reason == "--transport: \"sctp\" is not one of tcp, udp") }
    }

    @Test("CLI filters: bad values exit 2 with the accepted values")
    func cliFilters() {
        let captured = TestLab.Captured()
        #expect(CLI.run(["matrix", "--addresses", "1.2.3.4"], console: captured.console, agentExecutable: TestLab.agentExecutable) == 2)
        #expect(captured.err.contains("--addresses: \"1.2.3.4\" is not one of 0.0.0.0, 127.0.0.1, [::], [::]v6only, ::1, ::ffff:127.0.0.1, lab-interface, lab-interface6"))
        let workers = TestLab.Captured()
        #expect(CLI.run(["matrix", "--workers", "0"], console: workers.console, agentExecutable: TestLab.agentExecutable) == 2)
        #expect(workers.err.contains("--workers expects a whole number from 1 to 16"))
    }

    static func outcome(_ first: String, _ second: String, cell letters: String, secondBind: SyscallResult = .ok) -> MatrixCaseOutcome {
        let endpoint = { (label: String) in MatrixEndpoint.standard.first { $0.label == label }! }
        var outcome = MatrixCaseOutcome(matrixCase: MatrixCase(transport: .tcp, first: endpoint(first), firstOptions: .reusePort, second: endpoint(second), secondOptions: .reusePort), status: .ran)
        outcome.firstBind = "ok"
        outcome.firstListen = "ok"
        outcome.secondBind = secondBind
        outcome.secondListen = secondBind == .ok ? .ok : .notAttempted
        outcome.deliveries = zip(["127.0.0.1", "::1", "lab-interface"], letters).map { destination, letter in
            MatrixDelivery(destination: destination, sent: 16, first: "VS".contains(letter) ? 8 : 0, second: "AS".contains(letter) ? 8 : 0,
                           nobody: letter == "-" ? 16 : 0, lost: letter == "X" ? 16 : 0)
        }
        return outcome
    }

    @Test("Cells: B or L when the second fails, else one letter per destination")
    func cells() {
        #expect(Self.outcome("0.0.0.0", "127.0.0.1", cell: "A-V").cell == "A-V")
        #expect(Self.outcome("0.0.0.0", "0.0.0.0", cell: "S-S").cell == "S-S")
        #expect(Self.outcome("0.0.0.0", "127.0.0.1", cell: "V-V", secondBind: "EADDRINUSE").cell == "B")
        var listenFailed = Self.outcome("0.0.0.0", "127.0.0.1", cell: "V-V")
        listenFailed.secondListen = "EADDRINUSE"
        #expect(listenFailed.cell == "L")
        #expect(MatrixCaseOutcome(matrixCase: listenFailed.matrixCase, status: .skipped, skipReason: "x").cell == "·")
    }

    @Test("A destination whose probes went unanswered is X (lost), never - (nobody), and its case says nothing of who keeps it")
    func lostCell() {
        let lost = Self.outcome("0.0.0.0", "127.0.0.1", cell: "A-X")
        #expect(lost.cell == "A-X")
        #expect(lost.deliveries[2].isLost && !lost.deliveries[1].isLost)
        // Only some lost, and only one socket answered the rest: the lost ones might have gone
        // to the other, so V is not known either.
        #expect(MatrixDelivery(destination: "::1", sent: 16, first: 9, second: 0, nobody: 0, lost: 7).letter == "X")
        #expect(MatrixReport.legend.contains("`X` lost"))
        // A case that lost a destination, and takes nothing elsewhere, is not "keeps".
        let keepsOrLost = Self.outcome("127.0.0.1", "0.0.0.0", cell: "V-X")
        #expect(MatrixResult.outcomeClass(keepsOrLost, alone: [MatrixResult.baselineKey(keepsOrLost.matrixCase): ["127.0.0.1"]]) == .incomplete)
    }

    @Test("The grid puts first addresses in rows and second in columns; takeovers use the first socket's baseline")
    func rendering() {
        let cases = [Self.outcome("0.0.0.0", "0.0.0.0", cell: "S-S"), Self.outcome("0.0.0.0", "127.0.0.1", cell: "A-V"),
                     Self.outcome("127.0.0.1", "0.0.0.0", cell: "V--", secondBind: "EADDRINUSE"), Self.outcome("127.0.0.1", "127.0.0.1", cell: "S--")]
        var alone = Self.outcome("0.0.0.0", "0.0.0.0", cell: "V-V")
        alone.matrixCase.second = nil
        var aloneLoopback = Self.outcome("127.0.0.1", "0.0.0.0", cell: "V--")
        aloneLoopback.matrixCase.second = nil
        let result = MatrixResult(environment: .init(kernel: "Linux 6", uid: 0, topology: .netns, topologyReason: "t", date: "d"),
                                  destinations: ["127.0.0.1", "::1", "lab-interface"], cases: cases, baselines: [alone, aloneLoopback])
        let text = MatrixReport.render(result)
        #expect(text.contains("### tcp, second socket same user: first SO_REUSEPORT, second SO_REUSEPORT"))
        #expect(text.contains("| first ↓ · second → | `0.0.0.0` | `127.0.0.1` |"))
        #expect(text.contains("| `0.0.0.0` | `S-S` | `A-V` |"))
        #expect(text.contains("| `127.0.0.1` | `B` | `S--` |"))
        #expect(text.contains(MatrixReport.legend))
        #expect(text.contains("| tcp | same user | `0.0.0.0` | `127.0.0.1` | `127.0.0.1` | all of it | REUSEPORT / REUSEPORT |"))
        #expect(text.contains("| tcp | same user | `0.0.0.0` | `0.0.0.0` | `127.0.0.1`, `lab-interface` | a share | REUSEPORT / REUSEPORT |"))
        #expect(result.takeovers.count == 3)
    }
}

/// The matrix on real processes and sockets.
@Suite("Matrix on real sockets")
struct MatrixRunTests {
    static var settings: LabSettings {
        LabSettings(agentExecutable: TestLab.agentExecutable,
                    topology: Topology.netnsMissing() == nil ? .netns(reason: "tests") : .loopback(reason: "tests"), connectTimeout: 1)
    }

    static func find(_ outcomes: [MatrixCaseOutcome], _ first: String, _ firstOptions: MatrixOptions, _ second: String, _ secondOptions: MatrixOptions) -> MatrixCaseOutcome? {
        outcomes.first { $0.matrixCase.first.label == first && $0.matrixCase.firstOptions == firstOptions && $0.matrixCase.second?.label == second && $0.matrixCase.secondOptions == secondOptions }
    }

    @Test("A TCP slice: who binds and who receives, as the kernel decides")
    func slice() throws {
        var filter = MatrixFilter()
        filter.transports = [.tcp]
        filter.addresses = MatrixEndpoint.standard.filter { ["0.0.0.0", "127.0.0.1", "::1"].contains($0.label) }
        filter.options = [.none, .reusePort]
        filter.users = [.same]
        let runner = MatrixRunner(settings: Self.settings)
        let outcomes = runner.run(filter.cases)
        #expect(outcomes.count == 36)
        #expect(outcomes.allSatisfy { $0.status == .ran }, "\(outcomes.compactMap(\.error))")
        let hijack = try #require(Self.find(outcomes, "0.0.0.0", .reusePort, "127.0.0.1", .reusePort))
        #expect(hijack.deliveries.first { $0.destination == "127.0.0.1" }?.second == 16)
        #expect(hijack.deliveries.first { $0.destination == "127.0.0.1" }?.first == 0)
        #expect(Self.find(outcomes, "0.0.0.0", .none, "127.0.0.1", .none)?.secondBind == "EADDRINUSE")
        #expect(Self.find(outcomes, "0.0.0.0", .reusePort, "127.0.0.1", .none)?.cell == "B")
        // Different families do not conflict: ::1 beside 0.0.0.0 binds with no option at all.
        let other = try #require(Self.find(outcomes, "0.0.0.0", .none, "::1", .none))
        #expect(other.secondBind == "ok")
        #expect(other.cell.hasPrefix("VA"))
        // One process launch per lane, not per case.
        #expect(runner.startedProcesses.count <= runner.workers * 5)
        for process in runner.startedProcesses { #expect(TestLab.isGone(process)) }
    }

    @Test("Isolation: a case run alone and after its neighbours, on the very same port, gives the same result",
          .enabled(if: Topology.netnsMissing() == nil, "one fixed port for every case needs the private namespace: root and iproute2's ip"),
          arguments: [Transport.tcp, .udp])
    func isolation(transport: Transport) throws {
        var filter = MatrixFilter()
        filter.transports = [transport]
        filter.addresses = MatrixEndpoint.standard.filter { ["0.0.0.0", "127.0.0.1", "[::]"].contains($0.label) }
        filter.users = [.same]
        let neighbours = filter.cases
        // One lane and one port for all: whatever a case left on the port, its successor would meet.
        let together = MatrixRunner(settings: Self.settings, workers: 1).run(neighbours, portBase: 12_345, portStride: 0)
        #expect(Set(together.compactMap(\.port)) == [12_345])
        for index in stride(from: 0, to: neighbours.count, by: 13) {
            let alone = MatrixRunner(settings: Self.settings, workers: 1).run([neighbours[index]], portBase: 50_000)[0]
            // A destination nobody answered in time (X) is no evidence either way: who would
            // have received it is unknown, so that one destination is not compared.
            let letters = zip(alone.cell, together[index].cell).map { pair in pair.0 == "X" || pair.1 == "X" ? "?" : String(pair.0) + String(pair.1) }
            #expect(alone.cell.count == together[index].cell.count && letters.allSatisfy { $0 == "?" || $0.first == $0.last }, "\(neighbours[index]): alone \(alone.cell), together \(together[index].cell)")
            #expect(alone.secondBind == together[index].secondBind)
        }
    }
}

/// The 44 address pairs of the kernel's bind_wildcard.c selftest, as data, against the
/// matrix's bind-only path (neither socket listens, as in the selftest).
@Suite("Agreement with the kernel's bind_wildcard selftest")
struct SelftestAgreementTests {
    struct Fixture: Decodable {
        struct Case: Decodable {
            var first: String
            var firstV6Only: Bool
            var second: String
            var secondV6Only: Bool
            var plain: String
            var reuseaddr: String
            var reuseport: String
        }
        var firstSocketListens: Bool
        var cases: [Case]
    }

    @Test("Every pair and option setting: the second bind's result is the selftest's expectation")
    func agreement() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: TestLab.fixtures + "/bind-wildcard-selftest.json"))
        let fixture = try JSONDecoder().decode(Fixture.self, from: data)
        #expect(fixture.cases.count == 44)
        #expect(!fixture.firstSocketListens)
        var cases: [MatrixCase] = []
        var expected: [String] = []
        for pair in fixture.cases {
            let first = MatrixEndpoint(label: pair.first, host: pair.first, v6only: pair.firstV6Only)
            let second = MatrixEndpoint(label: pair.second, host: pair.second, v6only: pair.secondV6Only)
            for (options, result) in [(MatrixOptions.none, pair.plain), (.reuseAddress, pair.reuseaddr), (.reusePort, pair.reuseport)] {
                cases.append(MatrixCase(transport: .tcp, first: first, firstOptions: options, second: second, secondOptions: options, listens: false, probes: false))
                expected.append(result)
            }
        }
        let outcomes = MatrixRunner(settings: MatrixRunTests.settings).run(cases)
        #expect(outcomes.count == 132)
        for (outcome, expectation) in zip(outcomes, expected) {
            let c = outcome.matrixCase
            #expect(outcome.firstBind == "ok", "\(c.first) \(c.firstOptions)")
            #expect(outcome.secondBind == SyscallResult(text: expectation),
                    "\(c.first.label)\(c.first.v6only ? " v6only" : "") then \(c.second!.label)\(c.second!.v6only ? " v6only" : "") with \(c.firstOptions.rawValue)")
        }
    }
}
