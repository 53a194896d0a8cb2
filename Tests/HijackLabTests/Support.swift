import Foundation
import Glibc
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

/// Paths and settings shared by the tests.
enum TestLab {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let scenariosDirectory = packageRoot.appendingPathComponent("scenarios").path
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

    /// The hijack-lab binary SwiftPM built next to the test bundle: the tool as users run it.
    static var toolExecutable: String { builtExecutable("hijack-lab") }

    /// The program the lab starts in the agent role (Front.agentName), built beside it.
    static var agentExecutable: String { builtExecutable(Front.agentName) }

    static func builtExecutable(_ name: String) -> String {
        let testBinary = URL(fileURLWithPath: LabSettings.currentExecutable())
        var directory = testBinary.deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return packageRoot.appendingPathComponent(".build/debug/" + name).path
    }

    static func settings(replyTimeout: Double = 5) -> LabSettings {
        LabSettings(agentExecutable: agentExecutable, topology: .loopback(reason: "tests"), replyTimeout: replyTimeout)
    }

    static func scenario(_ name: String) throws -> Scenario {
        try ScenarioFile.load(path: "\(scenariosDirectory)/\(name).json")
    }

    /// Runs scenarios on a fresh runner and ends it, returning outcomes and every process it started.
    static func run(_ scenarios: [Scenario], replyTimeout: Double = 5) -> (outcomes: [ScenarioOutcome], pids: [ProcessIdentity]) {
        var settings = settings(replyTimeout: replyTimeout)
        // As `run` does: the client gets the audit's capabilities from the start if a scenario audits.
        settings.scenariosAudit = scenarios.contains { $0.audit }
        let runner = Runner(settings: settings)
        let outcomes = scenarios.map(runner.run)
        runner.shutdown()
        return (outcomes, runner.startedProcesses)
    }

    /// True when this very process (pid and start time) no longer runs; a reused pid does not count.
    static func isGone(_ process: ProcessIdentity) -> Bool {
        process.startTime != nil && !process.isRunning
    }

    /// An oracle independent of the runner: does a scenario need the netns topology
    /// (the peer, a lab address, a bound device, a name resolved on the lab host, a
    /// privileged port, or an address added to the lab's interface)?
    static func needsNetns(_ scenario: Scenario) -> Bool {
        let labSymbols: [AddressSpec] = [.symbol(.labInterface), .symbol(.labInterface6), .symbol(.labInterfaceAdded)]
        if scenario.port == .privileged { return true }
        if scenario.steps.contains(.addAddress(.labInterfaceAdded)) { return true }
        return scenario.sockets.contains { labSymbols.contains($0.address) || $0.device != nil }
            || scenario.probes.contains { probe in
                if case .name = probe.to { return true }
                return probe.from == .peer || labSymbols.contains(probe.to)
            }
    }

    static func needsRoot(_ scenario: Scenario) -> Bool {
        scenario.sockets.contains { $0.user == .other }
    }

    /// Whether another user may run `path`: it and every folder above it let "others" in.
    static func reachableByOthers(_ path: String) -> Bool {
        var current = URL(fileURLWithPath: path)
        while true {
            var status = stat()
            guard stat(current.path, &status) == 0, status.st_mode & S_IXOTH != 0 else { return false }
            if current.path == "/" { return true }
            current = current.deletingLastPathComponent()
        }
    }

    /// The built programs and the scenarios, copied where another uid can reach them: the
    /// checkout may sit under a folder only its owner may enter (a home folder of mode 0700),
    /// and then uid 65534 cannot exec the front, nor the front hijack-lab-full beside it.
    struct ReachableCopy {
        /// The fresh folder under /tmp (0755) that holds everything below.
        let folder: String
        /// The front, hijack-lab, with hijack-lab-full beside it (Front.fullPath looks there),
        /// and so the agent too (LabSettings.defaultAgentExecutable looks there as well).
        let tool: String
        /// A copy of the scenarios folder, each file readable by all.
        let scenarios: String
    }

    /// The programs a copy needs: the front, and everything it execs from its own folder.
    static let reachableCopyPrograms = [Front.agentName, Front.fullName]

    /// Copies a program to `destination` (bytes: any name), mode 0755, by coreutils' `install`
    /// in a child process. This process never holds a descriptor open for writing to the copy:
    /// another test's posix_spawn forks this process, and a write descriptor that child held
    /// between its fork and its exec made exec of the copy fail with ETXTBSY (seen under load).
    static func copyProgram(_ source: String, to destination: [UInt8]) throws {
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/usr/bin/install"), strdup("-m"), strdup("0755"), strdup(source)]
        argv.append((destination + [0]).withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) { strdup($0.baseAddress!) }
        })
        argv.append(nil)
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, "/usr/bin/install", nil, nil, argv, environ)
        guard spawned == 0 else { throw SystemError(call: "posix_spawn(/usr/bin/install)", code: spawned) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        guard status == 0 else { throw ReachableCopyError(reason: "install \(source) ended with wait status \(status)") }
    }

    static func copyProgram(_ source: String, to destination: String) throws {
        try copyProgram(source, to: Array(destination.utf8))
    }

    /// A script at `path`, mode 0755, put there by `copyProgram` for the same reason: the text
    /// is written to a file beside it that is never run.
    static func writeProgram(_ text: String, to path: String) throws {
        let source = path + ".text"
        try Data(text.utf8).write(to: URL(fileURLWithPath: source))
        defer { unlink(source) }
        try copyProgram(source, to: path)
    }

    /// Why `withReachableCopy` cannot work here, or nil when it can.
    static let reachableCopyUnavailable: String? = {
        for name in reachableCopyPrograms where !FileManager.default.isExecutableFile(atPath: builtExecutable(name)) {
            return "\(name) is not built beside the tests (swift build builds it)"
        }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: scenariosDirectory, isDirectory: &isFolder), isFolder.boolValue else {
            return "no scenarios folder at \(scenariosDirectory)"
        }
        guard reachableByOthers("/tmp") else { return "/tmp does not let another uid in, so no copy there can be reached" }
        return nil
    }()

    /// Runs `body` with a copy of the programs and the scenarios in a fresh folder under /tmp
    /// that every uid may enter and run from (folders 0755, programs 0755, files 0644), and
    /// removes the folder afterwards, whatever `body` did.
    static func withReachableCopy<T>(_ body: (ReachableCopy) throws -> T) throws -> T {
        if let reason = reachableCopyUnavailable { throw ReachableCopyError(reason: reason) }
        let manager = FileManager.default
        let folder = "/tmp/hijack-lab-reachable-\(UUID().uuidString)"
        try manager.createDirectory(atPath: folder, withIntermediateDirectories: false)
        defer { try? manager.removeItem(atPath: folder) }
        // Explicitly, whatever the umask: createDirectory's mode is masked by it.
        try manager.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder)
        for name in reachableCopyPrograms {
            let copy = folder + "/" + name
            try copyProgram(builtExecutable(name), to: copy)
        }
        let scenarios = folder + "/scenarios"
        try manager.createDirectory(atPath: scenarios, withIntermediateDirectories: false)
        try manager.setAttributes([.posixPermissions: 0o755], ofItemAtPath: scenarios)
        for file in try manager.contentsOfDirectory(atPath: scenariosDirectory) {
            let source = scenariosDirectory + "/" + file
            var isFolder: ObjCBool = false
            guard manager.fileExists(atPath: source, isDirectory: &isFolder), !isFolder.boolValue else { continue }
            try manager.copyItem(atPath: source, toPath: scenarios + "/" + file)
            try manager.setAttributes([.posixPermissions: 0o644], ofItemAtPath: scenarios + "/" + file)
        }
        let copy = ReachableCopy(folder: folder, tool: folder + "/" + Front.agentName, scenarios: scenarios)
        // A test that asks for the copy must be able to rely on it: the check it stands for.
        guard reachableByOthers(copy.tool), reachableByOthers(copy.scenarios) else {
            throw ReachableCopyError(reason: "the copy in \(folder) is not reachable by another uid")
        }
        return try body(copy)
    }

    struct ReachableCopyError: Error, CustomStringConvertible {
        let reason: String
        var description: String { "no reachable copy of the built programs: \(reason)" }
    }

    /// A collecting console for CLI tests.
    final class Captured: @unchecked Sendable {
        private let lock = NSLock()
        private var outText = ""
        private var errText = ""
        var out: String { lock.withLock { outText } }
        var err: String { lock.withLock { errText } }
        var console: Console {
            Console(out: { text in self.lock.withLock { self.outText += text + "\n" } },
                    err: { text in self.lock.withLock { self.errText += text + "\n" } })
        }
    }
}
