import HijackAgent
import HijackSystem

/// `try`'s answer as text: per transport, per destination, who can take it and with which
/// bind; the binds refused, with their errno; then the fix and what happened to it.
enum TryReport {
    static func render(_ result: TryResult) -> String {
        var lines: [String] = []
        let environment = result.environment
        lines.append("hijack-lab try \(UntrustedText.terminal(result.request.title))")
        lines.append("Real cases on \(UntrustedText.terminal(environment.kernel)) (topology \(environment.topology.rawValue), uid \(environment.uid)): your bind in one process, "
            + "each second socket in another, real clients. "
            + (result.request.device == nil ? "MATRIX.md has the same cases: in the linked grid, row `\(result.request.bind.label)`, column the bind."
                                            : "The matrix binds no device, so these cases have no MATRIX.md cell."))
        if let port = result.request.port {
            if environment.topology != .netns {
                lines.append("The loopback topology binds this host's own loopback on free ports: port \(port) was not used.")
            } else if result.privilegedPort {
                lines.append("Port \(port) is below the lab's ip_unprivileged_port_start (1024): your socket and the same user's bind it as a service started by root does (CAP_NET_BIND_SERVICE), "
                    + "so the same user stands for root here; another user's bind is refused (EACCES). The matrix runs on ports from 10,000, so its cells for another user differ.")
            }
        }
        let takes = result.takes
        let fixTakes = result.takes(fix: true)
        for evidence in result.transports {
            lines.append("")
            lines += section(evidence, takes: takes.filter { $0.transport == evidence.transport }, fixTakes: fixTakes.filter { $0.transport == evidence.transport }, result: result)
        }
        lines.append("")
        lines.append(verdict(result, takes: takes))
        return lines.joined(separator: "\n") + "\n"
    }

    static func verdict(_ result: TryResult, takes: [TryTake]) -> String {
        if !takes.isEmpty {
            let what = Set(takes.map { "\($0.transport.rawValue) \($0.destination)" }).count
            return "Answer: yes, \(what) transport-destination pair\(what == 1 ? "" : "s") can be taken (exit status 1)."
        }
        let failed = result.transports.filter { $0.alone.status == .ran && !$0.alone.firstServes }
        if !failed.isEmpty {
            let which = failed.map { "\($0.transport.rawValue): \(failure($0.alone))" }.joined(separator: "; ")
            return "Answer: your own socket could not serve (\(which)), so nothing can be said of who takes its traffic (exit status 3)."
        }
        if !result.unsettled.isEmpty || !result.skipped.isEmpty {
            var parts: [String] = []
            if !result.skipped.isEmpty { parts.append("\(result.skipped.count) case\(result.skipped.count == 1 ? " was" : "s were") not tried") }
            if !result.unsettled.isEmpty { parts.append("\(result.unsettled.count) did not settle") }
            return "Answer: nothing was seen taken, but " + parts.joined(separator: " and ") + ", so that is not the whole answer (exit status 3)."
        }
        return "Answer: no second socket took anything from your bind, in every case (exit status 0)."
    }

    static func section(_ evidence: TryTransport, takes: [TryTake], fixTakes: [TryTake], result: TryResult) -> [String] {
        var lines: [String] = []
        let name = evidence.transport.rawValue.uppercased()
        if let served = TryResult.served(evidence.alone) {
            lines += takers(evidence, served: served, takes: takes, result: result)
        } else {
            lines.append("\(name): your socket alone did not settle (\(failure(evidence.alone))), so nothing can be said of who takes its traffic.")
        }
        lines.append("")
        let fix = evidence.fix
        let addresses = fix.addresses.map { TryResult.destination($0.label) }.joined(separator: ", ")
        lines.append("  Fix: one socket per address (\(addresses)), each with " + (fix.options == .none ? "no option" : fix.options.names.joined(separator: "+"))
            + (fix.dropped.isEmpty ? "." : "; it leaves out " + fix.dropped.joined(separator: "; ") + "."))
        guard TryResult.served(evidence.fixAlone) != nil else {
            lines.append("  The fix alone did not settle (\(failure(evidence.fixAlone))): not shown.")
            return lines
        }
        let tried = evidence.fixCases.filter { $0.status == .ran }.count
        if fixTakes.isEmpty {
            let unsettled = evidence.fixCases.filter { $0.status != .skipped && !$0.isSettled }.count
            let skipped = evidence.fixCases.filter { $0.status == .skipped }.count
            let answers = [SocketUser.same, .other].compactMap { user -> String? in
                let cases = evidence.fixCases.filter { $0.matrixCase.secondUser == user }
                guard !cases.isEmpty else { return nil }
                return (user == .same ? "same user: " : "another user: ") + counts(cases)
            }
            lines.append("  Against the same \(evidence.fixCases.count) second sockets: " + (unsettled == 0 && skipped == 0 ? "it holds, nothing taken" : "nothing seen taken, but \(unsettled) did not settle and \(skipped) were not tried")
                + " (" + answers.joined(separator: "; ") + ").")
        } else {
            lines.append("  Against the same \(tried) second sockets it still loses:")
            for take in fixTakes {
                let binds = take.binds.map(describe).joined(separator: ", ")
                lines.append("    " + pad(take.destination, 14) + pad(take.user == .same ? "same user" : "another user", 14) + binds)
            }
        }
        return lines
    }

    /// Per destination and user: who takes it, with which binds; then the binds refused.
    static func takers(_ evidence: TryTransport, served: Set<String>, takes: [TryTake], result: TryResult) -> [String] {
        var lines: [String] = []
        let name = evidence.transport.rawValue.uppercased()
        let order = result.destinationOrder
        lines.append("\(name): alone, your socket receives " + (served.isEmpty ? "nothing" : order.filter(served.contains).map(TryResult.destination).joined(separator: ", ")) + ".")
        for label in order {
            let destination = TryResult.destination(label)
            for user in [SocketUser.same, .other] {
                let head = pad(destination, 14) + pad(user == .same ? "same user" : "another user", 14)
                let binds = takes.first { $0.destination == destination && $0.user == user }?.binds ?? []
                if binds.isEmpty {
                    let yours = served.contains(label) || MatrixResult.familyTwin[label].map(served.contains) == true
                    lines.append("  " + head + (yours ? notTaken(evidence.cases.filter { $0.matrixCase.secondUser == user }) : "not yours: your socket does not receive it, nor its other-family twin"))
                    continue
                }
                // One line per second address and way of taking: its weakest option set, with
                // its case, and the other option sets that did the same.
                var groups: [(first: TryBind, more: [TryBind])] = []
                for bind in binds {
                    if let index = groups.firstIndex(where: { $0.first.label == bind.label && $0.first.shared == bind.shared && $0.first.familyGap == bind.familyGap }) {
                        groups[index].more.append(bind)
                    } else {
                        groups.append((bind, []))
                    }
                }
                for (index, group) in groups.enumerated() {
                    let how = group.first.shared ? "shares it with you" : "takes it"
                    let gap = group.first.familyGap ? " (family gap)" : ""
                    let also = group.more.isEmpty ? "" : " (also " + group.more.map { $0.options.filter { $0 != "IPV6_V6ONLY" }.joined(separator: "+") }.map { $0.isEmpty ? "no option" : $0 }.joined(separator: ", ") + ")"
                    let words = "\(how)\(gap): \(describe(group.first))\(also)"
                    let text = group.first.case.map { pad(words, 66) + $0 } ?? words
                    lines.append("  " + (index == 0 ? head : String(repeating: " ", count: head.count)) + text)
                }
            }
        }
        for user in [SocketUser.same, .other] {
            if let refused = refusals(evidence.cases.filter { $0.matrixCase.secondUser == user }, linked: result.request.device == nil && !result.privilegedPort) {
                lines.append("  Refused, \(user == .same ? "same user" : "another user"): \(refused)")
            }
        }
        return lines
    }

    /// `127.0.0.1 SO_REUSEPORT`, `[::] IPV6_V6ONLY`, `0.0.0.0 (no option)`.
    static func describe(_ bind: TryBind) -> String {
        let host = bind.address.contains(":") && bind.address != "::ffff:127.0.0.1" && bind.address != "::1" && !bind.address.hasPrefix("2001:") ? "[\(bind.address)]" : bind.address
        return host + (bind.options.isEmpty ? " (no option)" : " " + bind.options.joined(separator: "+"))
    }

    /// Why no bind of one user took a destination: every one refused or bound beside without
    /// taking it; or what did not settle.
    static func notTaken(_ cases: [MatrixCaseOutcome]) -> String {
        let skipped = cases.filter { $0.status == .skipped }
        if let reason = skipped.first?.skipReason, skipped.count == cases.count { return "not tried: \(reason)" }
        let unsettled = cases.filter { $0.status != .skipped && !$0.isSettled }.count
        let settled = cases.count - skipped.count - unsettled
        if unsettled == 0 && skipped.isEmpty { return "cannot take it (\(settled) binds tried)" }
        var parts = ["not taken by the \(settled) binds that ran"]
        if unsettled > 0 { parts.append("\(unsettled) did not settle") }
        if !skipped.isEmpty {
            let reasons = Array(Set(skipped.compactMap(\.skipReason))).sorted()
            parts.append("\(skipped.count) not tried (" + reasons.joined(separator: "; ") + ")")
        }
        return parts.joined(separator: "; ")
    }

    /// Each refused bind, grouped by what the kernel answered: `bind EADDRINUSE ×20: 0.0.0.0 (none, REUSEADDR), …`.
    /// With `linked`, each group names the MATRIX.md grid of its first case (the others are
    /// in the grids beside it, one per option set).
    static func refusals(_ cases: [MatrixCaseOutcome], linked: Bool = false) -> String? {
        var groups: [String: [String: [MatrixOptions]]] = [:]
        var order: [String] = []
        var links: [String: String] = [:]
        for outcome in cases.sorted(by: { $0.matrixCase.secondStrength < $1.matrixCase.secondStrength }) where outcome.status == .ran {
            let bind = TryResult.bind(outcome, linked: linked)
            guard let refusal = outcome.secondRefusal else { continue }
            if groups[refusal] == nil {
                order.append(refusal)
                links[refusal] = bind.case
            }
            groups[refusal, default: [:]][outcome.matrixCase.second!.label, default: []].append(outcome.matrixCase.secondOptions)
        }
        guard !order.isEmpty else { return nil }
        return order.map { refusal in
            let byAddress = groups[refusal]!
            let count = byAddress.values.map(\.count).reduce(0, +)
            let link = links[refusal].map { " (from \($0))" } ?? ""
            if count == MatrixEndpoint.standard.count * MatrixOptions.allCases.count { return "\(refusal) ×\(count): every address, with any option\(link)" }
            let list = MatrixEndpoint.standard.compactMap { endpoint -> String? in
                guard let options = byAddress[endpoint.label] else { return nil }
                return endpoint.label + (options.count == MatrixOptions.allCases.count ? " (any option)" : " (" + options.map(\.short).joined(separator: ", ") + ")")
            }
            return "\(refusal) ×\(count): " + list.joined(separator: ", ") + link
        }.joined(separator: "; ")
    }

    /// What a user's second sockets met, counted: `bind EADDRINUSE ×30, bound beside it ×2`.
    static func counts(_ cases: [MatrixCaseOutcome]) -> String {
        var tally: [(String, Int)] = []
        func add(_ key: String) {
            if let index = tally.firstIndex(where: { $0.0 == key }) { tally[index].1 += 1 } else { tally.append((key, 1)) }
        }
        for outcome in cases {
            switch outcome.status {
            case .skipped: add("skipped")
            case .error: add("could not finish")
            case .ran where !outcome.firstServes: add("the service's own socket failed")
            case .ran: add(outcome.secondRefusal ?? "bound beside it")
            }
        }
        return tally.map { "\($0.0) ×\($0.1)" }.joined(separator: ", ")
    }

    static func failure(_ outcome: MatrixCaseOutcome) -> String {
        if outcome.status == .skipped { return "skipped: \(outcome.skipReason ?? "")" }
        if outcome.status == .error { return "could not finish: \(UntrustedText.terminal(outcome.error ?? ""))" }
        if outcome.firstBind != .ok { return "your bind failed: \(outcome.firstBind)" }
        if outcome.matrixCase.transport == .tcp, outcome.firstListen != .ok { return "your listen failed: \(outcome.firstListen)" }
        return "a probe got no answer"
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}
