import Foundation
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAgent

/// Synthetic glance evidence: a service alone and beside every second socket the plan gives
/// it, with outcomes a test chooses, as `GlanceEvidence` holds real ones.
enum GlanceFixture {
    static let everywhere = ["127.0.0.1", "::1", AddressSymbol.labInterface.rawValue, AddressSymbol.labInterface6.rawValue]

    static func service(_ label: String, _ options: MatrixOptions) -> GlanceEvidence.Service {
        GlanceEvidence.services.first { $0.kind == .single && $0.addresses[0].label == label && $0.options == options }!
    }

    static func service(_ kind: GlanceEvidence.Service.Kind, _ options: MatrixOptions) -> GlanceEvidence.Service {
        GlanceEvidence.services.first { $0.kind == kind && $0.options == options }!
    }

    static func delivery(_ destination: String, first: Bool, second: Bool) -> MatrixDelivery {
        let nobody = !first && !second
        return MatrixDelivery(destination: destination, sent: 1, first: first ? 1 : 0, second: second ? 1 : 0, nobody: nobody ? 1 : 0, lost: 0, refused: nobody ? 1 : 0)
    }

    /// A case or baseline that ran: the second bound and received `taken` (first nothing
    /// there), or, with `taken` nil, its bind refused with EADDRINUSE.
    static func outcome(_ matrixCase: MatrixCase, served: Set<String>, destinations: [String], taken: Set<String>?) -> MatrixCaseOutcome {
        var outcome = MatrixCaseOutcome(matrixCase: matrixCase, status: .ran)
        outcome.firstBind = .ok
        if matrixCase.transport == .tcp { outcome.firstListen = .ok }
        if matrixCase.second != nil {
            outcome.secondBind = taken == nil ? "EADDRINUSE" : .ok
            if matrixCase.transport == .tcp && taken != nil { outcome.secondListen = .ok }
        }
        let second = taken ?? []
        outcome.deliveries = destinations.map { delivery($0, first: served.contains($0) && !second.contains($0), second: second.contains($0)) }
        return outcome
    }

    /// Every case the plan holds for `services`, on `transports` and for `users`, and each
    /// service's baselines. `served` gives what a service receives alone; `beside` which
    /// destinations a case's second socket receives (nil: its bind is refused).
    static func evidence(_ services: [GlanceEvidence.Service], destinations: [String] = everywhere, transports: [Transport] = Transport.allCases,
                         users: [SocketUser] = [.same, .other], served: (GlanceEvidence.Service) -> Set<String>,
                         beside: (GlanceEvidence.Service, MatrixCase) -> Set<String>?) -> GlanceEvidence {
        var cases: [MatrixCaseOutcome] = []
        var baselines: [MatrixCaseOutcome] = []
        for transport in transports {
            for service in services {
                let own = served(service)
                baselines.append(outcome(service.matrixCase(transport), served: own, destinations: destinations, taken: nil))
                for user in users {
                    cases += GlanceEvidence.planned(service, transport, user).map { outcome($0, served: own, destinations: destinations, taken: beside(service, $0)) }
                }
            }
        }
        return GlanceEvidence(destinations: destinations, cases: cases, baselines: baselines)
    }

    /// What a service of these addresses receives alone, as the kernel gives it: a wildcard
    /// its family's addresses (dual-stack `[::]` both), a specific address itself.
    static func served(_ service: GlanceEvidence.Service) -> Set<String> {
        Set(service.addresses.flatMap { endpoint -> [String] in
            switch endpoint.label {
            case "0.0.0.0": ["127.0.0.1", AddressSymbol.labInterface.rawValue]
            case "[::]": everywhere
            case "[::]v6only": ["::1", AddressSymbol.labInterface6.rawValue]
            default: [endpoint.label]
            }
        })
    }

    /// The table's cells of the row with this label: the label first.
    static func row(_ report: LabReport, _ label: String) -> [String]? {
        guard let line = AtAGlance.render(report).split(separator: "\n").first(where: { $0.hasPrefix("| \(label) |") }) else { return nil }
        return line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast().map { $0.trimmingCharacters(in: .whitespaces) }
    }

    static func report(_ evidence: GlanceEvidence) -> LabReport {
        var report = ReportTests.fixedReport()
        report.glance = evidence
        return report
    }
}

/// A small deterministic generator, so that a randomised evidence set is the same every run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("At a glance: one row per option set, no cell claims more than its cases show")
struct GlanceTests {
    /// "nothing", "no", "nothing more needed" and the like: a claim that holds only when
    /// every case it stands for ran and settled. "nothing seen; ..." says it did not.
    static func claimsNothing(_ text: String) -> Bool {
        text == "nothing" || text.hasPrefix("nothing (") || text == "no" || text.hasPrefix("nothing more needed")
    }

    static let columns = AtAGlance.Column.allCases

    @Test("Every option set of every address is its own row, and the per-address sets run as services of several sockets")
    func rowsCoverEveryOptionSet() throws {
        let rows = AtAGlance.rows
        for label in GlanceEvidence.singleAddresses {
            let options = rows.filter { $0.service.kind == .single && $0.service.addresses[0].label == label }.map(\.service.options)
            #expect(options == MatrixOptions.allCases, "\(label)")
        }
        #expect(Set(rows.map(\.label)).count == rows.count)
        #expect(rows.contains { $0.label == "`[::]` with SO_REUSEPORT" })
        #expect(rows.contains { $0.label == "`0.0.0.0`, no option" })
        let full = try #require(rows.first { $0.service.kind == .perAddressBothFamilies && $0.service.options == .none })
        #expect(full.service.addresses.map(\.label) == ["127.0.0.1", "::1", "lab-interface", "lab-interface6"])
        let plan = GlanceEvidence.plan
        let setCase = try #require(plan.cases.first { full.service.isFirst(of: $0) })
        #expect(setCase.firstSockets.count == 4 && setCase.service?.count == 3)
        // A single address keeps `service` nil: its case is the one MATRIX.md has a cell for.
        #expect(plan.cases.filter { $0.firstSockets.count == 1 }.allSatisfy { $0.service == nil })
        // Each service beside each second socket of the matrix, per option set, user and transport; one baseline per service and transport.
        let seconds = MatrixEndpoint.standard.count * MatrixOptions.allCases.count
        #expect(plan.cases.count == rows.count * Transport.allCases.count * 2 * seconds)
        #expect(plan.baselines.count == rows.count * Transport.allCases.count)
        #expect(Set(plan.cases).count == plan.cases.count)
        // The runner's ports: cases from 10,000 and baselines from 40,000 never meet.
        #expect(10_000 + plan.cases.count < 40_000 && plan.cases.count < 20_000 && plan.baselines.count < 20_000)
    }

    @Test("`[::]` with SO_REUSEPORT loses 127.0.0.1 and ::1 to same-user SO_REUSEPORT binds there; refuse them and the cell says so")
    func dualStackReusePort() throws {
        let service = GlanceFixture.service("[::]", .reusePort)
        var takers: Set<String> = ["127.0.0.1", "::1"]
        let evidence = { (takers: Set<String>) in
            GlanceFixture.evidence([service], served: GlanceFixture.served) { _, c in
                c.secondUser == .same && c.secondOptions == .reusePort && takers.contains(c.second!.label) ? [c.second!.label] : nil
            }
        }
        let taken = try #require(GlanceFixture.row(GlanceFixture.report(evidence(takers)), "`[::]` with SO_REUSEPORT"))
        #expect(taken[1] == "**127.0.0.1**, **::1** by `127.0.0.1`/`::1` SO_REUSEPORT ([case](MATRIX.md#tcp-second-socket-same-user-first-so_reuseport-second-so_reuseport))", "\(taken[1])")
        #expect(taken[3] == "nothing (bind EADDRINUSE ×32)")
        #expect(taken[6] == "leave SO_REUSEPORT off")
        // Loopback only: external clients kept theirs.
        #expect(taken[5] == "no")

        // The kernel refuses the ::1 bind (EADDRINUSE): ::1 is no longer named.
        takers.remove("::1")
        let one = try #require(GlanceFixture.row(GlanceFixture.report(evidence(takers)), "`[::]` with SO_REUSEPORT"))
        #expect(one[1].hasPrefix("**127.0.0.1** by `127.0.0.1` SO_REUSEPORT"), "\(one[1])")
        #expect(!one[1].contains("::1"))
        takers.remove("127.0.0.1")
        let none = try #require(GlanceFixture.row(GlanceFixture.report(evidence(takers)), "`[::]` with SO_REUSEPORT"))
        #expect(none[1] == "nothing (bind EADDRINUSE ×32)")
        #expect(none[6] == "nothing more needed")
    }

    @Test("A cell, the external column and the fix say nothing was taken only when every case they stand for ran and settled")
    func nothingOnlyWhenEveryCaseRan() throws {
        let service = GlanceFixture.service("[::]", .none)
        let label = AtAGlance.label(service)
        let complete = GlanceFixture.evidence([service], served: GlanceFixture.served) { _, _ in nil }
        let row = try #require(GlanceFixture.row(GlanceFixture.report(complete), label))
        #expect(row[1...4].allSatisfy { $0 == "nothing (bind EADDRINUSE ×32)" }, "\(row)")
        #expect(row[5] == "no" && row[6] == "nothing more needed")

        // One case of the same user's UDP column, in each way a case can fail to settle.
        let target = try #require(complete.cases.firstIndex { $0.matrixCase.transport == .udp && $0.matrixCase.secondUser == .same })
        let spoilers: [(String, (inout GlanceEvidence) -> Void)] = [
            ("could not finish", { $0.cases[target].status = .error }),
            ("skipped", { $0.cases[target].status = .skipped; $0.cases[target].skipReason = "a reason" }),
            ("lost a probe", { $0.cases[target].deliveries[0].lost = 1; $0.cases[target].deliveries[0].nobody = 0; $0.cases[target].deliveries[0].refused = 0 }),
            ("not in the evidence", { $0.cases.remove(at: target) }),
        ]
        for (name, spoil) in spoilers {
            var evidence = complete
            spoil(&evidence)
            let cells = try #require(GlanceFixture.row(GlanceFixture.report(evidence), label))
            #expect(!Self.claimsNothing(cells[2]), "\(name): \(cells[2])")
            #expect(cells[2].hasPrefix("nothing seen; 1 of 32 cases"), "\(name): \(cells[2])")
            #expect(cells[5] != "no" && !cells[6].hasPrefix("nothing more needed"), "\(name): \(cells)")
            // The other columns stand for other cases, all of which settled.
            #expect([cells[1], cells[3], cells[4]].allSatisfy(Self.claimsNothing), "\(name): \(cells)")
        }
        // The service alone lost its probe: nothing can be compared with it on UDP.
        var evidence = complete
        let baseline = try #require(evidence.baselines.firstIndex { $0.matrixCase.transport == .udp })
        evidence.baselines[baseline].deliveries[1].lost = 1
        let cells = try #require(GlanceFixture.row(GlanceFixture.report(evidence), label))
        #expect(cells[2] == "not shown in this run (the service alone did not settle)" && cells[4] == cells[2], "\(cells)")
        #expect(cells[5] != "no" && !cells[6].hasPrefix("nothing more needed"))
    }

    /// Every row's services beside every second socket, with outcomes drawn at random:
    /// refusals, takes of any destinations, and now and then a case that did not settle.
    static func randomEvidence(seed: UInt64) -> GlanceEvidence {
        var random = SplitMix64(state: seed)
        var evidence = GlanceFixture.evidence(GlanceEvidence.services, served: GlanceFixture.served) { _, _ in
            Bool.random(using: &random) ? nil : Set(GlanceFixture.everywhere.filter { _ in Int.random(in: 0..<4, using: &random) == 0 })
        }
        for index in evidence.cases.indices {
            switch Int.random(in: 0..<200, using: &random) {
            case 0: evidence.cases[index].status = .error
            case 1: evidence.cases[index].status = .skipped; evidence.cases[index].skipReason = "the second socket runs as another user (uid 65534), which only root can start; this run is uid 1000"
            case 2: evidence.cases[index].deliveries[0].lost = 1; evidence.cases[index].deliveries[0].first = 0; evidence.cases[index].deliveries[0].second = 0
            default: break
            }
        }
        return evidence
    }

    @Test("On random outcomes, every \"nothing\", \"no\" and \"nothing more needed\" stands on cases that all ran", arguments: [1, 2, 3] as [UInt64])
    func claimsFollowCases(seed: UInt64) {
        let evidence = Self.randomEvidence(seed: seed)
        for row in AtAGlance.rows {
            let cells = Self.columns.map { AtAGlance.cell(row, $0, evidence) }
            for (column, cell) in zip(Self.columns, cells) where Self.claimsNothing(AtAGlance.text(cell, row)) {
                let baseline = cell.baseline.flatMap(TryResult.served)
                #expect(baseline != nil && cell.missing == 0 && cell.cases.count == GlanceEvidence.planned(row.service, column.transport, column.user).count, "\(row.label) \(column)")
                #expect(cell.cases.allSatisfy { $0.status == .ran && !$0.deliveries.contains(where: \.isLost) }, "\(row.label) \(column)")
                #expect(cell.takes.isEmpty)
            }
            if Self.claimsNothing(AtAGlance.external(cells, evidence)) { #expect(cells.allSatisfy { $0.settled }, "\(row.label)") }
            if Self.claimsNothing(AtAGlance.fix(row, cells, addedLater: nil)) { #expect(cells.allSatisfy { $0.settled } && cells.allSatisfy { $0.takes.isEmpty }, "\(row.label)") }
        }
    }

    /// Every cell of the table as a reader sees it, with its row's label.
    static func cells(_ report: LabReport) -> [(row: String, text: String)] {
        AtAGlance.render(report).split(separator: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("| Your service binds |") }.flatMap { line in
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast().map { $0.trimmingCharacters(in: .whitespaces) }
            return cells.map { (cells[0], $0) }
        }
    }

    @Test("No cell is longer than the limit as a reader sees it, however much is taken; destinations are named by address", arguments: [0, 1, 2, 3, 4] as [UInt64])
    func cellsStayShort(seed: UInt64) {
        // Seed 0: every second socket bound and took every destination.
        let evidence = seed == 0
            ? GlanceFixture.evidence(GlanceEvidence.services, served: GlanceFixture.served) { _, _ in Set(GlanceFixture.everywhere) }
            : Self.randomEvidence(seed: seed)
        var report = GlanceFixture.report(evidence)
        report.scenarios = [AnswerTests.addedLater(hijacked: true)]
        let cells = Self.cells(report)
        #expect(cells.count == AtAGlance.rows.count * 7)
        for (row, text) in cells {
            #expect(AtAGlance.visibleLength(text) <= AtAGlance.cellLimit, "\(row): \(AtAGlance.visibleLength(text)): \(text)")
            #expect(!text.contains("lab-interface"), "\(row): \(text)")
        }
        // A cell that takes links at most one case.
        #expect(cells.allSatisfy { $0.text.components(separatedBy: "](MATRIX.md#").count <= 2 })
    }

    @Test("The visible length leaves out link targets, emphasis, code marks and escapes")
    func visibleLength() {
        #expect(AtAGlance.visibleLength("**::1** by `::1` ([case](MATRIX.md#tcp-x))") == "::1 by ::1 (case)".count)
        #expect(AtAGlance.visibleLength("a \\| b") == "a | b".count)
    }

    @Test("In the loopback topology the per-address sets cannot run: their rows say why, never \"nothing\"")
    func loopbackSetsNotShown() throws {
        let service = GlanceFixture.service(.perAddressIPv4, .none)
        var evidence = GlanceFixture.evidence([service], destinations: ["127.0.0.1", "::1"], served: GlanceFixture.served) { _, _ in nil }
        let reason = "lab-interface exists only in the netns topology"
        evidence.cases = evidence.cases.map { MatrixCaseOutcome(matrixCase: $0.matrixCase, status: .skipped, skipReason: reason) }
        evidence.baselines = evidence.baselines.map { MatrixCaseOutcome(matrixCase: $0.matrixCase, status: .skipped, skipReason: reason) }
        let cells = try #require(GlanceFixture.row(GlanceFixture.report(evidence), AtAGlance.label(service)))
        #expect(cells[1...4].allSatisfy { $0 == "not shown in this run (the lab interface exists only in the netns topology)" }, "\(cells)")
        #expect(cells[5] == "not shown in this run" && cells[6] == "—")
    }

    /// The glance plan's cases for one service and option set, on one transport and for one
    /// user, and its baseline: what a real-socket test runs.
    static func realEvidence(_ service: GlanceEvidence.Service, transport: Transport, user: SocketUser) -> GlanceEvidence {
        let plan = GlanceEvidence.plan
        let cases = plan.cases.filter { service.isFirst(of: $0) && $0.transport == transport && $0.secondUser == user }
        let baselines = plan.baselines.filter { service.isFirst(of: $0) && $0.transport == transport }
        let runner = MatrixRunner(settings: MatrixRunTests.settings)
        let (outcomes, alone) = runner.run(cases: cases, baselines: baselines)
        for process in runner.startedProcesses { #expect(TestLab.isGone(process)) }
        return GlanceEvidence(destinations: runner.destinationLabels, cases: outcomes, baselines: alone)
    }

    @Test("Real sockets: `[::]` with SO_REUSEPORT loses 127.0.0.1 and ::1 to the same user over TCP",
          .enabled(if: Topology.netnsMissing() == nil, "the lab interface and its peer need the private namespace: root and iproute2's ip"))
    func realDualStackReusePort() throws {
        let evidence = Self.realEvidence(GlanceFixture.service("[::]", .reusePort), transport: .tcp, user: .same)
        #expect((evidence.cases + evidence.baselines).allSatisfy { $0.status == .ran }, "\(evidence.cases.compactMap(\.error))")
        let cells = try #require(GlanceFixture.row(GlanceFixture.report(evidence), "`[::]` with SO_REUSEPORT"))
        for destination in ["127.0.0.1", "::1", LabAddresses.hostV4, LabAddresses.hostV6] { #expect(cells[1].contains("**\(destination)**"), "\(cells[1])") }
        #expect(cells[1].contains("SO_REUSEPORT ([case](MATRIX.md#tcp-second-socket-same-user-first-so_reuseport-second-so_reuseport))"), "\(cells[1])")
        #expect(AtAGlance.visibleLength(cells[1]) <= AtAGlance.cellLimit)
    }

    @Test("Real sockets: one socket per address on both families, no option, is a service of four sockets that no same-user TCP bind takes anything from",
          .enabled(if: Topology.netnsMissing() == nil, "the lab interface and its peer need the private namespace: root and iproute2's ip"))
    func realFullFix() throws {
        let service = GlanceFixture.service(.perAddressBothFamilies, .none)
        let evidence = Self.realEvidence(service, transport: .tcp, user: .same)
        #expect((evidence.cases + evidence.baselines).allSatisfy { $0.status == .ran }, "\(evidence.cases.compactMap(\.error))")
        // Alone, the four sockets receive every destination.
        let alone = try #require(evidence.baselines.first.flatMap(TryResult.served))
        #expect(alone.isSuperset(of: GlanceFixture.everywhere))
        let cells = try #require(GlanceFixture.row(GlanceFixture.report(evidence), AtAGlance.label(service)))
        #expect(cells[1].hasPrefix("nothing"), "\(cells[1])")
        #expect(!cells[1].contains("**"), "\(cells[1])")
    }
}
