import Foundation
import Testing
@testable import HijackLab

@Suite("Command line")
struct CLITests {
    func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("hijack-lab-\(UUID().uuidString)-\(name)").path
    }

    @Test("all with a malformed file: runs the others, lists the bad file in the report, exits 2")
    func malformedFileInAll() throws {
        let captured = TestLab.Captured()
        let report = temporaryPath("REPORT.md")
        let json = temporaryPath("out.json")
        defer { try? FileManager.default.removeItem(atPath: report); try? FileManager.default.removeItem(atPath: json) }
        let status = CLI.run(["all", "--scenarios", TestLab.fixtures + "/mixed", "--report", report, "--json", json],
                             console: captured.console, agentExecutable: TestLab.agentExecutable)
        #expect(status == 2)
        #expect(captured.err.contains("broken-one.json: field `sockets[1].options[0]`: expected one of \"SO_REUSEADDR\""))
        #expect(captured.out.contains("good-one"))
        #expect(captured.out.contains("as expected"))
        let text = try String(contentsOfFile: report, encoding: .utf8)
        #expect(text.contains("## Scenario files that could not be read"))
        #expect(text.contains("broken-one.json"))
        let outcome = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
        #expect((outcome?["scenarios"] as? [Any])?.count == 1)
    }

    @Test("run exits 1 when the kernel disagrees with the expectation, and says which scenario")
    func mismatchExitsOne() {
        let captured = TestLab.Captured()
        let status = CLI.run(["run", "wrong-expectation", "--scenarios", TestLab.fixtures + "/wrong"],
                             console: captured.console, agentExecutable: TestLab.agentExecutable)
        #expect(status == 1)
        #expect(captured.out.contains("DIFFERS: "))
        #expect(captured.out.contains("verdict expected hijacked, got blocked"))
        #expect(captured.out.contains("differed from expectation or could not finish: wrong-expectation"))
    }

    @Test("run exits 0 when every scenario matched")
    func matchExitsZero() {
        let captured = TestLab.Captured()
        let status = CLI.run(["run", "per-interface-fix", "--scenarios", TestLab.scenariosDirectory],
                             console: captured.console, agentExecutable: TestLab.agentExecutable)
        #expect(status == 0, "\(captured.out)\(captured.err)")
        #expect(captured.out.contains("per-interface-fix"))
        #expect(captured.out.contains("blocked"))
    }

    @Test("Usage errors exit 2 with a message", arguments: [
        (["frobnicate"], "unknown command"),
        (["run"], "run needs at least one scenario name"),
        (["run", "no-such-scenario"], "no scenario \"no-such-scenario\""),
        (["all", "--timeout", "soon"], "--timeout expects seconds"),
        (["all", "--bogus"], "unknown option --bogus"),
        (["show"], "show takes exactly one scenario name"),
        ([], "USAGE"),
    ])
    func usageErrors(arguments: [String], message: String) {
        let captured = TestLab.Captured()
        let status = CLI.run(arguments + (arguments.first == "run" ? ["--scenarios", TestLab.scenariosDirectory] : []),
                             console: captured.console, agentExecutable: TestLab.agentExecutable)
        #expect(status == 2)
        #expect(captured.err.contains(message), "\(captured.err)")
    }

    @Test("list and show explain the catalog")
    func listAndShow() {
        let listed = TestLab.Captured()
        #expect(CLI.run(["list", "--scenarios", TestLab.scenariosDirectory], console: listed.console) == 0)
        #expect(listed.out.split(separator: "\n").count == (try? FileManager.default.contentsOfDirectory(atPath: TestLab.scenariosDirectory))?.filter { $0.hasSuffix(".json") }.count)
        let shown = TestLab.Captured()
        #expect(CLI.run(["show", "wildcard-then-loopback-reuseport", "--scenarios", TestLab.scenariosDirectory], console: shown.console) == 0)
        #expect(shown.out.contains("attacker (attacker) binds loopback4 = 127.0.0.1 with setsockopt(SO_REUSEPORT, 1)"))
        #expect(shown.out.contains("Expected on Linux: hijacked"))
    }

    @Test("help teaches the commands and the exit codes")
    func help() {
        let captured = TestLab.Captured()
        #expect(CLI.run(["--help"], console: captured.console) == 0)
        for word in ["all", "run NAME", "list", "show NAME", "--json FILE", "--report FILE", "EXIT STATUS"] {
            #expect(captured.out.contains(word), "help lacks \(word)")
        }
    }
}
