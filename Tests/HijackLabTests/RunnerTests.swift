import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

@Suite("Runner on real processes and sockets")
struct RunnerTests {
    func socket(_ outcome: ScenarioOutcome, _ id: String) throws -> SocketOutcome {
        try #require(outcome.sockets.first { $0.id == id })
    }

    @Test("SO_REUSEPORT: 127.0.0.1 takes every loopback connection from 0.0.0.0")
    func reusePortHijack() throws {
        let (outcomes, _) = TestLab.run([try TestLab.scenario("wildcard-then-loopback-reuseport")])
        let outcome = try #require(outcomes.first)
        #expect(outcome.status == .ran)
        #expect(try socket(outcome, "victim").bind == "ok")
        #expect(try socket(outcome, "attacker").bind == "ok")
        #expect(try socket(outcome, "attacker").listen == "ok")
        #expect(outcome.probes[0].receivedBy == ["attacker": 8])
        #expect(outcome.probes[0].failed == 0)
        #expect(outcome.verdict == .hijacked)
        #expect(outcome.matchesExpectation)
        // The trace is the agent's, call by call.
        #expect(try socket(outcome, "attacker").calls.map(\.call) == ["socket", "setsockopt", "bind", "listen"])
        #expect(try socket(outcome, "attacker").uid == geteuid())
    }

    @Test("No options: the attacker's bind fails with EADDRINUSE and the victim keeps its connections")
    func plainBlocked() throws {
        let (outcomes, _) = TestLab.run([try TestLab.scenario("wildcard-then-loopback-plain")])
        let outcome = try #require(outcomes.first)
        let attacker = try socket(outcome, "attacker")
        #expect(attacker.bind == "EADDRINUSE")
        #expect(attacker.listen == "not-attempted")
        #expect(attacker.calls.last == SyscallRecord(call: "bind", arguments: "127.0.0.1:\(outcome.port!)", result: "EADDRINUSE"))
        #expect(outcome.probes[0].receivedBy == ["victim": 8])
        #expect(outcome.verdict == .blocked)
    }

    @Test("Both bind with SO_REUSEADDR, then only the first listen succeeds")
    func bindBothThenListen() throws {
        let (outcomes, _) = TestLab.run([try TestLab.scenario("reuseaddr-bind-both-then-listen")])
        let outcome = try #require(outcomes.first)
        #expect(try socket(outcome, "attacker").bind == "ok")
        #expect(try socket(outcome, "attacker").listen == "EADDRINUSE")
        #expect(outcome.probes[0].receivedBy == ["victim": 8])
    }

    @Test("TIME_WAIT keeps the old socket's SO_REUSEADDR: only-new restart fails, both-set restart works")
    func restarts() throws {
        let (outcomes, _) = TestLab.run([try TestLab.scenario("restart-reuseaddr-only-new"), try TestLab.scenario("restart-with-reuseaddr")])
        #expect(try socket(outcomes[0], "new").bind == "EADDRINUSE")
        #expect(outcomes[0].probes.first { $0.id == "after" }?.errors == ["ECONNREFUSED": 8])
        #expect(try socket(outcomes[1], "new").bind == "ok")
        #expect(outcomes[1].probes.first { $0.id == "after" }?.receivedBy == ["new": 8])
        #expect(outcomes.map(\.verdict) == [.restartBlocked, .restarted])
    }

    @Test("A reuseport group on one address splits the connections between its members")
    func reusePortSplit() throws {
        let (outcomes, _) = TestLab.run([try TestLab.scenario("reuseport-same-address")])
        let probe = try #require(outcomes.first?.probes.first)
        #expect(Set(probe.receivedBy.keys) == ["victim", "attacker"])
        #expect(probe.receivedBy.values.reduce(0, +) == probe.attempts)
        #expect(outcomes.first?.verdict == .shared)
    }

    @Test("On loopback the catalog matches where it can run, skips the rest with a reason, and no agent outlives the run")
    func wholeCatalog() throws {
        let scenarios = try ScenarioFile.loadDirectory(TestLab.scenariosDirectory).scenarios
        let (outcomes, pids) = TestLab.run(scenarios)
        let needsNetns = Set(scenarios.filter(TestLab.needsNetns).map(\.name))
        // Another user's agent needs root; as an ordinary user those scenarios are skipped too.
        let needsRoot = geteuid() == 0 ? [] : Set(scenarios.filter(TestLab.needsRoot).map(\.name))
        for outcome in outcomes {
            // A scenario may need both; either reason is the right one to give.
            let reasons = (needsNetns.contains(outcome.name) ? ["netns topology"] : []) + (needsRoot.contains(outcome.name) ? ["only root can start"] : [])
            if !reasons.isEmpty {
                #expect(outcome.status == .skipped, "\(outcome.name)")
                #expect(reasons.contains { outcome.skipReason?.contains($0) == true }, "\(outcome.name): \(outcome.skipReason ?? "")")
                continue
            }
            #expect(outcome.status == .ran, "\(outcome.name): \(outcome.skipReason ?? outcome.error ?? "")")
            #expect(outcome.matchesExpectation, "\(outcome.name): \(outcome.differences)")
        }
        // One agent per socket of each scenario that ran, plus one client for the whole run.
        let ran = scenarios.filter { !needsNetns.contains($0.name) && !needsRoot.contains($0.name) }
        #expect(pids.count == ran.map(\.sockets.count).reduce(0, +) + 1)
        for pid in pids { #expect(TestLab.isGone(pid), "agent \(pid) is still there") }
    }

    @Test("When the kernel disagrees with the file, the outcome says so and how")
    func disagreementIsReported() throws {
        let wrong = try ScenarioFile.load(path: TestLab.fixtures + "/wrong/wrong-expectation.json")
        let (outcomes, _) = TestLab.run([wrong])
        let outcome = try #require(outcomes.first)
        #expect(outcome.status == .ran)
        #expect(outcome.verdict == .blocked)
        #expect(!outcome.matchesExpectation)
        #expect(outcome.differences.contains("verdict expected hijacked, got blocked"))
        #expect(outcome.differences.contains("probe local: expected receivers attacker, got victim 8"))
    }

    @Test("A run that fails on a timeout reports why and leaves no process behind")
    func failedRunCleansUp() throws {
        // A microsecond is too short for an agent's answer, but not for a line already waiting
        // in the pipe: the start-up line can be there when it is first read, and then the
        // next command is the one that times out. Either way the error names the wait.
        let (outcomes, pids) = TestLab.run([try TestLab.scenario("wildcard-then-loopback-reuseport")], replyTimeout: 0.000_001)
        let outcome = try #require(outcomes.first)
        #expect(outcome.status == .error)
        let error = outcome.error ?? ""
        #expect(error.contains("did not answer") && error.contains("within 1e-06 s"), "\(error)")
        #expect(!outcome.matchesExpectation)
        #expect(!pids.isEmpty)
        for pid in pids { #expect(TestLab.isGone(pid), "agent \(pid) is still there") }
    }

    @Test("An agent that dies mid-scenario ends that scenario with a reason; the runner lives on")
    func agentDiesMidRun() throws {
        let runner = Runner(settings: TestLab.settings())
        defer { runner.shutdown() }
        runner.onStep = { [unowned runner] _, step in
            // Just before the probe, kill the newest agent: the attacker's.
            if case .probe = step, let newest = runner.startedProcesses.last { kill(newest.pid, SIGKILL) }
        }
        let outcome = runner.run(try TestLab.scenario("wildcard-then-loopback-reuseport"))
        #expect(outcome.status == .error)
        #expect(outcome.error?.contains("attacker") == true, "\(outcome.error ?? "")")
        // The same runner goes on to the next scenario.
        runner.onStep = nil
        #expect(runner.run(try TestLab.scenario("wildcard-then-loopback-plain")).matchesExpectation)
        runner.shutdown()
        for process in runner.startedProcesses { #expect(TestLab.isGone(process), "\(process) is still there") }
    }

    @Test("An identity is confirmed only with the started pid and the agent's own report of that client")
    func identityConfirmation() throws {
        let agent = try AgentClient(executable: TestLab.agentExecutable, id: "victim", timeout: 5)
        defer { agent.kill() }
        try agent.awaitReady()
        // The agent has served nobody: even its true pid is not enough.
        let honest = ProbeConnection(local: "127.0.0.1:40000", identity: "victim \(agent.pid) 0")
        #expect(throws: LabError.self) { try agent.confirm(honest, in: "local") }
        let forged = ProbeConnection(local: "127.0.0.1:40000", identity: "victim \(agent.pid + 1) 0")
        let error = #expect(throws: LabError.self) { try agent.confirm(forged, in: "local") }
        #expect(error?.description.contains("whose agent is pid \(agent.pid)") == true)
        let renamed = ProbeConnection(local: "127.0.0.1:40000", identity: "attacker \(agent.pid) 0")
        #expect(throws: LabError.self) { try agent.confirm(renamed, in: "local") }
    }

    @Test("A close step closes the listener: later connections are refused")
    func closeStep() throws {
        let text = """
            {"name": "close-step", "title": "t", "story": "s", "lesson": "l", "transport": "tcp",
             "sockets": [{"id": "victim", "role": "victim", "address": "loopback4"}],
             "probes": [{"id": "open", "to": "loopback4", "connections": 8}, {"id": "closed", "to": "loopback4", "connections": 8}],
             "steps": [{"do": "bind", "socket": "victim"}, {"do": "listen", "socket": "victim"}, {"do": "probe", "probe": "open"},
                       {"do": "close", "socket": "victim"}, {"do": "probe", "probe": "closed"}],
             "expect": {"verdict": "unaffected", "sockets": {"victim": {"bind": "ok", "listen": "ok"}},
                        "probes": {"open": {"receivedBy": ["victim"]}, "closed": {"receivedBy": []}}}}
            """
        let (outcomes, _) = TestLab.run([try ScenarioFile.parse(Data(text.utf8), file: "close-step.json")])
        let outcome = try #require(outcomes.first)
        #expect(outcome.status == .ran, "\(outcome.error ?? "")")
        #expect(outcome.probes[0].receivedBy == ["victim": 8])
        #expect(outcome.probes[1].errors == ["ECONNREFUSED": 8])
        #expect(outcome.sockets[0].calls.last == SyscallRecord(call: "close", arguments: "", result: "ok"))
        #expect(outcome.matchesExpectation, "\(outcome.differences)")
    }

    @Test("UDP accounting: answered datagrams name their receiver; unanswered ones are lost, not failed")
    func udpAccounting() throws {
        let text = """
            {"name": "udp-accounting", "title": "t", "story": "s", "lesson": "l", "transport": "udp",
             "sockets": [{"id": "victim", "role": "victim", "address": "loopback4"},
                         {"id": "mute", "role": "victim", "address": "127.0.0.2", "listen": false}],
             "probes": [{"id": "answered", "to": "loopback4", "connections": 4}, {"id": "unanswered", "to": "127.0.0.2", "connections": 2}],
             "expect": {"verdict": "unaffected", "sockets": {"victim": {"bind": "ok"}, "mute": {"bind": "ok"}},
                        "probes": {"answered": {"receivedBy": ["victim"]}, "unanswered": {"receivedBy": []}}}}
            """
        // The mute socket is bound but never served, so its datagrams get no reply: a short wait.
        var settings = TestLab.settings()
        settings.connectTimeout = 0.2
        let runner = Runner(settings: settings)
        defer { runner.shutdown() }
        let outcome = runner.run(try ScenarioFile.parse(Data(text.utf8), file: "udp-accounting.json"))
        #expect(outcome.status == .ran, "\(outcome.error ?? "")")
        #expect(outcome.probes[0].receivedBy == ["victim": 4])
        #expect(outcome.probes[0].lost == 0)
        #expect(outcome.probes[1].receivedBy.isEmpty)
        #expect(outcome.probes[1].lost == 2)
        #expect(outcome.probes[1].failed == 0)
        #expect(outcome.sockets.allSatisfy { $0.listen == "not-applicable" })
        #expect(outcome.matchesExpectation, "\(outcome.differences)")
    }

    @Test("A scenario the topology cannot serve is skipped with the reason")
    func skipsWhatLoopbackCannotDo() throws {
        let text = try String(contentsOfFile: TestLab.scenariosDirectory + "/wildcard-then-loopback-reuseport.json", encoding: .utf8)
            .replacingOccurrences(of: "\"address\": \"loopback4\"", with: "\"address\": \"lab-interface\"")
        let scenario = try ScenarioFile.parse(Data(text.utf8), file: "wildcard-then-loopback-reuseport.json")
        let (outcomes, pids) = TestLab.run([scenario])
        #expect(outcomes.first?.status == .skipped)
        #expect(outcomes.first?.skipReason?.contains("lab-interface exists only in the netns topology") == true)
        #expect(pids.isEmpty)
    }
}
