import HijackAgent
import HijackAudit
import HijackCLI
import HijackSystem

/// Short texts for the terminal: progress lines and `show`.
///
/// A scenario file is untrusted: whatever its patterns do not constrain (title, story,
/// lesson) and whatever a run reports in words (a skip reason, an error, which may quote an
/// agent or a file) is escaped for the terminal. Names, ids, addresses and option names are
/// validated against patterns or fixed lists when the file is read, and are shown as they are.
public enum ScenarioText {
    /// The progress lines' name column: as wide as the longest name in the run, so every name
    /// shows whole and the verdicts line up; never narrower than `minimumNameColumn`, nor wider
    /// than the longest name a scenario may have (`ScenarioLimits.nameCharacters`).
    public static func nameColumn(for names: [String]) -> Int {
        min(ScenarioLimits.nameCharacters, max(minimumNameColumn, names.map(\.count).max() ?? 0))
    }

    public static let minimumNameColumn = 38

    public static func progressLine(_ outcome: ScenarioOutcome, index: Int, of total: Int, milliseconds: UInt64, nameColumn: Int = minimumNameColumn) -> String {
        let counter = "[\(String(repeating: " ", count: String(total).count - String(index).count))\(index)/\(total)]"
        let name = UntrustedText.terminal(outcome.name).padding(toLength: nameColumn, withPad: " ", startingAt: 0)
        switch outcome.status {
        case .skipped:
            return "\(counter) \(name) skipped: \(UntrustedText.terminal(outcome.skipReason ?? ""))"
        case .error:
            return "\(counter) \(name) FAILED TO FINISH: \(UntrustedText.terminal(outcome.error ?? ""))"
        case .ran:
            let verdict = (outcome.verdict?.rawValue ?? "?").padding(toLength: 15, withPad: " ", startingAt: 0)
            let match = outcome.matchesExpectation ? "as expected" : "DIFFERS: " + outcome.differences.map(UntrustedText.terminal).joined(separator: "; ")
            return "\(counter) \(name) \(verdict) \(match) (\(milliseconds) ms)"
        }
    }

    public static func explain(_ scenario: Scenario) -> String {
        var lines = ["\(scenario.name): \(UntrustedText.terminal(scenario.title))", "", UntrustedText.terminal(scenario.story), "", "Transport: \(scenario.transport.rawValue)", "", "Sockets (one process each):"]
        for socket in scenario.sockets {
            var parts = ["  \(socket.id) (\(socket.role.rawValue)) binds \(socket.address)"]
            if case .symbol(let symbol) = socket.address { parts.append("= \(symbol.meaning)") }
            parts.append(socket.allOptions.isEmpty ? "with no options" : "with " + socket.allOptions.map(\.description).joined(separator: ", "))
            if !socket.listens { parts.append("and does not listen") }
            if socket.user == .other { parts.append("as uid 65534 (nobody)") }
            if let restarts = socket.restarts { parts.append("(restarts \(restarts))") }
            lines.append(parts.joined(separator: " "))
        }
        lines.append("")
        lines.append("Probes:")
        for probe in scenario.probes {
            let closing = probe.closes == .serverFirst ? "; the server closes each one first" : "; the client closes each one first"
            lines.append("  \(probe.id): \(probe.connections) connections from the \(probe.from.rawValue) client to \(probe.to)\(closing)")
        }
        lines.append("")
        lines.append("Steps: " + scenario.steps.map(\.description).joined(separator: " → "))
        lines.append("")
        lines.append("Expected on Linux: \(scenario.expectation.verdict.rawValue)")
        for socket in scenario.sockets {
            let expected = scenario.expectation.sockets[socket.id]!
            lines.append("  \(socket.id): bind \(expected.bind), listen \(expected.listen)")
        }
        for probe in scenario.probes {
            let receivers = scenario.expectation.probes[probe.id]!.receivedBy
            lines.append("  \(probe.id): received by \(receivers.isEmpty ? "nobody (every connection fails)" : receivers.joined(separator: " and "))")
        }
        lines.append("")
        lines.append("Lesson: \(UntrustedText.terminal(scenario.lesson))")
        return lines.joined(separator: "\n")
    }
}
