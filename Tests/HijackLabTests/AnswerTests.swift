import Foundation
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

/// The report's answers ("At a glance", "What to do", the article's claims) are read off
/// outcomes: change one outcome and the answer changes with it.
@Suite("Report answers follow the outcomes")
struct AnswerTests {
    /// A 0.0.0.0 service alone receives 127.0.0.1 and the lab interface; beside it, every
    /// same-user TCP bind is refused but a socket on 127.0.0.1 with SO_REUSEPORT, which the
    /// kernel either refused too or let in.
    static func evidence(secondTakes: Bool) -> GlanceEvidence {
        GlanceFixture.evidence([GlanceFixture.service("0.0.0.0", .none)], destinations: ["127.0.0.1", "lab-interface"], transports: [.tcp], users: [.same],
                               served: { _ in ["127.0.0.1", "lab-interface"] }) { _, c in
            secondTakes && c.second?.label == "127.0.0.1" && c.secondOptions == .reusePort ? ["127.0.0.1"] : nil
        }
    }

    static func glanceRow(_ report: LabReport, _ label: String) -> String? {
        AtAGlance.render(report).split(separator: "\n").first { $0.hasPrefix("| \(label) |") }.map(String.init)
    }

    /// A scenario in which another user's bind on an address added after the service
    /// started received its clients, or was refused.
    static func addedLater(hijacked: Bool) -> ScenarioOutcome {
        var outcome = ReportTests.fixedReport().scenarios[0]
        outcome.name = "added-address-story"
        outcome.probes[0].to = LabAddresses.addedV4
        outcome.probes[0].receivedBy = hijacked ? ["attacker": 8] : ["victim": 8]
        return outcome
    }

    @Test("Changing one matrix outcome changes the At a glance row; a row with no case says so")
    func glanceFollowsOutcomes() throws {
        var report = ReportTests.fixedReport()
        report.glance = Self.evidence(secondTakes: false)
        let refused = try #require(Self.glanceRow(report, "`0.0.0.0`, no option"))
        #expect(refused.contains("| `0.0.0.0`, no option | nothing (bind EADDRINUSE ×32) |"), "\(refused)")
        report.glance = Self.evidence(secondTakes: true)
        let taken = try #require(Self.glanceRow(report, "`0.0.0.0`, no option"))
        #expect(taken.contains("| **127.0.0.1** by `127.0.0.1` SO_REUSEPORT ([case](MATRIX.md#tcp-second-socket-same-user-first-none-second-so_reuseport)) |"), "\(taken)")
        #expect(taken != refused)
        // Another user's TCP column and both UDP columns had no case at all: no guess.
        #expect(taken.contains("| not shown in this run | not shown in this run | not shown in this run |"), "\(taken)")
        let untried = try #require(Self.glanceRow(report, "`::1`, no option"))
        #expect(untried.components(separatedBy: "not shown in this run").count - 1 == 5, "\(untried)")
    }

    @Test("Without a probe from outside, At a glance does not claim external clients were safe")
    func externalNotShownOnLoopback() throws {
        var report = ReportTests.fixedReport()
        var evidence = Self.evidence(secondTakes: false)
        report.glance = evidence
        // Three of its columns were not shown: the external column cannot say "no".
        #expect(try #require(Self.glanceRow(report, "`0.0.0.0`, no option")).contains("| nothing (bind EADDRINUSE ×32) | not shown in this run | not shown in this run | not shown in this run | none seen; not every case settled |"))
        // The loopback topology probes 127.0.0.1 and ::1 only.
        evidence.destinations = ["127.0.0.1", "::1"]
        report.glance = evidence
        let row = try #require(Self.glanceRow(report, "`0.0.0.0`, no option"))
        #expect(row.hasSuffix("| not shown in this run | not fully shown in this run |"), "\(row)")
        // A service whose baseline did not finish cannot be compared with: no take is claimed.
        evidence.baselines[0].status = .error
        report.glance = evidence
        #expect(try #require(Self.glanceRow(report, "`0.0.0.0`, no option")).hasPrefix("| `0.0.0.0`, no option | not shown in this run (the service alone did not settle) |"))
    }

    @Test("The per-address rows carry the note on an address added later only from a scenario that ran and showed it")
    func addedLaterNote() throws {
        var report = ReportTests.fixedReport()
        report.glance = Self.evidence(secondTakes: false)
        let label = AtAGlance.label(GlanceFixture.service(.perAddressIPv4, .none))
        #expect(try #require(Self.glanceRow(report, label)).hasSuffix("| — |"))
        report.scenarios = [Self.addedLater(hijacked: true)]
        #expect(try #require(Self.glanceRow(report, label)).hasSuffix("| bind addresses added later as they appear ([added-address-story](#added-address-story)) |"))
        report.scenarios = [Self.addedLater(hijacked: false)]
        #expect(try #require(Self.glanceRow(report, label)).hasSuffix("| — |"))
        report.scenarios = [Self.addedLater(hijacked: true)]
        report.scenarios[0].status = .skipped
        #expect(!AtAGlance.render(report).contains("added-address-story"))
    }

    @Test("The At a glance table is within the report's first 60 lines")
    func glanceFirst() throws {
        var report = ReportTests.fixedReport()
        report.glance = Self.evidence(secondTakes: true)
        let lines = MarkdownReport.render(report).split(separator: "\n", omittingEmptySubsequences: false)
        let heading = try #require(lines.firstIndex(of: "## At a glance"))
        let lastRow = try #require(lines.lastIndex { $0.hasPrefix("| one socket per address, both families") })
        #expect(heading < lastRow && lastRow < 60)
        #expect(lines.contains("| Your service binds | Same user, TCP | Same user, UDP | Another user, TCP | Another user, UDP | External clients affected | Fix |"))
    }

    static func outcome(_ name: String, verdict: Verdict) -> ScenarioOutcome {
        var outcome = ReportTests.fixedReport().scenarios[0]
        outcome.name = name
        outcome.verdict = verdict
        outcome.expectedVerdict = verdict
        outcome.matchesExpectation = true
        return outcome
    }

    @Test("A claim's verdict flips when the kernel's outcome does, and a missing scenario is not shown")
    func claimsFollowOutcomes() throws {
        var report = ReportTests.fixedReport()
        report.scenarios = [Self.outcome("restart-with-reuseaddr", verdict: .restarted), Self.outcome("restart-reuseaddr-only-new", verdict: .restartBlocked)]
        let row = { (report: LabReport) in
            Advice.articleClaims(report).split(separator: "\n").first { $0.contains("restarted server bind at once") }.map(String.init) ?? ""
        }
        #expect(row(report).contains("**true only if** the old socket set it too"))
        report.scenarios[1].verdict = .restarted
        #expect(row(report).contains("| **true** |"))
        report.scenarios[0].verdict = .restartBlocked
        #expect(row(report).contains("**false**"))
        report.scenarios.removeLast()
        #expect(row(report).contains("not shown in this run (restart-reuseaddr-only-new is not in the catalog)"))
        report.scenarios[0].status = .skipped
        #expect(row(report).contains("not shown in this run ([restart-with-reuseaddr](#restart-with-reuseaddr) was skipped)"))
    }

    @Test("The interception claim lists its ways as a sentence: a device bind is said to need SO_REUSEPORT when a device bind alone was refused")
    func interceptionClaim() throws {
        var report = ReportTests.fixedReport()
        report.scenarios = [Self.outcome("wildcard-then-loopback-reuseport", verdict: .hijacked), Self.outcome("bindtodevice-shadow", verdict: .hijacked),
                            Self.outcome("bindtodevice-plain", verdict: .blocked), Self.outcome("wildcard-then-loopback-plain", verdict: .blocked),
                            Self.outcome("wildcard-then-loopback-reuseaddr", verdict: .blocked), Self.outcome("udp-reuseaddr-other-user", verdict: .blocked),
                            Self.outcome("v6only-leaves-ipv4-open", verdict: .blocked)]
        let row = { (report: LabReport) in
            Advice.articleClaims(report).split(separator: "\n").first { $0.contains("can intercept a 0.0.0.0 listener") }.map(String.init) ?? ""
        }
        #expect(row(report).contains("**true, but only through** SO_REUSEPORT from the same user or SO_BINDTODEVICE with SO_REUSEPORT on both sockets (a device bind alone was refused); a plain or SO_REUSEADDR TCP bind is refused"),
                "\(row(report))")
        report.scenarios[2].verdict = .hijacked
        #expect(!row(report).contains("a device bind alone was refused"))
        report.scenarios[6].verdict = .hijacked
        #expect(row(report).contains("SO_REUSEPORT from the same user, SO_BINDTODEVICE with SO_REUSEPORT on both sockets or the IPv4/IPv6 family gap, with no option at all"), "\(row(report))")
    }

    @Test("What to do ties each step to a scenario that shows it, or says it was not shown")
    func whatToDo() {
        var report = ReportTests.fixedReport()
        report.scenarios = [Self.outcome("wildcard-then-loopback-plain", verdict: .blocked), Self.outcome("wildcard-then-loopback-reuseport", verdict: .hijacked)]
        let text = Advice.whatToDo(report)
        #expect(text.contains("2. **Leave SO_REUSEPORT off unless you load-balance.** Shown working:"))
        #expect(text.contains("1. **Bind every address the service answers on, on both families, in one process.** Not shown in this run"))
        report.scenarios[1].verdict = .blocked
        #expect(Advice.whatToDo(report).contains("2. **Leave SO_REUSEPORT off unless you load-balance.** **Not** borne out in this run"))
    }

    @Test("Summary lines summarise a crowd of sockets by role")
    func crowdSummary() {
        var scenario = ReportTests.fixedReport().scenarios[0]
        let attacker = scenario.sockets[1]
        scenario.sockets = [scenario.sockets[0]] + (1...12).map { index in
            var copy = attacker
            copy.id = "attacker-\(index)"
            return copy
        }
        #expect(ScenarioSection.setup(scenario).hasSuffix("12 attackers: all bind EADDRINUSE"))
        scenario.sockets[3].bind = "ok"
        scenario.sockets[3].listen = "ok"
        #expect(ScenarioSection.setup(scenario).hasSuffix("12 attackers: 11 bind EADDRINUSE, 1 bound"))
    }
}
