import HijackAgent
import HijackAudit
import HijackCLI
import HijackSystem

/// "What to do" and "The article's claims, checked": answers read off this run's scenario
/// outcomes. Each piece names the outcome that makes it so; a kernel that behaves otherwise
/// changes the text, and a scenario that did not run is said to be not shown.
enum Advice {
    /// The outcomes of one run by scenario name, with the questions the answers ask of them.
    struct Evidence {
        let outcomes: [String: ScenarioOutcome]

        init(_ report: LabReport) {
            outcomes = Dictionary(report.scenarios.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        }

        /// The verdict of a scenario that ran to its end, or nil.
        func verdict(_ name: String) -> Verdict? {
            guard let outcome = outcomes[name], outcome.status == .ran else { return nil }
            return outcome.verdict
        }

        func socket(_ name: String, _ id: String) -> SocketOutcome? {
            guard let outcome = outcomes[name], outcome.status == .ran else { return nil }
            return outcome.sockets.first { $0.id == id }
        }

        /// Whether a scenario ran and every connection of every probe reached the service
        /// (a victim or defender): none went to an attacker, none failed, none was lost.
        func keptEveryClient(_ name: String) -> Bool {
            guard let outcome = outcomes[name], outcome.status == .ran else { return false }
            let service = Set(outcome.sockets.filter { $0.role != .attacker }.map(\.id))
            return outcome.probes.allSatisfy { probe in
                probe.failed == 0 && probe.lost == 0 && probe.receivedBy.allSatisfy { service.contains($0.key) || $0.value == 0 }
                    && probe.receivedBy.values.reduce(0, +) == probe.attempts
            }
        }

        /// The verdict's name for a sentence, "?" where there is none.
        func said(_ name: String) -> String { verdict(name)?.rawValue ?? "?" }

        /// `[name](#name)`, or the bare name where this run has no section for it.
        func link(_ name: String) -> String {
            outcomes[name] == nil ? name : "[\(name)](#\(name))"
        }

        /// Why a scenario gives no evidence here, or nil when it ran.
        func missing(_ names: [String]) -> String? {
            for name in names {
                guard let outcome = outcomes[name] else { return "not shown in this run (\(name) is not in the catalog)" }
                switch outcome.status {
                case .ran: continue
                case .skipped: return "not shown in this run (\(link(name)) was skipped)"
                case .error: return "not shown in this run (\(link(name)) could not finish)"
                }
            }
            return nil
        }
    }

    // MARK: - What to do

    static func whatToDo(_ report: LabReport) -> String {
        let evidence = Evidence(report)
        var lines = ["## What to do", ""]
        lines.append("Each step is tied to the scenario that shows it working in this run, or says it was not shown.")
        lines.append("")
        for (index, item) in mitigations(evidence).enumerated() {
            lines.append("\(index + 1). **\(item.advice)** \(item.evidence)")
        }
        lines.append("")
        return lines.joined(separator: "\n")
    }

    static func mitigations(_ e: Evidence) -> [(advice: String, evidence: String)] {
        var result: [(String, String)] = []

        let full = ["per-interface-fix-full", "per-interface-fix-dualstack"]
        var bindAll: String
        if let missing = e.missing(full) {
            bindAll = missing.prefix(1).uppercased() + missing.dropFirst() + "."
        } else if full.allSatisfy({ e.verdict($0) == .blocked && e.keptEveryClient($0) }) {
            bindAll = "Shown working: in \(full.map(e.link).joined(separator: " and ")) every attacker failed to bind or listen and every client reached the defender."
        } else {
            bindAll = "**Not** borne out in this run: " + full.map { "\(e.link($0)) was \(e.said($0))" }.joined(separator: ", ") + "."
        }
        if e.verdict("address-added-later") == .hijacked {
            bindAll += " It covers only the addresses that exist when the service starts: in \(e.link("address-added-later")) an address added later went to another user, so watch for new addresses and bind them."
        }
        let gaps = ["v6only-leaves-ipv4-open", "ipv4-only-leaves-ipv6-loopback-open"].filter { e.verdict($0) == .hijacked }
        if !gaps.isEmpty {
            bindAll += " Leaving out the reuse flags is not enough: in \(gaps.map(e.link).joined(separator: " and ")) the victim set no option and lost the other family's clients."
        }
        result.append(("Bind every address the service answers on, on both families, in one process.", bindAll))

        let port: String
        let plainAttacker = e.socket("wildcard-then-loopback-plain", "attacker")
        if let missing = e.missing(["wildcard-then-loopback-plain", "wildcard-then-loopback-reuseport"]) {
            port = missing.prefix(1).uppercased() + missing.dropFirst() + "."
        } else if let plainAttacker, let refused = ScenarioSection.failure(plainAttacker),
                  e.verdict("wildcard-then-loopback-plain") == .blocked, e.verdict("wildcard-then-loopback-reuseport") == .hijacked {
            port = "Shown working: without it the same-user attacker of \(e.link("wildcard-then-loopback-plain")) was refused (\(refused)); with it, in \(e.link("wildcard-then-loopback-reuseport")), it took every local client."
        } else {
            port = "**Not** borne out in this run: \(e.link("wildcard-then-loopback-plain")) was \(e.said("wildcard-then-loopback-plain")), \(e.link("wildcard-then-loopback-reuseport")) was \(e.said("wildcard-then-loopback-reuseport"))."
        }
        result.append(("Leave SO_REUSEPORT off unless you load-balance.", port))

        let udp: String
        if let missing = e.missing(["udp-reuseaddr-other-user"]) {
            udp = missing.prefix(1).uppercased() + missing.dropFirst() + "."
        } else if e.verdict("udp-reuseaddr-other-user") == .hijacked {
            let alternative = e.socket("udp-reuseport-other-user", "attacker").flatMap(ScenarioSection.failure)
            udp = "In \(e.link("udp-reuseaddr-other-user")) another user bound the port beside the service and took its local clients."
                + (e.verdict("udp-reuseport-other-user") == .blocked && alternative != nil
                    ? " With SO_REUSEPORT instead, another user was refused (\(alternative!), \(e.link("udp-reuseport-other-user")))." : "")
        } else {
            udp = "In this run \(e.link("udp-reuseaddr-other-user")) was \(e.said("udp-reuseaddr-other-user")): this kernel did not let another user in."
        }
        result.append(("Never use UDP SO_REUSEADDR on a port that other users can reach.", udp))

        let privileged: String
        if let missing = e.missing(["privileged-port"]) {
            privileged = missing.prefix(1).uppercased() + missing.dropFirst() + "."
        } else if let other = e.socket("privileged-port", "attacker-other")?.bind, let same = e.socket("privileged-port", "attacker-same")?.bind {
            privileged = other == .ok
                ? "**Not** borne out in this run: in \(e.link("privileged-port")) another user bound the port."
                : "Shown in \(e.link("privileged-port")): another user's bind failed with \(other) whatever its options; the service's own user still bound (\(same)) and "
                    + (e.verdict("privileged-port") == .hijacked ? "took the local clients" : "did not take them") + ", so it is no defence against your own account."
        } else {
            privileged = "Not shown in this run: \(e.link("privileged-port")) has no attacker-other and attacker-same sockets."
        }
        result.append(("Use a port below net.ipv4.ip_unprivileged_port_start (1024) for a service other users must not shadow.", privileged))

        let audited = e.outcomes.values.filter { outcome in
            outcome.status == .ran && (outcome.audit?.findings.contains { [.interception, .shadowing].contains($0.kind) } ?? false)
        }.map(\.name).sorted()
        let audit = audited.isEmpty
            ? "Not shown in this run: no scenario ran the audit while its sockets were live."
            : "Shown in \(audited.map(e.link).joined(separator: ", ")): while the sockets were live, the audit named the socket that takes the traffic. It exits 1 on such a finding."
        result.append(("Run `hijack-lab audit` on your hosts, and alert on its exit status.", audit))
        return result
    }

    // MARK: - The article's claims

    /// One claim the seed article makes, what makes it true on this kernel, and the verdict.
    struct Claim: Sendable {
        let claim: String
        let trueIf: String
        let scenarios: [String]
        let verdict: @Sendable (Evidence) -> String
    }

    static func articleClaims(_ report: LabReport) -> String {
        let evidence = Evidence(report)
        var lines = ["## The article's claims, checked", ""]
        lines.append("The article that started this project (on SO_REUSEADDR, in Chinese) makes claims that readers repeat. Linux's verdict on each comes from this run's outcomes.")
        lines.append("")
        lines.append("| Claim | Linux, in this run | True if | Shown by |")
        lines.append("|---|---|---|---|")
        for claim in claims {
            let verdict = evidence.missing(claim.scenarios) ?? claim.verdict(evidence)
            lines.append("| \(claim.claim) | \(verdict) | \(claim.trueIf) | \(claim.scenarios.map(evidence.link).joined(separator: ", ")) |")
        }
        lines.append("")
        return lines.joined(separator: "\n")
    }

    static let claims: [Claim] = [
        Claim(claim: "SO_REUSEADDR lets a restarted server bind at once after TIME_WAIT.",
              trueIf: "the restart with SO_REUSEADDR succeeds; wholly true if it also succeeds when only the new socket sets it",
              scenarios: ["restart-with-reuseaddr", "restart-reuseaddr-only-new"]) { e in
            guard e.verdict("restart-with-reuseaddr") == .restarted else { return "**false**: the restart with SO_REUSEADDR was \(e.said("restart-with-reuseaddr"))" }
            return e.verdict("restart-reuseaddr-only-new") == .restarted
                ? "**true**"
                : "**true only if** the old socket set it too: with it on the new socket alone the restart was \(e.said("restart-reuseaddr-only-new"))"
        },
        Claim(claim: "Closing every socket on SIGTERM does not help.",
              trueIf: "a server that closes first still blocks its restart without SO_REUSEADDR",
              scenarios: ["restart-after-server-close"]) { e in
            e.verdict("restart-after-server-close") == .restartBlocked
                ? "**true**: the server that closed first kept the TIME_WAIT, and the restart failed"
                : "**false**: the restart was \(e.said("restart-after-server-close"))"
        },
        Claim(claim: "With SO_REUSEADDR two sockets can bind one port, but only one can listen: the second listen fails.",
              trueIf: "both bind, and the second listen fails",
              scenarios: ["reuseaddr-bind-both-then-listen", "wildcard-then-loopback-reuseaddr"]) { e in
            guard let second = e.socket("reuseaddr-bind-both-then-listen", "attacker"),
                  let whileListening = e.socket("wildcard-then-loopback-reuseaddr", "attacker")?.bind else {
                return "not shown in this run (a scenario lacks its socket \"attacker\")"
            }
            guard second.bind == .ok, second.listen != .ok else {
                return "**false**: the second socket's bind was \(second.bind) and its listen \(second.listen)"
            }
            let listen = second.listen
            return whileListening == .ok
                ? "**true**: the second listen failed with \(listen)"
                : "**true only if** both bind before either listens (the second listen failed with \(listen)); while the first listens, the second already fails at bind (\(whileListening))"
        },
        Claim(claim: "UDP is the same.",
              trueIf: "UDP SO_REUSEADDR keeps another user's socket off the port, as TCP's does",
              scenarios: ["udp-reuseaddr-other-user", "reuseaddr-other-user"]) { e in
            guard let udp = e.socket("udp-reuseaddr-other-user", "attacker")?.bind, let tcp = e.socket("reuseaddr-other-user", "attacker")?.bind else {
                return "not shown in this run (a scenario lacks its socket \"attacker\")"
            }
            if udp == tcp { return "**true**: both binds gave \(udp)" }
            return "**false**: with SO_REUSEADDR another user's UDP bind gave \(udp) (TCP: \(tcp)), and the newest socket "
                + (e.verdict("udp-reuseaddr-other-user") == .hijacked ? "took the local unicast" : "did not take the unicast")
        },
        Claim(claim: "A 127.0.0.1 or interface bind by another process can intercept a 0.0.0.0 listener.",
              trueIf: "some more specific bind receives the listener's clients",
              scenarios: ["wildcard-then-loopback-plain", "wildcard-then-loopback-reuseaddr", "wildcard-then-loopback-reuseport", "udp-reuseaddr-other-user", "bindtodevice-shadow", "v6only-leaves-ipv4-open"]) { e in
            let deviceAlone = e.verdict("bindtodevice-plain") == .blocked ? " (a device bind alone was refused)" : ""
            let ways = [
                ("wildcard-then-loopback-reuseport", "SO_REUSEPORT from the same user"),
                ("udp-reuseaddr-other-user", "UDP SO_REUSEADDR from any user"),
                ("bindtodevice-shadow", "SO_BINDTODEVICE with SO_REUSEPORT on both sockets" + deviceAlone),
                ("v6only-leaves-ipv4-open", "the IPv4/IPv6 family gap, with no option at all"),
            ].filter { e.verdict($0.0) == .hijacked }.map(\.1)
            let plain = ["wildcard-then-loopback-plain", "wildcard-then-loopback-reuseaddr"].filter { e.verdict($0) == .blocked }
            guard let last = ways.last else { return "**false** on Linux: every such bind was refused" }
            let listed = ways.count == 1 ? last : ways.dropLast().joined(separator: ", ") + " or " + last
            return "**true, but only through** " + listed + (plain.count == 2 ? "; a plain or SO_REUSEADDR TCP bind is refused" : "")
        },
        Claim(claim: "The fix is one socket per interface address.",
              trueIf: "per-address sockets on both families keep every client, also of an address added later",
              scenarios: ["per-interface-fix-full", "per-interface-fix-dualstack", "address-added-later"]) { e in
            guard e.verdict("per-interface-fix-full") == .blocked, e.verdict("per-interface-fix-dualstack") == .blocked else {
                return "**false**: the fix was \(e.said("per-interface-fix-full")) and on both families \(e.said("per-interface-fix-dualstack"))"
            }
            return e.verdict("address-added-later") == .blocked
                ? "**true**"
                : "**true only** for the addresses that exist when the service starts, on both families: an address added later was \(e.said("address-added-later"))"
        },
        Claim(claim: "Letting the client close first avoids TIME_WAIT on the server.",
              trueIf: "a server whose clients closed first restarts without SO_REUSEADDR",
              scenarios: ["restart-after-client-close"]) { e in
            e.verdict("restart-after-client-close") == .restarted
                ? "**true**: the restart without SO_REUSEADDR bound at once"
                : "**false**: the restart was \(e.said("restart-after-client-close"))"
        },
    ]
}
