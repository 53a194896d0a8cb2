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
