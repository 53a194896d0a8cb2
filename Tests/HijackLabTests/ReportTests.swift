import Foundation
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

@Suite("Report rendering from fixed outcomes")
struct ReportTests {
    static func fixedReport(port: UInt16 = 40123, pid: Int32 = 4242, date: String = "2026-01-01T00:00:00Z") -> LabReport {
        let expected = SocketExpectation(bind: "ok", listen: "ok")
        let victim = SocketOutcome(
            id: "victim", role: .victim, addressSpec: "wildcard4", address: "0.0.0.0", port: port, options: ["SO_REUSEPORT"], device: nil,
            user: .same, restarts: nil, listens: true, uid: 0, pid: pid, bind: "ok", listen: "ok",
            calls: [SyscallRecord(call: "setsockopt", arguments: "SO_REUSEPORT, 1", result: "ok"),
                    SyscallRecord(call: "bind", arguments: "0.0.0.0:\(port)", result: "ok")],
            expected: expected)
        var attacker = victim
        attacker.id = "attacker"
        attacker.role = .attacker
        attacker.address = "127.0.0.1"
        attacker.pid = pid + 1
        attacker.calls = [SyscallRecord(call: "bind", arguments: "127.0.0.1:\(port)", result: "EADDRINUSE")]
        attacker.bind = "EADDRINUSE"
        attacker.listen = "not-attempted"
        let hijack = ScenarioOutcome(
            name: "fixed-hijack", title: "A fixed title", story: "A fixed story.", lesson: "A fixed lesson.", file: "f.json", transport: .tcp,
            status: .ran, skipReason: nil, error: nil, port: port, verdict: .blocked, expectedVerdict: .hijacked, matchesExpectation: false,
            differences: ["verdict expected hijacked, got blocked"], steps: ["bind victim", "bind attacker"],
            sockets: [victim, attacker],
            probes: [ProbeOutcome(id: "local", from: .host, toSpec: "loopback4", to: "127.0.0.1", port: port, attempts: 8, closes: .clientFirst, ran: true,
                                  receivedBy: ["victim": 8], failed: 0, errors: [:], lost: 0, reached: ["127.0.0.1": 8], expectedReceivers: ["attacker"])])
        var split = hijack
        split.name = "fixed-split"
        split.verdict = .shared
        split.expectedVerdict = .shared
        split.matchesExpectation = true
        split.differences = []
        split.probes[0].receivedBy = ["victim": Int(pid % 7) + 1, "attacker": 31 - Int(pid % 7)]
        split.probes[0].attempts = 32
        return LabReport(
            environment: .init(kernel: "Linux 6.0", uid: 0, topology: .loopback, topologyReason: "test", date: date),
            scenarios: [hijack, split],
            invalidFiles: [LabReport.InvalidFile(ScenarioError(file: "scenarios/bad.json", field: "sockets[0].role", expected: "one of \"victim\"", found: "\"x\""))])
    }

    @Test("The report shows results, differences, traces and the diagram")
    func content() {
        let text = MarkdownReport.render(Self.fixedReport())
        #expect(text.contains("| [fixed-hijack](#fixed-hijack) | victim `0.0.0.0:PORT` SO_REUSEPORT; attacker `127.0.0.1:PORT` SO_REUSEPORT: bind EADDRINUSE | local → victim 8/8 | **blocked** ❌ expected hijacked |"))
        #expect(text.contains("`bind(127.0.0.1:PORT) = EADDRINUSE`"))
        #expect(text.contains("`setsockopt(SO_REUSEPORT, 1) = ok`"))
        #expect(text.contains("Differences: verdict expected hijacked, got blocked."))
        #expect(text.contains("probe_local -- \"8 of 8\" --> sock_victim"))
        #expect(text.contains("attacker + victim (split; counts in JSON)"))
        #expect(text.contains("scenarios/bad.json: field `sockets[0].role`: expected one of \"victim\"; found \"x\""))
        #expect(text.contains("2 scenarios ran, 1 matched their expectation."))
    }

    @Test("Two runs that differ only in port, pids and the hash split render the same apart from the environment")
    func deterministic() {
        let first = MarkdownReport.render(Self.fixedReport(port: 40123, pid: 100, date: "2026-01-01T00:00:00Z"))
        let second = MarkdownReport.render(Self.fixedReport(port: 51515, pid: 205, date: "2026-02-02T00:00:00Z"))
        let dropDate = { (text: String) in text.split(separator: "\n").filter { !$0.hasPrefix("- Date:") } }
        #expect(dropDate(first) == dropDate(second))
        #expect(first != second)
    }

    @Test("The JSON has the documented shape")
    func jsonShape() throws {
        let data = JSONReport.render(Self.fixedReport())
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let environment = try #require(root["environment"] as? [String: Any])
        #expect(Set(["kernel", "uid", "topology"]).isSubset(of: Set(environment.keys)))
        let scenario = try #require((root["scenarios"] as? [[String: Any]])?.first)
        for key in ["name", "status", "verdict", "matchesExpectation", "sockets", "probes"] { #expect(scenario[key] != nil, "missing \(key)") }
        #expect(scenario["status"] as? String == "ran")
        let socket = try #require((scenario["sockets"] as? [[String: Any]])?.last)
        for key in ["id", "role", "address", "port", "options", "uid", "pid", "bind", "listen"] { #expect(socket[key] != nil, "missing \(key)") }
        #expect(socket["bind"] as? String == "EADDRINUSE")
        #expect(socket["listen"] as? String == "not-attempted")
        let probe = try #require((scenario["probes"] as? [[String: Any]])?.first)
        for key in ["from", "to", "port", "attempts", "receivedBy", "failed"] { #expect(probe[key] != nil, "missing \(key)") }
        #expect(probe["receivedBy"] as? [String: Int] == ["victim": 8])
    }

    @Test("An attacker that holds the port the victim needed has squatted it; a restart story with an attacker is judged as an attack")
    func squattedAndRestartWithAttacker() {
        var sockets = Self.fixedReport().scenarios[0].sockets
        sockets[0].bind = "EADDRINUSE"
        sockets[0].listen = "not-attempted"
        sockets[1].bind = "ok"
        sockets[1].listen = "ok"
        let probes = Self.fixedReport().scenarios[0].probes
        #expect(VerdictRules.verdict(sockets: sockets, probes: probes) == .squatted)
        sockets[0].bind = "ok"
        sockets[0].listen = "ok"
        sockets[0].restarts = "someone"
        var hijacked = probes
        hijacked[0].receivedBy = ["attacker": 8]
        #expect(VerdictRules.verdict(sockets: sockets, probes: hijacked) == .hijacked)
        sockets.removeLast()
        #expect(VerdictRules.verdict(sockets: sockets, probes: probes) == .restarted)
    }

    @Test("A probe that never ran is reported as not run, never as received by nobody")
    func probeNotRun() {
        var report = Self.fixedReport()
        report.scenarios[0].status = .error
        report.scenarios[0].error = "agent victim did not answer"
        report.scenarios[0].probes[0].ran = false
        report.scenarios[0].probes[0].receivedBy = [:]
        let text = MarkdownReport.render(report)
        #expect(text.contains("| local | host client → `127.0.0.1:PORT` | 8 | not run | — |"))
        #expect(!text.contains("local → nobody"))
        #expect(VerdictRules.differences(sockets: report.scenarios[0].sockets, probes: report.scenarios[0].probes, verdict: .blocked, expected: .blocked)
            .contains("probe local did not run"))
    }

    @Test("Verdicts follow the rules", arguments: [
        (["attacker": 8], ["ok", "ok"], Verdict.hijacked),
        (["attacker": 3, "victim": 5], ["ok", "ok"], .shared),
        (["victim": 8], ["ok", "ok"], .unaffected),
        (["victim": 8], ["EADDRINUSE", "not-attempted"], .blocked),
        (["victim": 8], ["ok", "EADDRINUSE"], .blocked),
        // Attackers alone received, some connections failed: the failures show in the table.
        (["attacker": 1], ["ok", "ok"], .hijacked),
    ])
    func verdicts(received: [String: Int], attackerResults: [SyscallResult], verdict: Verdict) {
        var report = Self.fixedReport()
        var sockets = report.scenarios[0].sockets
        sockets[1].bind = attackerResults[0]
        sockets[1].listen = attackerResults[1]
        report.scenarios[0].probes[0].receivedBy = received
        #expect(VerdictRules.verdict(sockets: sockets, probes: report.scenarios[0].probes) == verdict)
    }
}
