import HijackAgent
import HijackAudit
import HijackCLI
import HijackSystem

/// One scenario in REPORT.md: in view, the story, who received what, the diagram and the
/// lesson; the steps and every system call fold into `<details>`.
enum ScenarioSection {
    static func render(_ scenario: ScenarioOutcome) -> String {
        var lines = ["## \(scenario.name)"]
        // A trailing backslash is a hard line break: title, story and verdict read as three
        // lines of one block.
        let head = "**\(UntrustedText.markdown(scenario.title)).** \(UntrustedText.markdown(scenario.story))"
        switch scenario.status {
        case .skipped:
            lines.append(head + "\\")
            lines.append("**Skipped:** \(UntrustedText.markdown(scenario.skipReason ?? "no reason given"))")
            lines.append("")
            lines.append("**Lesson.** \(UntrustedText.markdown(scenario.lesson))")
            lines.append("")
            return lines.joined(separator: "\n")
        case .error:
            lines.append(head + "\\")
            lines.append("**Could not finish:** \(UntrustedText.markdown(scenario.error ?? "unknown error")). No verdict is given for a scenario that did not run to its end.")
        case .ran:
            lines.append(head + "\\")
            let verdict = scenario.verdict?.rawValue ?? "?"
            let received = scenario.probes.map { "\($0.id) → \(MarkdownReport.receivers($0))" }.joined(separator: "; ")
            if scenario.matchesExpectation {
                lines.append("**Verdict: \(verdict)** ✅ as expected. Received: \(received).")
            } else {
                lines.append("**Verdict: \(verdict)** ❌ the scenario expected **\(scenario.expectedVerdict.rawValue)**. Received: \(received). Differences: "
                    + scenario.differences.map(UntrustedText.markdown).joined(separator: "; ") + ".")
            }
            lines.append(MarkdownReport.diagram(scenario))
        }
        lines.append("**Lesson.** \(UntrustedText.markdown(scenario.lesson))")
        lines.append(details(scenario))
        return lines.joined(separator: "\n")
    }

    /// The evidence in full, folded: steps, each process's system calls, each probe, and the
    /// live audit where one ran.
    static func details(_ scenario: ScenarioOutcome) -> String {
        var lines = ["<details><summary>Steps, system calls and probes</summary>", ""]
        // UDP has no listen(): its listen steps only start serving, so they are not shown.
        let steps = scenario.transport == .udp ? scenario.steps.filter { !$0.hasPrefix("listen ") } : scenario.steps
        lines.append("Steps: " + steps.map(UntrustedText.markdownCode).joined(separator: " → "))
        lines.append("")
        lines.append("| Process | Role | uid | System calls, in order |")
        lines.append("|---|---|---|---|")
        for socket in scenario.sockets {
            let calls = socket.calls.isEmpty ? "(none)" : socket.calls.map { UntrustedText.markdownCode(MarkdownReport.portless($0.description, port: scenario.port)) }.joined(separator: "; ")
            lines.append("| \(socket.id) | \(socket.role.rawValue) | \(socket.uid.map(String.init) ?? "?") | \(calls) |")
        }
        lines.append("")
        if !scenario.probes.isEmpty {
            let unit = scenario.transport == .udp ? "Datagrams" : "Connections"
            lines.append("| Probe | From → to | \(unit) | Received by | \(scenario.transport == .udp ? "Lost / failed" : "Failed") |")
            lines.append("|---|---|---|---|---|")
            for probe in scenario.probes {
                let target = MarkdownReport.probeTarget(probe)
                guard scenario.status != .error else {
                    lines.append("| \(probe.id) | \(probe.from.rawValue) client → \(target) | \(probe.attempts) | \(probe.ran ? "unverified" : "not run") | — |")
                    continue
                }
                var failures = probe.failed == 0 ? "0" : "\(probe.failed) (" + probe.errors.keys.sorted().joined(separator: ", ") + ")"
                if scenario.transport == .udp { failures = "\(probe.lost) lost, \(failures) failed" }
                let closing = probe.closes == .serverFirst ? " (server closes first)" : ""
                lines.append("| \(probe.id) | \(probe.from.rawValue) client → \(target)\(closing) | \(probe.attempts) | \(MarkdownReport.receivers(probe)) | \(failures) |")
            }
            lines.append("")
        }
        if let audit = scenario.audit { lines.append(MarkdownReport.liveAudit(audit, scenario: scenario)) }
        lines.append("</details>")
        lines.append("")
        return lines.joined(separator: "\n")
    }

    /// One summary line's "what was set up": each role's sockets, or for a crowd of one role,
    /// a count and what happened to them ("12 attackers: all EADDRINUSE").
    static func setup(_ scenario: ScenarioOutcome) -> String {
        var parts: [String] = []
        for role in [Role.victim, .defender, .server, .attacker] {
            let group = scenario.sockets.filter { $0.role == role }
            guard !group.isEmpty else { continue }
            if group.count <= 2 {
                for socket in group {
                    var text = "\(role.rawValue) \(UntrustedText.markdownCode(MarkdownReport.displayAddress(socket))) \(MarkdownReport.optionList(socket))"
                    if socket.user == .other { text += " as uid 65534" }
                    if scenario.status == .ran, let failure = failure(socket) { text += ": \(failure)" }
                    parts.append(text)
                }
                continue
            }
            let plural = role == .victim ? "victims" : "\(role.rawValue)s"
            let users = Set(group.map(\.user)).count > 1 ? " (some as uid 65534)" : group[0].user == .other ? " as uid 65534" : ""
            guard scenario.status == .ran else {
                parts.append("\(group.count) \(plural)\(users)")
                continue
            }
            var counts: [String: Int] = [:]
            for socket in group { counts[failure(socket) ?? "bound", default: 0] += 1 }
            let result = counts.count == 1 ? "all \(counts.keys.first!)" : counts.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            parts.append("\(group.count) \(plural)\(users): \(result)")
        }
        return parts.joined(separator: "; ")
    }

    /// "bind EADDRINUSE" or "listen EADDRINUSE" for a socket that could not serve, else nil.
    static func failure(_ socket: SocketOutcome) -> String? {
        if socket.bind != .ok { return socket.bind == .notAttempted ? "not bound" : "bind \(socket.bind)" }
        if socket.listens, socket.listen != .ok, socket.listen != .notApplicable { return "listen \(socket.listen)" }
        return nil
    }
}
