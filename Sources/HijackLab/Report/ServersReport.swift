import HijackAgent
import HijackSystem

/// "Servers as shipped" (issue 22): one line per real server in REPORT.md, right after At a
/// glance, each linking to its section with the steps and the evidence; `servers`' own lines.
/// Reads `ServersEvidence` only.
public enum ServersReport {
    static let title = "Servers as shipped"

    /// The heading of a server's own section, and so its anchor.
    static func heading(_ outcome: ServerOutcome) -> String { "Server: \(outcome.name)" }

    /// `servers`' line for one server, for a terminal (escaped).
    public static func terminalLine(_ outcome: ServerOutcome) -> String {
        var parts = ["\(outcome.name) \(outcome.version)"]
        if let error = outcome.shipped.error {
            parts.append("could not finish: \(error)")
        } else {
            parts.append(outcome.shipped.sockets.map { "\($0.bindText) \($0.optionsText)" }.joined(separator: ", "))
            parts.append("as shipped: " + takenText(outcome.shipped))
            if let fixed = outcome.fixed {
                if let error = fixed.error {
                    parts.append("fix could not finish: \(error)")
                } else {
                    parts.append("with the fix: " + takenText(fixed) + (outcome.fixHeld == true ? " (fix held against " + outcome.fixAgainst.map(whoText).joined(separator: ", ") + ")" : " (FIX DID NOT HOLD)"))
                }
            }
            let disagreements = (outcome.shipped.attacks + (outcome.fixed?.attacks ?? [])).filter { !$0.asPredicted }.count
            if disagreements > 0 { parts.append("\(disagreements) attack(s) not as the rules predicted") }
            let unconfirmed = allDeliveries(outcome).filter { !$0.agrees }.count
            if unconfirmed > 0 { parts.append("\(unconfirmed) receiver(s) not confirmed") }
        }
        return UntrustedText.terminal(parts.joined(separator: "; "))
    }

    static func allDeliveries(_ outcome: ServerOutcome) -> [Delivery] {
        [outcome.shipped, outcome.fixed].compactMap { $0 }.flatMap { $0.baseline + $0.attacks.flatMap(\.deliveries) }
    }

    /// "root (the sockets' owner) takes udp 127.0.0.1, localhost" or "nothing taken".
    static func takenText(_ run: ServerRun, only: [ServerAttack.Who] = ServerAttack.Who.allCases) -> String {
        var byUser: [(String, [String])] = []
        for attack in run.attacks where !attack.taken.isEmpty && only.contains(attack.who) {
            let label = "\(attack.user) (\(whoText(attack.who)))"
            let taken = attack.taken.map { "\(attack.transport.rawValue) \($0)" }
            if let index = byUser.firstIndex(where: { $0.0 == label }) {
                for destination in taken where !byUser[index].1.contains(destination) { byUser[index].1.append(destination) }
            } else {
                byUser.append((label, taken))
            }
        }
        return byUser.isEmpty ? "nothing taken" : byUser.map { "\($0.0) takes \($0.1.joined(separator: ", "))" }.joined(separator: "; ")
    }

    /// What the fix run still lost to attackers the fix does not claim to stop, or nil.
    static func beyondFix(_ outcome: ServerOutcome) -> String? {
        guard let fixed = outcome.fixed, fixed.error == nil else { return nil }
        let others = ServerAttack.Who.allCases.filter { !outcome.fixAgainst.contains($0) }
        let text = takenText(fixed, only: others)
        return text == "nothing taken" ? nil : text
    }

    static func whoText(_ who: ServerAttack.Who) -> String {
        switch who {
        case .serverAccount: "the server's account"
        case .socketOwner: "the sockets' owner"
        case .otherAccount: "another account"
        }
    }

    /// The section for REPORT.md: the table, then one section per server.
    public static func section(_ evidence: ServersEvidence) -> String {
        var out = ["## \(title)", ""]
        out.append("Real servers from Debian's archive, each started as its package's unit starts it, on its shipped default port, inside a lab of its own "
            + "(two private network namespaces, never the host's). Agents of the server's account, of its sockets' owner and of another account then tried the binds "
            + "that the rules (`Audit.Takeover`, held to the kernel by `matrix --audit`) say could take its traffic, and one they say fails. A TCP connection's receiver is "
            + "the process that held the accepted socket (sock_diag's record of the client's 4-tuple, and its owner in /proc); a datagram's is whoever answered. "
            + "Then the server ran again with its fix, and the same attacks were repeated. `hijack-lab servers` runs this alone; servers/README.md adds one.")
        out.append("")
        if let unavailable = evidence.unavailable {
            out.append("No server ran: \(UntrustedText.markdown(unavailable)).")
            out.append("")
        }
        if !evidence.servers.isEmpty {
            out.append("| Server | Version | Binds and options, read from its live sockets | Who could take what, as shipped | Fix | Fix held |")
            out.append("|---|---|---|---|---|---|")
            for outcome in evidence.servers {
                let binds = outcome.shipped.sockets.map { "`\($0.bindText)` \($0.optionsText)" }.joined(separator: "<br>")
                let taken = outcome.shipped.error.map { "could not finish: " + UntrustedText.markdown($0) } ?? takenMarkdown(outcome.shipped, port: outcome.port)
                let held: String
                switch outcome.fixHeld {
                case true?:
                    held = "✅ held against " + outcome.fixAgainst.map(whoText).joined(separator: ", ")
                        + (beyondFix(outcome).map { "; still: " + UntrustedText.markdown($0) + ", which it does not claim to stop" } ?? "")
                        + (outcome.isClean ? "" : " (❌ see the section: not all as predicted or confirmed)")
                case false?: held = "❌ did not hold: " + UntrustedText.markdown(takenText(outcome.fixed!))
                case nil: held = "❌ could not finish"
                }
                out.append("| [\(UntrustedText.markdown(outcome.name))](#\(MatrixReport.anchor(heading(outcome)))) | \(UntrustedText.markdown(outcome.version)) | \(binds.isEmpty ? "none seen" : binds) | \(taken) | \(UntrustedText.markdown(outcome.fixChange)) | \(held) |")
            }
            out.append("")
        }
        if !evidence.skipped.isEmpty {
            out.append("Not run here:")
            out.append("")
            for skipped in evidence.skipped {
                out.append("- **\(UntrustedText.markdown(skipped.name))**: \(UntrustedText.markdown(skipped.reason)); `\(skipped.install)` installs it.")
            }
            out.append("")
        }
        return out.joined(separator: "\n")
    }

    /// Who took which destination, by account, or why nobody could.
    static func takenMarkdown(_ run: ServerRun, port: UInt16) -> String {
        var lines: [String] = []
        for who in ServerAttack.Who.allCases {
            let attacks = run.attacks.filter { $0.who == who }
            guard let first = attacks.first else { continue }
            var taken: [String] = []
            for attack in attacks {
                for destination in attack.taken.map({ "\(attack.transport.rawValue) \($0)" }) where !taken.contains(destination) { taken.append(destination) }
            }
            let label = "\(UntrustedText.markdown(first.user)) (\(whoText(who)))"
            if taken.isEmpty {
                let privileged = attacks.allSatisfy { $0.bind == .errno("EACCES") }
                lines.append("\(label): nothing" + (privileged ? " (port \(port) is privileged: EACCES)" : ""))
            } else {
                lines.append("\(label): **" + taken.map(UntrustedText.markdown).joined(separator: ", ") + "**")
            }
        }
        return lines.joined(separator: "<br>")
    }

    /// Each server's own section: its unit, its sockets, and every step's evidence.
    public static func details(_ evidence: ServersEvidence) -> String {
        var out: [String] = []
        for outcome in evidence.servers {
            out.append("## \(heading(outcome))")
            out.append("")
            out.append("**\(UntrustedText.markdown(outcome.title))**: package `\(outcome.package)` \(UntrustedText.markdown(outcome.version)), file `\(UntrustedText.markdown(outcome.file))`. "
                + "Account \(UntrustedText.markdown(outcome.account)), started as \(outcome.startsAs == .root ? "root (it drops to its account itself)" : "its account"). "
                + "Port \(outcome.port); in the lab host ip_unprivileged_port_start is \(outcome.unprivilegedPortStart), so \(outcome.port < outcome.unprivilegedPortStart ? "only a process with CAP_NET_BIND_SERVICE (root here) can bind it" : "any account can bind it").")
            out.append("")
            out.append("How its package starts it: \(UntrustedText.markdown(outcome.unit))")
            out.append("")
            out.append("The fix: \(UntrustedText.markdown(outcome.fixChange)), meant to stop " + outcome.fixAgainst.map(whoText).joined(separator: ", ") + ".")
            out.append("")
            for run in [outcome.shipped, outcome.fixed].compactMap({ $0 }) { out.append(contentsOf: runLines(run, outcome: outcome)) }
        }
        return out.joined(separator: "\n")
    }

    static func runLines(_ run: ServerRun, outcome: ServerOutcome) -> [String] {
        var out = ["### \(outcome.name): \(run.configuration == .shipped ? "as shipped" : "with the fix")", ""]
        if let error = run.error {
            out.append("❌ Could not finish: \(UntrustedText.markdown(error))")
            out.append("")
            return out
        }
        out.append("Ready in \(run.readyMilliseconds ?? 0) ms (pid \(run.pid ?? 0), the init of its own PID namespace). Its listening sockets, options read from each socket itself (pidfd_getfd and getsockopt):")
        out.append("")
        out.append("| Socket | Options | Socket's uid | Held by |")
        out.append("|---|---|---|---|")
        for socket in run.sockets {
            out.append("| `\(socket.bindText)` | \(socket.optionsText) | \(socket.uid) (\(UntrustedText.markdown(socket.user))) | \(socket.owners.map(UntrustedText.markdown).joined(separator: ", ")) |")
        }
        out.append("")
        out.append("With no attacker, each client's connection or datagram went to:")
        out.append("")
        out.append(deliveryTable(run.baseline))
        out.append("")
        out.append("The attacks, one agent at a time beside the server:")
        out.append("")
        out.append("| Attacker | Bind | Rules' prediction | Kernel | Taken | Where each client went |")
        out.append("|---|---|---|---|---|---|")
        for attack in run.attacks {
            let predicted = (attack.predictedBind ? "binds" : "fails") + (attack.predictedTakes.isEmpty ? "" : ", takes " + attack.predictedTakes.joined(separator: ", ")) + "<br>" + UntrustedText.markdown(attack.rule)
            let kernel = "bind \(attack.bind)" + (attack.transport == .tcp && attack.bind == .ok ? ", listen \(attack.listen)" : "") + (attack.asPredicted ? " ✅" : " ❌ not as predicted")
            let taken = attack.taken.isEmpty ? "nothing" : "**" + attack.taken.joined(separator: ", ") + "**"
            out.append("| \(UntrustedText.markdown(attack.user)) (\(whoText(attack.who)), uid \(attack.uid)) | \(attack.transport.rawValue) `\(attack.bindText)` | \(predicted) | \(kernel) | \(taken) | \(deliverySummary(attack.deliveries)) |")
        }
        out.append("")
        return out
    }

    static func receiverText(_ delivery: Delivery) -> String {
        var text: String
        switch delivery.receiver {
        case .server: text = "server"
        case .attacker: text = "**attacker**"
        case .other: text = "another process"
        case .nobody: text = delivery.lost == true ? "lost (no answer)" : "nobody (\(delivery.error ?? "no reply"))"
        }
        if let pid = delivery.pid { text += " (pid \(pid) \(UntrustedText.markdown(delivery.command ?? "?")), uid \(delivery.uid.map(String.init) ?? "?"))" }
        if !delivery.agrees { text += " ❌ unconfirmed" }
        return text
    }

    static func deliveryTable(_ deliveries: [Delivery]) -> String {
        var out = ["| Client | Destination | Went to | Receiver | Reply |", "|---|---|---|---|---|"]
        for delivery in deliveries {
            out.append("| \(delivery.client.rawValue) | \(delivery.transport.rawValue) \(UntrustedText.markdown(delivery.destination)) | \(UntrustedText.markdown(delivery.remote ?? "")) | \(receiverText(delivery)) | \(delivery.reply.map { UntrustedText.markdownCode($0) } ?? "") |")
        }
        return out.joined(separator: "\n")
    }

    /// "127.0.0.1 → server; ::1 → attacker ×16".
    static func deliverySummary(_ deliveries: [Delivery]) -> String {
        guard !deliveries.isEmpty else { return "no clients (the bind failed)" }
        var groups: [(String, String, Int)] = []
        for delivery in deliveries {
            let receiver = receiverText(delivery)
            if let index = groups.firstIndex(where: { $0.0 == delivery.destination && $0.1 == receiver }) {
                groups[index].2 += 1
            } else {
                groups.append((delivery.destination, receiver, 1))
            }
        }
        return groups.map { "\(UntrustedText.markdown($0.0)) → \($0.1)" + ($0.2 > 1 ? " ×\($0.2)" : "") }.joined(separator: "<br>")
    }

    /// `servers --report`: the section and the details as a document of their own.
    public static func standalone(_ evidence: ServersEvidence) -> String {
        "# hijack-lab: servers\n\n" + section(evidence) + "\n" + details(evidence)
    }
}
