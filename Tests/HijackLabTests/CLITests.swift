import CHijackLab
import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

@Suite("Command line")
struct CLITests {
    func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("hijack-lab-\(UUID().uuidString)-\(name)").path
    }

    /// A fresh folder, removed with everything in it when `body` returns.
    func withFolder<T>(_ body: (String) throws -> T) throws -> T {
        let folder = temporaryPath("folder")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        return try body(folder)
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
        #expect(captured.err.contains("good-one"))
        #expect(captured.err.contains("as expected"))
        #expect(captured.err.contains("1 ran: 1 as expected, 0 differ; 0 skipped; 1 file could not be read"))
        #expect(captured.out.isEmpty, "stdout carries only data that was asked for")
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
        #expect(captured.err.contains("DIFFERS: "))
        #expect(captured.err.contains("verdict expected hijacked, got blocked"))
        #expect(captured.err.contains("differed from expectation or could not finish: wrong-expectation"))
        #expect(captured.err.contains("1 ran: 0 as expected, 1 differ; 0 skipped"))
    }

    @Test("run (two lanes in netns, one on loopback): progress lines and outcomes keep the order the names were given in, every name whole")
    func lanesKeepOrder() throws {
        let catalog = try ScenarioFile.loadDirectory(TestLab.scenariosDirectory).scenarios
        // From the catalog as it is (no names are assumed), in reverse: not the files' order.
        let picked = Array(catalog.prefix(6).reversed())
        try #require(picked.count >= 2, "the catalog has fewer than two scenarios")
        try withFolder { folder in
            // One of them renamed to the longest name a scenario may have, which the progress
            // lines must show whole, the other names padded to its width.
            let long = Self.name(ofLength: ScenarioLimits.nameCharacters)
            let renamed = picked.count / 2
            for (index, scenario) in picked.enumerated() {
                let name = index == renamed ? long : scenario.name
                try Self.copy(scenario, named: name, to: folder)
            }
            var names = picked.map(\.name)
            names[renamed] = long
            let json = folder + "/lanes.out"
            let captured = TestLab.Captured()
            let status = CLI.run(["run"] + names + ["--scenarios", folder, "--json", json],
                                 console: captured.console, agentExecutable: TestLab.agentExecutable)
            #expect(status == 0, "\(captured.err)")
            let progress = captured.err.split(separator: "\n").filter { $0.hasPrefix("[") }
            #expect(progress.count == names.count, "\(captured.err)")
            for (index, line) in progress.enumerated() {
                let counter = "[\(index + 1)/\(names.count)] "
                let column = names[index].padding(toLength: ScenarioLimits.nameCharacters, withPad: " ", startingAt: 0) + " "
                #expect(line.hasPrefix(counter + column), "\(line)")
                // The next column starts at the same place on every line.
                #expect(line.dropFirst(counter.count + column.count).first?.isWhitespace == false, "\(line)")
            }
            let document = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
            let ran = (document?["scenarios"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
            #expect(ran == names)
        }
    }

    @Test("check takes a scenario name of the longest length the limit allows, and refuses one character more")
    func nameLimit() throws {
        let scenario = try #require(try ScenarioFile.loadDirectory(TestLab.scenariosDirectory).scenarios.first, "the catalog is empty")
        try withFolder { folder in
            let longest = Self.name(ofLength: ScenarioLimits.nameCharacters)
            let over = Self.name(ofLength: ScenarioLimits.nameCharacters + 1)
            try Self.copy(scenario, named: longest, to: folder)
            try Self.copy(scenario, named: over, to: folder)
            let accepted = TestLab.Captured()
            #expect(CLI.run(["check", "\(folder)/\(longest).json"], console: accepted.console, agentExecutable: "/nonexistent/agent") == 0, "\(accepted.err)")
            #expect(accepted.out.contains(longest))
            let refused = TestLab.Captured()
            #expect(CLI.run(["check", "\(folder)/\(over).json"], console: refused.console, agentExecutable: "/nonexistent/agent") == 2)
            #expect(refused.err.contains("\(folder)/\(over).json: field `name`: expected a name of at most \(ScenarioLimits.nameCharacters) characters; found \(ScenarioLimits.nameCharacters + 1) characters"),
                    "\(refused.err)")
            #expect(refused.out.isEmpty)
        }
    }

    /// A valid scenario name of exactly `length` characters.
    static func name(ofLength length: Int) -> String {
        let stem = "long-name-"
        return stem + String(repeating: "n", count: length - stem.count)
    }

    /// Writes `scenario`'s file under another name, in the file's name and its `name` field alike.
    static func copy(_ scenario: Scenario, named name: String, to folder: String) throws {
        let text = try String(contentsOfFile: scenario.file, encoding: .utf8)
        let field = "\"name\": \"\(scenario.name)\""
        try #require(text.components(separatedBy: field).count == 2, "\(scenario.file) does not hold \(field) once")
        try text.replacingOccurrences(of: field, with: "\"name\": \"\(name)\"").write(toFile: "\(folder)/\(name).json", atomically: false, encoding: .utf8)
    }

    @Test("run exits 0 when every scenario matched, and writes no report unless asked")
    func matchExitsZero() throws {
        let captured = TestLab.Captured()
        let before = try String(contentsOfFile: TestLab.packageRoot.appendingPathComponent("REPORT.md").path, encoding: .utf8)
        let status = CLI.run(["run", "per-interface-fix", "--scenarios", TestLab.scenariosDirectory],
                             console: captured.console, agentExecutable: TestLab.agentExecutable)
        #expect(status == 0, "\(captured.err)")
        #expect(captured.err.contains("per-interface-fix"))
        #expect(captured.err.contains("blocked"))
        #expect(!captured.err.contains("wrote "))
        #expect(try String(contentsOfFile: TestLab.packageRoot.appendingPathComponent("REPORT.md").path, encoding: .utf8) == before)
    }

    @Test("Usage errors exit 2 with a message", arguments: [
        (["frobnicate"], "unknown command"),
        (["lst"], "did you mean list?"),
        (["help", "matrx"], "did you mean matrix?"),
        (["run"], "run needs at least one scenario name"),
        (["run", "no-such-scenario"], "no scenario \"no-such-scenario\""),
        (["run", "per-interface-fx"], "did you mean per-interface-fix?"),
        (["show", "per-interface-fx"], "did you mean per-interface-fix?"),
        (["all", "--timeout", "soon"], "--timeout expects seconds"),
        (["all", "--timeout", "0x10"], "--timeout expects seconds, a decimal number"),
        (["all", "--timeout", "1e1"], "--timeout expects seconds, a decimal number"),
        (["all", "--deadline", "0"], "--deadline expects seconds"),
        (["all", "--bogus"], "unknown option --bogus"),
        (["all", "--verbos"], "did you mean --verbose?"),
        (["all", "--json"], "--json needs a value"),
        (["all", "--json", "a", "--json", "b"], "--json is given twice"),
        (["all", "--json", "-", "--report", "-"], "--report and --json both name stdout"),
        (["all", "--report="], "--report needs a file name"),
        (["all", "--report", "/tmp/hl-same.md", "--json", "/tmp/../tmp/hl-same.md"], "--report and --json both name"),
        (["help", "run", "extra"], "help: takes one command"),
        (["all", "--topology", "netnss"], "did you mean netns?"),
        (["audit", "--port", "0x50"], "--port expects a whole number from 1 to 65535"),
        (["audit", "--min-severity", "alarms"], "did you mean alarm?"),
        (["matrix", "--workers", "0"], "--workers expects a whole number from 1 to 16"),
        (["show"], "show takes exactly one scenario name"),
        (["check"], "check needs at least one scenario file"),
        ([], "USAGE"),
    ])
    func usageErrors(arguments: [String], message: String) {
        let captured = TestLab.Captured()
        // A bad command line must be refused before any agent starts: this agent does not exist.
        let status = CLI.run(arguments + (["run", "show"].contains(arguments.first) ? ["--scenarios", TestLab.scenariosDirectory] : []),
                             console: captured.console, agentExecutable: "/nonexistent/agent")
        #expect(status == 2)
        #expect(captured.err.contains(message), "\(captured.err)")
        #expect(captured.out.isEmpty)
    }

    @Test("A folder with no scenario files is exit 2 with \"no scenario files in DIR\", before any agent starts",
          arguments: [["check", "DIR"], ["list", "--scenarios", "DIR"], ["all", "--scenarios", "DIR"], ["run", "x", "--scenarios", "DIR"]])
    func emptyScenarioFolder(arguments: [String]) throws {
        try withFolder { folder in
            // Files that are not scenarios do not count as scenarios.
            try "notes\n".write(toFile: folder + "/README.md", atomically: false, encoding: .utf8)
            let captured = TestLab.Captured()
            let status = CLI.run(arguments.map { $0 == "DIR" ? folder : $0 }, console: captured.console, agentExecutable: "/nonexistent/agent")
            #expect(status == 2)
            #expect(captured.err.contains("no scenario files in \(folder)"), "\(captured.err)")
            #expect(captured.out.isEmpty)
        }
    }

    @Test("A bad output path is exit 2 before any agent starts", arguments: [
        ("/nonexistent-folder/REPORT.md", "the folder /nonexistent-folder does not exist"),
        ("/", "is a folder"),
        ("/proc/version", "cannot create a file in /proc"),
    ])
    func badOutputPath(path: String, message: String) {
        let captured = TestLab.Captured()
        let status = CLI.run(["run", "per-interface-fix", "--scenarios", TestLab.scenariosDirectory, "--json", path],
                             console: captured.console, agentExecutable: "/nonexistent/agent")
        #expect(status == 2)
        #expect(captured.err.contains(message), "\(captured.err)")
        #expect(!captured.err.contains("could not start agent"))
    }

    @Test("A write that fails late: the other output is still written, and the status and message name the failure")
    func failedWriteKeepsTheOthers() throws {
        try withFolder { folder in
            let captured = TestLab.Captured()
            let json = folder + "/out.json"
            let status = CLI.run(["run", "per-interface-fix", "--scenarios", TestLab.scenariosDirectory, "--report", "/dev/full", "--json", json],
                                 console: captured.console, agentExecutable: TestLab.agentExecutable)
            #expect(status == 2)
            #expect(captured.err.contains("cannot write /dev/full (--report): write: ENOSPC"), "\(captured.err)")
            let report = try JSONDecoder().decode(LabReport.self, from: Data(contentsOf: URL(fileURLWithPath: json)))
            #expect(report.scenarios.map(\.name) == ["per-interface-fix"])
            // Written by rename: nothing but the output itself is left in the folder.
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["out.json"])
        }
    }

    @Test("--json - writes the JSON, and only the JSON, to stdout")
    func jsonToStdout() throws {
        let captured = TestLab.Captured()
        let status = CLI.run(["run", "per-interface-fix", "--scenarios", TestLab.scenariosDirectory, "--json", "-"],
                             console: captured.console, agentExecutable: TestLab.agentExecutable)
        #expect(status == 0)
        let report = try JSONDecoder().decode(LabReport.self, from: Data(captured.out.utf8))
        #expect(report.scenarios.first?.name == "per-interface-fix")
        #expect(captured.err.contains("1 ran: 1 as expected"))
        #expect(!FileManager.default.fileExists(atPath: "-"))
    }

    @Test("Output to a closed pipe (| head -1, >&-): the run finishes and writes complete files")
    func closedOutput() throws {
        try withFolder { folder in
            let report = folder + "/REPORT.md"
            let json = folder + "/out.json"
            // stdout and stderr both go into a pipe whose reader is already gone, as after `| head -1`.
            let status = try Self.runWithClosedOutput(["run", "per-interface-fix", "wildcard-then-loopback-reuseport",
                                                        "--scenarios", TestLab.scenariosDirectory, "--report", report, "--json", json])
            #expect(status == 0, "exit status \(status)")
            let decoded = try JSONDecoder().decode(LabReport.self, from: Data(contentsOf: URL(fileURLWithPath: json)))
            #expect(decoded.scenarios.map(\.name) == ["per-interface-fix", "wildcard-then-loopback-reuseport"])
            let text = try String(contentsOfFile: report, encoding: .utf8)
            #expect(text.contains("## wildcard-then-loopback-reuseport"))
        }
    }

    /// Starts the real binary with fds 1 and 2 on a pipe whose read end is closed, and returns
    /// its exit code; a bounded wait on a pidfd, never a blocking waitpid.
    static func runWithClosedOutput(_ arguments: [String]) throws -> Int32 {
        var fds: [Int32] = [-1, -1]
        try #require(hl_pipe_cloexec(&fds) == 0)
        Glibc.close(fds[0])
        defer { Glibc.close(fds[1]) }
        return try runBinary(arguments) { actions in
            posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
            posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        }
    }

    /// Starts the real binary with the descriptors `arrange` sets up, and returns its exit code
    /// (128 + the signal when one ended it), waiting on a pidfd with a deadline.
    /// `program` is hijack-lab unless given, as bytes (any name, UTF-8 or not).
    static func runBinary(_ arguments: [String], program: [UInt8]? = nil, seconds: Double = 120, started: (pid_t) throws -> Void = { _ in },
                          _ arrange: (inout posix_spawn_file_actions_t) -> Void) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        arrange(&actions)
        // Only what the test arranged: no descriptor another test holds open leaks into the run.
        _ = hl_spawn_close_from(&actions, 3)
        let path = (program ?? Array(TestLab.toolExecutable.utf8)).map { CChar(bitPattern: $0) } + [0]
        let argv = [path.withUnsafeBufferPointer { strdup($0.baseAddress!) }] + arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        try #require(posix_spawn(&pid, argv[0]!, &actions, nil, argv, environ) == 0)
        let handle = hl_pidfd_open(pid)
        defer { if handle >= 0 { Glibc.close(handle) } }
        do { try started(pid) } catch { kill(pid, SIGKILL) }
        let ended = handle >= 0 && (try? waitFor(handle, events: Int16(POLLIN), until: .after(seconds: seconds))) == true
        if !ended { kill(pid, SIGKILL) }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        try #require(ended, "the run did not end within \(seconds) s")
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    @Test("Data that cannot reach stdout (a full disk, a closed stdout) is exit 2; a run that wrote nothing there is not")
    func failedStandardOutput() throws {
        let full = try Self.runBinary(["list", "--scenarios", TestLab.scenariosDirectory]) { actions in
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/full", O_WRONLY, 0)
        }
        #expect(full == 2)
        let closedWithData = try Self.runBinary(["check", TestLab.fixtures + "/mixed/good-one.json"]) { actions in
            posix_spawn_file_actions_addclose(&actions, 1)
        }
        #expect(closedWithData == 2)
        // `run` without `-` writes nothing to stdout: a closed stdout costs it nothing.
        let closedWithout = try Self.runBinary(["run", "per-interface-fix", "--scenarios", TestLab.scenariosDirectory]) { actions in
            posix_spawn_file_actions_addclose(&actions, 1)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        #expect(closedWithout == 0)
    }

    @Test("SIGTERM while the report is being written to a stream nobody reads: exit 143 at once, and no regular output is published")
    func signalWhilePublishing() throws {
        try withFolder { folder in
            // stdout is a pipe that is already full and never read: `--report /dev/stdout`
            // waits for room (within its deadline) once the scenario is done.
            var fds: [Int32] = [-1, -1]
            try #require(hl_pipe_cloexec(&fds) == 0)
            defer { Glibc.close(fds[0]); Glibc.close(fds[1]) }
            try Syscall.setNonBlocking(fds[1])
            let filler = [UInt8](repeating: 0x2e, count: 4096)
            while filler.withUnsafeBytes({ write(fds[1], $0.baseAddress, $0.count) }) > 0 {}
            // Blocking again for the run, which shares this open file as its fd 1.
            _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) & ~O_NONBLOCK)
            let json = folder + "/out.json"
            let status = try Self.runBinary(["run", "per-interface-fix", "--scenarios", TestLab.scenariosDirectory, "--topology", "loopback",
                                             "--report", "/dev/stdout", "--json", json], seconds: 30, started: { pid in
                // The JSON is staged in its temp file before anything is published; then the
                // run waits in poll(2) on the full pipe. Wait (bounded) for both, then stop it.
                let deadline = Deadline.after(seconds: 20)
                while !deadline.hasPassed {
                    let staged = (try? FileManager.default.contentsOfDirectory(atPath: folder))?.contains { $0.hasPrefix(".out.json.hijack-lab-") } ?? false
                    let wchan = (try? String(contentsOfFile: "/proc/\(pid)/wchan", encoding: .utf8)) ?? ""
                    if staged && wchan.contains("poll") { break }
                    _ = poll(nil, 0, 5)
                }
                kill(pid, SIGTERM)
            }) { actions in
                posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
                posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
            }
            #expect(status == 128 + SIGTERM)
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder).isEmpty, "the JSON, or a temp file, was left")
        }
    }

    @Test("SIGINT to audit --watch, which starts no agent: exit 130, and the line does not claim agents were killed")
    func watchInterruptLine() throws {
        var fds: [Int32] = [-1, -1]
        try #require(hl_pipe_cloexec(&fds) == 0)
        defer { Glibc.close(fds[0]) }
        var err = ""
        let status = try Self.runBinary(["audit", "--watch", "--interval", "60"], seconds: 30, started: { pid in
            Glibc.close(fds[1]); fds[1] = -1
            // The watch says it is watching once its handler is in place; then stop it.
            let deadline = Deadline.after(seconds: 20)
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !err.contains("Ctrl-C ends"), try waitFor(fds[0], events: Int16(POLLIN), until: deadline) {
                let count = read(fds[0], &buffer, buffer.count)
                if count <= 0 { break }
                err += String(decoding: buffer[0..<count], as: UTF8.self)
            }
            try #require(err.contains("Ctrl-C ends"), "the watch never started: \(err)")
            kill(pid, SIGINT)
        }) { actions in
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        }
        if fds[1] >= 0 { Glibc.close(fds[1]) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while case let count = read(fds[0], &buffer, buffer.count), count > 0 { err += String(decoding: buffer[0..<count], as: UTF8.self) }
        #expect(status == 128 + SIGINT)
        #expect(err.hasSuffix("hijack-lab: interrupted by SIGINT\n"), "\(err)")
        #expect(!err.contains("agent"))
    }

    @Test("matrix --first and --second hold each socket to its own bind; a bad SPEC is a usage error")
    func matrixSockets() throws {
        var filter = MatrixFilter()
        filter.first = [try #require(MatrixFilter.SocketChoice(parsing: "[::]/SO_REUSEPORT"))]
        #expect(!filter.cases.isEmpty && filter.cases.allSatisfy { $0.first.label == "[::]" && $0.firstOptions == .reusePort })
        // Every second socket is still tried against it, and the first alone is its baseline.
        #expect(Set(filter.cases.compactMap { $0.second?.label }) == Set(MatrixEndpoint.standard.map(\.label)))
        #expect(Set(filter.cases.map(\.secondOptions)) == Set(MatrixOptions.allCases))
        #expect(filter.baselines.allSatisfy { $0.first.label == "[::]" && $0.firstOptions == .reusePort && $0.second == nil })
        #expect(MatrixFilter.SocketChoice(parsing: "[::]") == MatrixFilter.SocketChoice(address: MatrixEndpoint.standard.first { $0.label == "[::]" }!))

        let captured = TestLab.Captured()
        let status = CLI.run(["matrix", "--first", "0.0.0.0/none", "--second", "127.0.0.1/SO_REUSEPORT,::1", "--transport", "tcp", "--users", "same",
                              "--topology", "loopback", "--json", "-"], console: captured.console, agentExecutable: TestLab.agentExecutable)
        #expect(status == 0, "\(captured.err)")
        let document = try #require(JSONSerialization.jsonObject(with: Data(captured.out.utf8)) as? [String: Any])
        let cases = try #require(document["cases"] as? [[String: Any]])
        let pairs = cases.compactMap { item -> String? in
            guard let matrixCase = item["matrixCase"] as? [String: Any], let first = matrixCase["first"] as? [String: Any],
                  let second = matrixCase["second"] as? [String: Any] else { return nil }
            return "\(first["label"]!)/\(matrixCase["firstOptions"]!) \(second["label"]!)/\(matrixCase["secondOptions"]!)"
        }
        // ::1 without options: all four option sets of the second socket.
        #expect(pairs.count == 5, "\(pairs)")
        #expect(pairs.allSatisfy { $0.hasPrefix("0.0.0.0/none ") } && pairs.contains("0.0.0.0/none 127.0.0.1/SO_REUSEPORT"), "\(pairs)")

        for bad in ["[::]/SO_REUSE", "0.0.0.1", "::1/"] {
            let refused = TestLab.Captured()
            #expect(CLI.run(["matrix", "--first", bad], console: refused.console, agentExecutable: "/nonexistent/agent") == 2)
            #expect(refused.err.contains("--first: \"\(bad)\" is not one of"), "\(refused.err)")
        }
    }

    @Test("A filtered matrix does not replace MATRIX.md unless --report names it")
    func filteredMatrixKeepsMatrixFile() throws {
        let matrixPath = TestLab.packageRoot.appendingPathComponent("MATRIX.md").path
        let before = try String(contentsOfFile: matrixPath, encoding: .utf8)
        let captured = TestLab.Captured()
        let status = CLI.run(["matrix", "--transport", "tcp", "--addresses", "127.0.0.1", "--options", "none", "--users", "same", "--topology", "loopback"],
                             console: captured.console, agentExecutable: TestLab.agentExecutable)
        #expect(status == 0, "\(captured.err)")
        #expect(captured.err.contains("a filtered matrix writes no MATRIX.md"))
        #expect(try String(contentsOfFile: matrixPath, encoding: .utf8) == before)
    }

    @Test("list and show explain the catalog; check validates without running")
    func listShowCheck() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: TestLab.scenariosDirectory).filter { $0.hasSuffix(".json") }
        let listed = TestLab.Captured()
        #expect(CLI.run(["list", "--scenarios", TestLab.scenariosDirectory], console: listed.console) == 0)
        #expect(listed.out.split(separator: "\n").count == files.count)
        let shown = TestLab.Captured()
        #expect(CLI.run(["show", "wildcard-then-loopback-reuseport", "--scenarios", TestLab.scenariosDirectory], console: shown.console) == 0)
        #expect(shown.out.contains("attacker (attacker) binds loopback4 = 127.0.0.1 with setsockopt(SO_REUSEPORT, 1)"))
        #expect(shown.out.contains("Expected on Linux: hijacked"))
        let checked = TestLab.Captured()
        #expect(CLI.run(["check", TestLab.scenariosDirectory], console: checked.console, agentExecutable: "/nonexistent/agent") == 0)
        #expect(checked.out.split(separator: "\n").count == files.count)
        let mixed = TestLab.Captured()
        #expect(CLI.run(["check", TestLab.fixtures + "/mixed/good-one.json", TestLab.fixtures + "/mixed/broken-one.json"],
                        console: mixed.console, agentExecutable: "/nonexistent/agent") == 2)
        #expect(mixed.out.contains("good-one"))
        #expect(mixed.err.contains("broken-one.json: field `sockets[1].options[0]`"))
    }

    @Test("list shows a title with control characters escaped")
    func listEscapesTitles() throws {
        try withFolder { folder in
            let source = try String(contentsOfFile: TestLab.fixtures + "/mixed/good-one.json", encoding: .utf8)
            let hostile = source.replacingOccurrences(of: "\"title\": \"", with: "\"title\": \"\\u001b[2J\\u001b[31mX\\nforged line ")
            try hostile.write(toFile: folder + "/good-one.json", atomically: true, encoding: .utf8)
            let listed = TestLab.Captured()
            #expect(CLI.run(["list", "--scenarios", folder], console: listed.console) == 0)
            #expect(!listed.out.utf8.contains(0x1b))
            #expect(listed.out.contains("\\x1b[2J"))
            #expect(listed.out.split(separator: "\n").count == 1)
        }
    }

    @Test("--version, and help for one command only")
    func versionAndHelp() {
        let version = TestLab.Captured()
        #expect(CLI.run(["--version"], console: version.console) == 0)
        #expect(version.out == "hijack-lab \(CLI.version)\n")
        for arguments in [["audit", "--help"], ["help", "audit"], ["audit", "-h"]] {
            let captured = TestLab.Captured()
            #expect(CLI.run(arguments, console: captured.console) == 0)
            #expect(captured.out.hasPrefix("hijack-lab audit: "))
            #expect(captured.out.contains("--min-severity LEVEL"))
            #expect(!captured.out.contains("--workers"), "audit's help shows only audit")
        }
        let matrix = TestLab.Captured()
        #expect(CLI.run(["matrix", "-h"], console: matrix.console) == 0)
        #expect(matrix.out.contains("--workers N") && !matrix.out.contains("--min-severity"))
    }

    @Test("help teaches the commands and the exit codes, and the README agrees")
    func help() throws {
        let captured = TestLab.Captured()
        #expect(CLI.run(["--help"], console: captured.console) == 0)
        for word in ["all", "run", "list", "show", "check", "audit", "matrix", "help COMMAND", "--version", "EXIT STATUS"] {
            #expect(captured.out.contains(word), "help lacks \(word)")
        }
        let readme = try String(contentsOfFile: TestLab.packageRoot.appendingPathComponent("README.md").path, encoding: .utf8)
        for status in [ExitStatus.success, .differs, .usage, .incomplete, .interrupted(signal: SIGINT), .interrupted(signal: SIGTERM)] {
            #expect(captured.out.contains("  \(status.code)  ") || captured.out.contains(", \(status.code) by"), "help lacks exit status \(status.code)")
            #expect(readme.contains("| \(status.code) |"), "README lacks exit status \(status.code)")
        }
    }

    @Test("Arguments: --name=value, --, and decimal-only numbers")
    func argumentReader() throws {
        let options = [OptionSpec("--json", "FILE", ""), OptionSpec("--timeout", "SECONDS", ""), OptionSpec("--verbose", nil, "")]
        let parsed = try Arguments(["--json=out.json", "--verbose", "--", "-name"], command: "test", options: options)
        #expect(parsed.value("--json") == "out.json")
        #expect(parsed.flag("--verbose"))
        #expect(parsed.operands == ["-name"])
        for text in ["0x10", "1e3", "inf", "nan", "-1", ".5", "5.", "1_000", " 5"] {
            #expect(Arguments.decimal(text) == nil, "\(text)")
        }
        #expect(Arguments.decimal("0.25") == 0.25)
        #expect(Suggestion.closest(to: "lsit", among: ["list", "show"]) == "list")
        #expect(Suggestion.closest(to: "zzzz", among: ["list", "show"]) == nil)
    }
}
