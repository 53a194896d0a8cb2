import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

/// Issue 9's "bounded everything": a scenario cannot run for ever, and a machine out of
/// processes gets a clear error at once, never a hang.
@Suite("Limits and resource exhaustion")
struct LimitsTests {
    @Test("A scenario that runs past --deadline is stopped, its agents killed, and reported as not finished",
          .enabled(if: Topology.netnsMissing() == nil, "needs root and iproute2's ip: the probe waits on a lab address nobody holds"))
    func scenarioDeadline() throws {
        // Eight connections to an address in the lab's subnet that nobody holds: each waits
        // its whole connect timeout (2 s), far past a one-second deadline.
        let scenario = try ScenarioFile.load(path: TestLab.fixtures + "/slow/slow-probe.json")
        var settings = LabSettings(agentExecutable: TestLab.agentExecutable, topology: .netns(reason: "tests"))
        settings.scenarioDeadline = 1
        let runner = Runner(settings: settings)
        let outcome = runner.run(scenario)
        runner.shutdown()
        #expect(outcome.status == .error)
        #expect(outcome.error?.contains("the scenario ran past its deadline of 1 s (--deadline); its agents were killed") == true, "\(outcome.error ?? "")")
        for process in runner.startedProcesses {
            #expect(TestLab.isGone(process), "agent \(process.pid) outlived the run")
        }
    }

    @Test("With the process limit used up, a run fails at once with EAGAIN and a clear message",
          .enabled(if: geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs root to run as a fresh uid with setpriv"),
          .enabled(if: TestLab.reachableCopyUnavailable == nil, "another uid needs a copy of the built programs it can reach: \(TestLab.reachableCopyUnavailable ?? "")"))
    func processLimit() throws {
        // uid 65533 has no process, so `ulimit -u 1` leaves room for the run itself and none
        // for an agent. It runs a copy it can reach, whatever folder the checkout is in.
        let (output, status) = try TestLab.withReachableCopy { copy in
            let script = "ulimit -u 1; exec \"$0\" run per-interface-fix --scenarios \"$1\" --topology loopback"
            let run = try ChildProcess(executable: "/usr/bin/setpriv",
                                       arguments: ["--reuid=65533", "--regid=65533", "--clear-groups", "/bin/bash", "-c", script, copy.tool, copy.scenarios],
                                       mergeStandardError: true)
            let output = run.readAll(until: .after(seconds: 30))
            return (output, run.finish(until: .after(seconds: 5)))
        }
        try #require(output != nil, "the run did not end within 30 s")
        #expect((status >> 8) & 0xff == 2, "\(output!)")
        #expect(output!.contains("could not start agent client-host: posix_spawn: EAGAIN"), "\(output!)")
    }

    @Test("Out of file descriptors (ulimit -n): a clear EMFILE error, at once, never a hang")
    func descriptorLimit() throws {
        // Ten descriptors: enough to start, too few for the lab's pipes and sockets.
        let script = "ulimit -n 10; exec \"$0\" run per-interface-fix --scenarios \"$1\" --topology loopback"
        let run = try ChildProcess(executable: "/bin/bash", arguments: ["-c", script, TestLab.toolExecutable, TestLab.scenariosDirectory],
                                   mergeStandardError: true)
        let output = run.readAll(until: .after(seconds: 30))
        let status = run.finish(until: .after(seconds: 5))
        try #require(output != nil, "the run did not end within 30 s")
        #expect([1, 2].contains((status >> 8) & 0xff), "\(output!)")
        #expect(output!.contains("EMFILE"), "\(output!)")
    }

    @Test("When root's default netns cannot be built, the run says so on stderr and at the top of the report",
          .enabled(if: Topology.netnsMissing() == nil, "needs root and iproute2's ip, so that netns is the default"))
    func loudFallback() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hijack-lab-fallback-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let captured = TestLab.Captured()
        // No agent answers its start-up within a millisecond, so the namespaces cannot be built.
        _ = CLI.run(["run", "per-interface-fix", "--scenarios", TestLab.scenariosDirectory, "--timeout", "0.001", "--report", folder + "/REPORT.md"],
                    console: captured.console, agentExecutable: TestLab.agentExecutable)
        #expect(captured.err.contains("WARNING: the netns topology could not be built"), "\(captured.err)")
        let report = try String(contentsOfFile: folder + "/REPORT.md", encoding: .utf8)
        let top = report.split(separator: "\n").prefix(10).joined(separator: "\n")
        #expect(top.contains("- Topology: **loopback**, FALLBACK: the netns topology could not be built"), "\(top)")
    }
}
