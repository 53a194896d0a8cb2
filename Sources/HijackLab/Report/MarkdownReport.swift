import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation

/// Renders REPORT.md from outcomes alone.
///
/// Two runs on one machine give the same text apart from the environment lines: ports
/// are written as PORT, pids are left to the JSON, and where a probe's connections were
/// spread over several sockets by the kernel's reuseport hash (seeded at random per
/// boot), the report names the receivers and leaves the exact split to the JSON.
///
/// Text that a scenario file, /proc or the environment supplies reaches the file only
/// through UntrustedText: running text and table cells through `markdown`, code spans
/// through `markdownCode`, the live audit through `markdownFence`. So a story cannot add a
/// heading, open a fence or a table row, or carry HTML. Names and ids are validated against
/// patterns when a scenario file is read (`^[a-z][a-z0-9-]*$` and the like) and are used
/// as they are in headings, anchors and Mermaid node names.
public enum MarkdownReport {
    public static func render(_ report: LabReport) -> String {
        var out: [String] = []
        out.append("# hijack-lab report")
        out.append("")
        out.append("Can another process take a service's traffic on this machine, and what stops it? Every answer below comes from real system calls on the kernel named here: "
            + "one process per socket, and real clients whose connections were answered by the process that wrote its identity on them. Nothing is simulated or corrected after the fact.")
        out.append("")
        let environment = report.environment
        out.append("- Kernel: \(UntrustedText.markdownCode(environment.kernel)); hijack-lab \(UntrustedText.markdownCode(environment.toolVersion ?? "?")); run as uid \(environment.uid)")
        out.append("- Topology: **\(environment.topology.rawValue)**, \(UntrustedText.markdown(environment.topologyReason))")
        out.append("- Date: \(UntrustedText.markdown(environment.date))")
        out.append("")
        out.append(AtAGlance.render(report))
        if let servers = report.servers { out.append(ServersReport.section(servers)) }
        out.append(Advice.whatToDo(report))
        out.append(Advice.articleClaims(report))
        out.append(summary(report))
        if !report.invalidFiles.isEmpty {
            out.append("## Scenario files that could not be read")
            out.append("")
            for invalid in report.invalidFiles { out.append("- " + invalidFile(invalid)) }
            out.append("")
        }
        let ran = { (name: String) in report.scenarios.contains { $0.name == name && $0.status == .ran } }
        out.append(OtherWays.markdownSection(scenarioExists: ran))
        out.append(OtherSystems.markdownSection(scenarioExists: ran))
        out.append("<details><summary>How the lab is built, and how to read this report</summary>")
        out.append("")
        out.append(topology(environment.topology))
        out.append("- **victim**: the service whose traffic is at stake; **attacker**: the process that tries to take it; **defender**: a service that binds each address itself; **server**: one instance in a restart story.")
        out.append("- `PORT` is the port the runner picked for the scenario (the JSON output has the number).")
        out.append("- Verdicts: **hijacked**, in some probe every connection that reached a socket reached an attacker; **shared**, attacker and others both received; **blocked**, every attacker failed to bind or listen; **squatted**, an attacker holds the port and the victim could not bind or listen; **unaffected**, attackers were bound but received nothing; **restarted** / **restart-blocked**, whether a restarted server (with no attacker present) could bind and listen again.")
        out.append("- ✅ the kernel did what the scenario file expects; ❌ it did not, and the section says how.")
        out.append("- Every two-socket combination (transport, both addresses, both sockets' options, same or other user) is in [MATRIX.md](MATRIX.md), from `hijack-lab matrix`.")
        out.append("- The same scenarios and matrix on other Linux kernels, booted under qemu and compared with this one, are in [KERNELS.md](KERNELS.md), from `hijack-lab kernels`.")
        out.append("")
        out.append("</details>")
        out.append("")
        for scenario in report.scenarios { out.append(ScenarioSection.render(scenario)) }
        if let servers = report.servers, !servers.servers.isEmpty { out.append(ServersReport.details(servers)) }
        return out.joined(separator: "\n")
    }

    /// The network the run used, drawn once with its addresses.
    static func topology(_ kind: TopologyKind) -> String {
        let lab = LabAddresses.self
        switch kind {
        case .netns:
            return [
                "## Topology", "",
                "Two private network namespaces, made by this run and gone with it. No lab socket is bound in the machine's own namespace.", "",
                "```mermaid",
                "flowchart LR",
                "  subgraph host[\"lab host (private network namespace)\"]",
                "    direction TB",
                "    lo[\"lo: 127.0.0.1, ::1\"]",
                "    lab0[\"\(lab.hostInterface): \(lab.hostV4)/24, \(lab.hostV6)/64<br>(lab-interface)\"]",
                "    sockets[\"victim, attacker and defender processes<br>one socket each\"]",
                "    hostclient([\"host client (local)\"])",
                "  end",
                "  subgraph peer[\"external peer (private network namespace)\"]",
                "    direction TB",
                "    peer0[\"\(lab.peerInterface): \(lab.peerV4)/24, \(lab.peerV6)/64\"]",
                "    peerclient([\"peer client (external)\"])",
                "  end",
                "  lab0 <-- veth --> peer0",
                "```", "",
            ].joined(separator: "\n")
        case .loopback:
            return [
                "## Topology", "",
                "The machine's own loopback: the sockets and the one client share `127.0.0.1`, on ports the kernel reported free. "
                    + "There is no peer and no lab interface, so scenarios that need them are skipped; run as root for the full lab.", "",
            ].joined(separator: "\n")
        }
    }

    static func summary(_ report: LabReport) -> String {
        let ran = report.scenarios.filter { $0.status == .ran }
        let matched = ran.filter(\.matchesExpectation).count
        let skipped = report.scenarios.filter { $0.status == .skipped }.count
        let failed = report.scenarios.filter { $0.status == .error }.count
        var lines = ["## Every scenario", ""]
        lines.append("\(ran.count) scenarios ran, \(matched) matched their expectation"
            + (skipped > 0 ? ", \(skipped) skipped" : "") + (failed > 0 ? ", \(failed) could not finish" : "") + ". Each links to its story, diagram and system calls.")
        lines.append("")
        lines.append("| Scenario | Set-up | Received | Verdict |")
        lines.append("|---|---|---|---|")
        for scenario in report.scenarios {
            // Counts from a scenario that did not finish were never cross-checked: not evidence.
            let received = scenario.status == .ran ? scenario.probes.map { "\($0.id) → \(receivers($0))" }.joined(separator: "; ") : "—"
            let verdict: String
            switch scenario.status {
            case .ran:
                verdict = "**\(scenario.verdict?.rawValue ?? "?")** " + (scenario.matchesExpectation ? "✅"
                    : scenario.verdict == scenario.expectedVerdict ? "❌ differs (see its section)" : "❌ expected \(scenario.expectedVerdict.rawValue)")
            case .skipped: verdict = "skipped"
            case .error: verdict = "could not finish ❌"
            }
            lines.append("| [\(scenario.name)](#\(scenario.name)) | \(ScenarioSection.setup(scenario)) | \(received) | \(verdict) |")
        }
        lines.append("")
        return lines.joined(separator: "\n")
    }

    /// Where a probe went: `127.0.0.1:PORT`, or a name with the order it resolved in.
    static func probeTarget(_ probe: ProbeOutcome) -> String {
        var target = UntrustedText.markdownCode(endpoint(probe.to ?? probe.toSpec))
        if let resolved = probe.resolved {
            let reached = probe.reached.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
            target += ", resolved in order to " + resolved.map(UntrustedText.markdownCode).joined(separator: ", ") + (reached.isEmpty ? "" : "; went to \(reached)")
        }
        return target
    }

    /// A scenario file that could not be read, from its parts: the field path in code font,
    /// the rest as running text. Each part is the file's own text (a path, a key, a value).
    static func invalidFile(_ invalid: LabReport.InvalidFile) -> String {
        (invalid.field.isEmpty ? UntrustedText.markdown(invalid.file) : "\(UntrustedText.markdown(invalid.file)): field \(UntrustedText.markdownCode(invalid.field))")
            + ": expected \(UntrustedText.markdown(invalid.expected))" + (invalid.found.map { "; found \(UntrustedText.markdown($0))" } ?? "")
    }

    /// The audit taken inside the lab host while the scenario's sockets were live, with each
    /// owner named by its scenario socket id instead of a pid, so the text is the same every run.
    /// AuditText escapes process, user and device names for the terminal; the fence around
    /// them is longer than any backtick run they hold, so none of them can close it.
    static func liveAudit(_ audit: AuditReport, scenario: ScenarioOutcome) -> String {
        let ids = Dictionary(scenario.sockets.compactMap { socket in socket.pid.map { ($0, socket.id) } }, uniquingKeysWith: { first, _ in first })
        let text = AuditText.render(audit, name: { owner in ids[owner.pid].map { "\($0) (\(owner.command))" } ?? owner.command },
                                    portText: { $0 == scenario.port ? "PORT" : String($0) })
        return [
            "**Detecting it on a live system.** While these sockets were live, `hijack-lab audit --port PORT` ran inside the lab host and reported (owners are named by scenario socket; the audit itself shows pid/command):",
            "", UntrustedText.markdownFence(text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)), "",
        ].joined(separator: "\n")
    }

    /// Clients on the left, sockets on the right, an edge for each client→receiver pair: one
    /// line for the probes and their edges, one that declares every socket (Mermaid takes
    /// `;` between statements), so every diagram is five lines of the report.
    static func diagram(_ scenario: ScenarioOutcome) -> String {
        var lines = ["```mermaid", "flowchart LR"]
        var probeStatements: [String] = []
        for probe in scenario.probes {
            var statements = ["probe_\(node(probe.id))([\"\(probe.from.rawValue) client → \(endpoint(probe.to ?? probe.toSpec))\"])"]
            let split = probe.receivedBy.filter { $0.value > 0 }.count > 1
            for (receiver, count) in probe.receivedBy.sorted(by: { $0.key < $1.key }) where count > 0 {
                let label = split ? "some of \(probe.attempts)" : "\(count) of \(probe.attempts)"
                statements.append("probe_\(node(probe.id)) -- \"\(label)\" --> sock_\(node(receiver))")
            }
            if probe.failed > 0 {
                statements.append("probe_\(node(probe.id)) -. \"\(probe.failed) failed: \(probe.errors.keys.sorted().joined(separator: ", "))\" .-> nobody_\(node(probe.id))((nobody))")
            }
            probeStatements += statements
        }
        if !probeStatements.isEmpty { lines.append("  " + probeStatements.joined(separator: "; ")) }
        let sockets = scenario.sockets.map { socket in
            let options = socket.options + (socket.device.map { ["SO_BINDTODEVICE \($0)"] } ?? [])
            let detail = ([socket.role.rawValue, displayAddress(socket)] + options).joined(separator: " · ")
            let state = socket.failedToServe ? " ✗ " + (socket.bind != .ok ? "bind \(socket.bind)" : "listen \(socket.listen)")
                : socket.listens ? "" : " (bound, not listening)"
            return "sock_\(node(socket.id))[\"\(socket.id)<br>\(detail)\(state)\"]"
        }
        lines.append("  " + sockets.joined(separator: "; "))
        lines.append("```")
        return lines.joined(separator: "\n")
    }

    /// "attacker 8/8"; for a split, the receivers only (the exact counts depend on a per-boot hash).
    static func receivers(_ probe: ProbeOutcome) -> String {
        let got = probe.receivedBy.filter { $0.value > 0 }.sorted { $0.key < $1.key }
        if got.isEmpty { return "nobody" }
        if got.count == 1 { return "\(got[0].key) \(got[0].value)/\(probe.attempts)" }
        return got.map(\.key).joined(separator: " + ") + " (split; counts in JSON)"
    }

    static func displayAddress(_ socket: SocketOutcome) -> String {
        endpoint(socket.address ?? socket.addressSpec)
    }

    static func endpoint(_ host: String) -> String {
        host.contains(":") ? "[\(host)]:PORT" : "\(host):PORT"
    }

    static func optionList(_ socket: SocketOutcome) -> String {
        let options = socket.options + (socket.device.map { ["SO_BINDTODEVICE \($0)"] } ?? [])
        return options.isEmpty ? "(no options)" : options.joined(separator: ", ")
    }

    /// Replaces the scenario's port in a syscall trace with PORT.
    static func portless(_ text: String, port: UInt16?) -> String {
        guard let port else { return text }
        return text.replacingOccurrences(of: ":\(port))", with: ":PORT)")
    }

    static func node(_ id: String) -> String {
        id.replacingOccurrences(of: "-", with: "_")
    }
}
