import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI
import CHijackLab

/// The servers/ catalog (issue 22): its files, and each real server run in the lab.
enum ServerCatalogFacts {
    static let folder = TestLab.packageRoot.appendingPathComponent("servers").path
    static let catalog: [ServerSpec] = (try? ServerFile.loadDirectory(folder).servers) ?? []
    static let status = ProcNet.read(DpkgStatus.path)
    /// The catalog's servers that can run on this machine, and the others with the reason.
    static let installed: [String] = catalog.filter { ServerLab.missing($0, status: status) == nil }.map(\.name)
    static let missing: [String] = catalog.filter { ServerLab.missing($0, status: status) != nil }.map(\.name)
    static var missingText: String {
        catalog.compactMap { spec in ServerLab.missing(spec, status: status).map { "\(spec.name): \($0) (apt-get install \(spec.package))" } }.joined(separator: "; ")
    }
    static let runnable = ServerLab.unavailable() == nil

    static func spec(_ name: String) throws -> ServerSpec {
        try #require(catalog.first { $0.name == name })
    }

    /// A fresh temp folder that the servers' accounts can enter, removed afterwards.
    static func withFolder<T>(_ body: (String) throws -> T) throws -> T {
        var template = Array("/tmp/hijack-lab-server-test-XXXXXX".utf8CString)
        try #require(mkdtemp(&template) != nil)
        let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        chmod(path, 0o755)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try body(path)
    }

    /// Processes whose working folder is inside `prefix`: a server's, started there by its launcher.
    static func processes(under prefix: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { pid in
            var buffer = [CChar](repeating: 0, count: 4096)
            let count = readlink("/proc/\(pid)/cwd", &buffer, buffer.count - 1)
            guard count > 0 else { return false }
            return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self).hasPrefix(prefix) && ServerLab.isRunning(pid)
        }
    }

    /// Runs hijack-lab-full (through the front) with stdout and stderr in files; the exit code
    /// (128 + signal), and what each stream held. `started` runs once it has begun.
    static func runTool(_ arguments: [String], in folder: String, seconds: Double = 120, environment extra: [String] = [],
                        started: (pid_t, () -> String) throws -> Void = { _, _ in }) throws -> (status: Int32, out: String, err: String) {
        let out = folder + "/stdout"
        let err = folder + "/stderr"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = hl_spawn_close_from(&actions, 3)
        // As a shell starts it: SIGINT at its default, nothing blocked.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGINT)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let argv = ([TestLab.toolExecutable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var inherited: [String] = []
        var entry = environ
        while let pointer = entry.pointee {
            inherited.append(String(cString: pointer))
            entry += 1
        }
        let names = Set(extra.compactMap { $0.split(separator: "=").first.map(String.init) })
        let environment = (inherited.filter { !names.contains(String($0.split(separator: "=").first ?? "")) } + extra).map { strdup($0) } + [nil]
        defer { environment.forEach { free($0) } }
        var pid: pid_t = 0
        try #require(posix_spawn(&pid, TestLab.toolExecutable, &actions, &attributes, argv, environment) == 0)
        let handle = hl_pidfd_open(pid)
        defer { if handle >= 0 { Glibc.close(handle) } }
        let stderrText = { (try? String(contentsOfFile: err, encoding: .utf8)) ?? "" }
        do { try started(pid, stderrText) } catch { kill(pid, SIGKILL) }
        let ended = handle >= 0 && (try? waitFor(handle, events: Int16(POLLIN), until: .after(seconds: seconds))) == true
        if !ended { kill(pid, SIGKILL) }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        try #require(ended, "the run did not end within \(seconds) s")
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "", stderrText())
    }
}

@Suite("Servers: the catalog's files")
struct ServerCatalogTests {
    @Test("every file in servers/ reads, names itself, uses only the known placeholders, and has a fix that changes something")
    func catalogReads() throws {
        let loaded = try ServerFile.loadDirectory(ServerCatalogFacts.folder)
        #expect(loaded.errors.isEmpty, "\(loaded.errors)")
        #expect(!loaded.servers.isEmpty)
        #expect(Set(loaded.servers.map(\.name)).count == loaded.servers.count)
        for spec in loaded.servers {
            let texts = spec.command + spec.environment + [spec.config ?? "", spec.fixConfig ?? ""] + (spec.fixCommand ?? [])
            for text in texts {
                var rest = Substring(text)
                while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
                    let word = String(rest[open...close])
                    // Braces of a configuration's own syntax ("events { ... }") hold spaces; a placeholder does not.
                    if !word.contains(" ") && !word.contains("\n") && !word.contains("(") {
                        #expect(ServerSpec.placeholders.contains(word), "\(spec.name): \(word) is no placeholder")
                    }
                    rest = rest[rest.index(after: open)...]
                }
            }
            #expect(spec.fixConfig != spec.config || (spec.fixCommand != nil && spec.fixCommand != spec.command), "\(spec.name): the fix changes nothing")
            #expect(spec.readySockets >= 1)
            #expect(!spec.fixAgainst.isEmpty)
        }
    }

    @Test("a server file with a mistake names the file, the field and what was expected, every mistake at once")
    func badServerFile() throws {
        try ServerCatalogFacts.withFolder { folder in
            let path = folder + "/broken.json"
            try #"""
            {"name": "broken", "title": "t", "package": "Not A Package", "program": "sbin/x", "account": "nobody", "startsAs": "root",
             "unit": "u", "port": 70000, "transports": ["tcp", "tcp"], "command": ["/sbin/x"], "ready": {"sockets": 0}, "request": "gopher",
             "fix": {"change": "c"}, "colour": "blue"}
            """#.write(toFile: path, atomically: true, encoding: .utf8)
            let error = try #require(throws: ScenarioError.self) { try ServerFile.load(path: path) }
            let fields = Set(error.all.map(\.field))
            for field in ["package", "program", "port", "transports[1]", "ready.sockets", "request", "fix", "colour"] {
                #expect(fields.contains(field), "\(field) not named: \(error.all.map(\.description))")
            }
            #expect(error.all.allSatisfy { $0.file == path })
        }
    }

    @Test("the launcher refuses a command line it cannot follow, before entering any namespace")
    func launcherUsage() {
        let passwd = { Optional("nobody:x:65534:65534::/:/bin/false\n") }
        let cases: [([String], String)] = [
            (["--dir", "/tmp", "--log", "/tmp/l", "--", "/bin/true"], "usage"),
            (["--netns", "/proc/1/ns/net", "--dir", "/tmp", "--log", "/tmp/l", "--", "true"], "absolute path"),
            (["--netns", "/proc/1/ns/net", "--dir", "/tmp", "--log", "/tmp/l", "--user", "nosuch", "--", "/bin/true"], "no such account"),
            (["--netns", "/proc/1/ns/net", "--dir", "/tmp", "--log", "/tmp/l", "--env", "NOEQUALS", "--", "/bin/true"], "NAME=VALUE"),
            (["--netns"], "needs a value"),
        ]
        for (arguments, message) in cases {
            guard case .failure(let problem) = LaunchEntry.parse(arguments, passwd: passwd) else {
                Issue.record("accepted \(arguments)")
                continue
            }
            #expect(problem.message.contains(message), "\(arguments): \(problem.message)")
        }
        guard case .success(let request) = LaunchEntry.parse(["--netns", "/x", "--dir", "/d", "--log", "/d/l", "--user", "nobody", "--env", "A=B", "--", "/bin/true", "-x"],
                                                             passwd: passwd) else {
            Issue.record("a good command line was refused")
            return
        }
        #expect(request.account?.uid == 65534 && request.argv == ["/bin/true", "-x"] && request.environment == ["A=B"])
    }

    @Test("an attacker's plan: the plainest bind per destination the rules say it takes, and one they say fails")
    func attackPlan() {
        // A HAProxy-like listener: 0.0.0.0:80 with SO_REUSEADDR and SO_REUSEPORT, uid 0.
        let sockets = [Audit.Takeover.Bound(address: "0.0.0.0", v6only: false, reuseAddress: true, reusePort: true, uid: 0, order: 0)]
        let destinations = Audit.Takeover.Destinations(interfaces: [["198.51.100.1", "2001:db8::1"]], ipv6: true)
        let root = Audit.Takeover.plan(uid: 0, bindsService: true, beside: sockets, transport: .tcp, port: 80, destinations: destinations, unprivilegedPortStart: 1024)
        #expect(root.contains { $0.bind == AuditBind(address: "127.0.0.1", options: ["SO_REUSEPORT"]) && $0.takes.contains("127.0.0.1") })
        #expect(root.contains { !$0.binds })
        let other = Audit.Takeover.plan(uid: 33, bindsService: false, beside: sockets, transport: .tcp, port: 80, destinations: destinations, unprivilegedPortStart: 1024)
        #expect(!other.isEmpty && other.allSatisfy { !$0.binds && $0.rule.hasPrefix("privileged") })
    }
}

@Suite("Servers: real servers in the lab (root, netns)", .serialized)
struct ServerRunTests {
    @Test("each installed server runs in the lab's namespaces as its unit starts it: options read from its sockets, receivers confirmed, the kernel as the rules predicted, the fix holding, nothing left behind",
          .enabled(if: ServerCatalogFacts.runnable, "needs root and iproute2's ip: \(ServerLab.unavailable() ?? "")"),
          .enabled(if: !ServerCatalogFacts.installed.isEmpty, "no server's package is installed: \(ServerCatalogFacts.missingText)"),
          arguments: ServerCatalogFacts.installed)
    func realServer(_ name: String) throws {
        let spec = try ServerCatalogFacts.spec(name)
        try ServerCatalogFacts.withFolder { folder in
            let settings = LabSettings(agentExecutable: TestLab.agentExecutable, topology: .netns(reason: "tests"), replyTimeout: 10, connectTimeout: 3)
            let outcome = ServerLab(settings: settings).run(spec, version: "test", folder: folder)
            for run in [outcome.shipped, outcome.fixed].compactMap({ $0 }) {
                try #require(run.error == nil, "\(name) \(run.configuration): \(run.error ?? "")")
                // Never the host's network namespace: the lab host's.
                #expect(run.network != nil && run.network != run.runnerNetwork && run.runnerNetwork == ServerClients.namespace("net", of: getpid()))
                #expect(run.sockets.count >= spec.readySockets)
                #expect(run.sockets.allSatisfy { $0.reuseAddress != nil && $0.reusePort != nil && spec.transports.contains($0.transport) })
                // The server answered its own request somewhere, confirmed through sock_diag for TCP.
                let served = run.baseline.filter { $0.receiver == .server }
                #expect(!served.isEmpty, "\(name): nothing reached the server")
                for delivery in served where delivery.transport == .tcp {
                    #expect(delivery.pid != nil && delivery.confirmedBy?.hasPrefix("sock_diag") == true)
                }
                let unconfirmed = (run.baseline + run.attacks.flatMap(\.deliveries)).filter { !$0.agrees }
                #expect(unconfirmed.isEmpty, "\(name) \(run.configuration): unconfirmed \(unconfirmed)")
                for attack in run.attacks {
                    #expect(attack.asPredicted, "\(name) \(run.configuration): \(attack.user) \(attack.bindText): bind \(attack.bind), took \(attack.taken), predicted \(attack.predictedBind) \(attack.predictedTakes)")
                    for delivery in attack.deliveries where delivery.receiver == .attacker && delivery.transport == .tcp {
                        #expect(delivery.uid == attack.uid, "the attacker's connection is held by uid \(delivery.uid.map(String.init) ?? "?")")
                    }
                }
                // Every attacker of the three kinds tried at least one bind the rules say fails, where one exists.
                #expect(Set(run.attacks.map(\.who)).contains(.serverAccount))
                #expect(run.attacks.contains { !$0.predictedBind })
            }
            #expect(outcome.fixHeld == true, "\(name): the fix did not hold: \(ServersReport.takenText(outcome.fixed!))")
            // The fix run repeats every attack of the shipped run, in order, before its own.
            let shipped = outcome.shipped.attacks.map { "\($0.transport) \($0.uid) \($0.bindText)" }
            #expect(Array((outcome.fixed?.attacks ?? []).map { "\($0.transport) \($0.uid) \($0.bindText)" }.prefix(shipped.count)) == shipped)
            #expect(ServerCatalogFacts.processes(under: folder).isEmpty, "left behind: \(ServerCatalogFacts.processes(under: folder))")
        }
    }

    @Test("a planted server whose fix does not hold: the report says so and the exit status is 1",
          .enabled(if: ServerCatalogFacts.runnable, "needs root and iproute2's ip: \(ServerLab.unavailable() ?? "")"),
          .enabled(if: access("/usr/bin/python3", X_OK) == 0, "needs python3 (package python3)"))
    func plantedFixThatFails() throws {
        try ServerCatalogFacts.withFolder { folder in
            let servers = folder + "/servers"
            try FileManager.default.createDirectory(atPath: servers, withIntermediateDirectories: false)
            // "Fixed" by narrowing the bind to 127.0.0.1: [::1]:8000, localhost's first choice, is anyone's.
            try #"""
            {"name": "planted", "title": "http.server narrowed to 127.0.0.1", "package": "python3", "program": "/usr/bin/python3",
             "account": "nobody", "startsAs": "account", "unit": "a test's", "port": 8000, "transports": ["tcp"],
             "command": ["/usr/bin/python3", "-m", "http.server", "--bind", "::"], "ready": {"sockets": 1}, "request": "http",
             "fix": {"change": "--bind 127.0.0.1", "command": ["/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1"]}}
            """#.write(toFile: servers + "/planted.json", atomically: true, encoding: .utf8)
            let result = try ServerCatalogFacts.runTool(["servers", "--servers", servers, "--report", folder + "/servers.md", "--json", folder + "/servers.json"], in: folder)
            #expect(result.status == 1, "exit \(result.status): \(result.err)")
            let report = try String(contentsOfFile: folder + "/servers.md", encoding: .utf8)
            #expect(report.contains("❌ did not hold"))
            #expect(result.out.contains("FIX DID NOT HOLD"))
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/servers.json"))) as? [String: Any]
            let first = (json?["servers"] as? [[String: Any]])?.first
            let fixed = first?["fixed"] as? [String: Any]
            let taken = (fixed?["attacks"] as? [[String: Any]])?.flatMap { ($0["taken"] as? [String]) ?? [] } ?? []
            #expect(taken.contains("localhost"), "\(taken)")
        }
    }

    @Test("SIGINT while a server runs: exit 130, and no server process and no temp folder is left",
          .enabled(if: ServerCatalogFacts.runnable, "needs root and iproute2's ip: \(ServerLab.unavailable() ?? "")"),
          .enabled(if: ServerCatalogFacts.installed.contains("python-http"), "needs python3 (package python3)"))
    func interrupted() throws {
        try ServerCatalogFacts.withFolder { folder in
            let temporary = folder + "/tmp"
            try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: false)
            chmod(temporary, 0o755)
            var sawServer = false
            let result = try ServerCatalogFacts.runTool(["servers", "python-http", "--servers", ServerCatalogFacts.folder, "--verbose"], in: folder, seconds: 60,
                                                        environment: ["TMPDIR=" + temporary]) { pid, stderr in
                // The first attack's line comes once the server is up and ready.
                let deadline = Deadline.after(seconds: 30)
                while !stderr().contains(" binds "), !deadline.hasPassed { usleep(5_000) }
                sawServer = !ServerCatalogFacts.processes(under: temporary).isEmpty
                kill(pid, SIGINT)
            }
            #expect(sawServer, "no server process was seen running: \(result.err)")
            #expect(result.status == 130, "exit \(result.status): \(result.err)")
            let gone = Deadline.after(seconds: 10)
            while !ServerCatalogFacts.processes(under: temporary).isEmpty, !gone.hasPassed { usleep(5_000) }
            #expect(ServerCatalogFacts.processes(under: temporary).isEmpty)
            while !((try? FileManager.default.contentsOfDirectory(atPath: temporary)) ?? []).isEmpty, !gone.hasPassed { usleep(5_000) }
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: temporary)) ?? []).isEmpty, "the run's temp folder was left")
        }
    }

    @Test("a server whose package is not installed is listed as skipped, with its apt-get line, and nothing runs")
    func missingPackage() throws {
        try ServerCatalogFacts.withFolder { folder in
            let servers = folder + "/servers"
            try FileManager.default.createDirectory(atPath: servers, withIntermediateDirectories: false)
            try #"""
            {"name": "absent", "title": "a server no machine has", "package": "hijack-lab-no-such-package", "program": "/usr/sbin/hijack-lab-no-such-server",
             "account": "nobody", "startsAs": "account", "unit": "none", "port": 8000, "transports": ["tcp"],
             "command": ["/usr/sbin/hijack-lab-no-such-server"], "ready": {"sockets": 1}, "request": "http",
             "fix": {"change": "none", "command": ["/usr/sbin/hijack-lab-no-such-server", "--fixed"]}}
            """#.write(toFile: servers + "/absent.json", atomically: true, encoding: .utf8)
            let result = try ServerCatalogFacts.runTool(["servers", "--servers", servers, "--json", folder + "/out.json"], in: folder)
            #expect(result.status == 0, "exit \(result.status): \(result.err)")
            #expect(result.out.contains("absent: skipped") && result.out.contains("apt-get install hijack-lab-no-such-package"), "\(result.out)")
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/out.json"))) as? [String: Any]
            #expect((json?["servers"] as? [Any])?.isEmpty == true)
            #expect(((json?["skipped"] as? [[String: Any]])?.first?["install"] as? String) == "apt-get install hijack-lab-no-such-package")
        }
    }
}
