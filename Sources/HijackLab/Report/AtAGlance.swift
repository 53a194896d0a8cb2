import HijackAgent
import HijackAudit
import HijackCLI
import HijackSystem

/// REPORT.md's first answer: for each common way a service binds, one option set per row,
/// what another process can take and how. Every cell is read off this run's matrix cases
/// (`GlanceEvidence`): the service alone, and beside every second socket of the matrix. A
/// cell answers "nothing" only when every case it stands for ran and settled; otherwise it
/// says what did not.
public enum AtAGlance {
    /// A way a service binds, as one row.
    public struct Row: Sendable {
        public var label: String
        public var service: GlanceEvidence.Service
    }

    /// One row per service the glance plans, in its order.
    public static var rows: [Row] { GlanceEvidence.services.map { Row(label: label($0), service: $0) } }

    /// "`0.0.0.0`, no option", "`[::]` with SO_REUSEPORT", "`[::]` with IPV6_V6ONLY and
    /// SO_REUSEADDR", "one socket per IPv4 address with SO_REUSEPORT".
    static func label(_ service: GlanceEvidence.Service) -> String {
        let head = switch service.kind {
        case .single: "`\(service.addresses[0].host == "::" ? "[::]" : service.addresses[0].host)`"
        case .perAddressIPv4: "one socket per IPv4 address"
        case .perAddressBothFamilies: "one socket per address, both families"
        }
        let names = (service.addresses.count == 1 && service.addresses[0].v6only ? ["IPV6_V6ONLY"] : []) + service.options.names
        // Only with no reuse option is the per-address set on both families the full fix.
        if names.isEmpty { return head + ", no option" + (service.kind == .perAddressBothFamilies ? " (the full fix)" : "") }
        let list = names.count == 1 ? names[0] : names.dropLast().joined(separator: ", ") + " and " + names.last!
        return head + (service.kind == .perAddressBothFamilies ? ", with " : " with ") + list + (service.options == .none ? ", no reuse option" : "")
    }

    /// The table's columns: who the second socket is and which transport.
    enum Column: CaseIterable {
        case sameTCP, sameUDP, otherTCP, otherUDP

        var transport: Transport { self == .sameTCP || self == .otherTCP ? .tcp : .udp }
        var user: SocketUser { self == .sameTCP || self == .sameUDP ? .same : .other }
    }

    /// A destination the second socket took, with the weakest case that did it.
    struct Take {
        /// The matrix's label: "127.0.0.1", "::1", "lab-interface", "lab-interface6".
        var destination: String
        /// Of the other family than the service serves alone (its twin is the service's).
        var gap: Bool
        var by: MatrixCase
    }

    /// What one column shows for one row, and the cases it stands for.
    struct Cell {
        var transport: Transport
        /// The service alone; nil when it was not planned (no evidence at all).
        var baseline: MatrixCaseOutcome?
        var cases: [MatrixCaseOutcome] = []
        /// Planned cases the evidence does not hold: not run, so no evidence either way.
        var missing = 0
        /// Each destination taken, by its weakest bind, in the run's destination order.
        var takes: [Take] = []
        /// Every take of every case, weakest first: the fix asks which options any of them needed.
        var every: [Take] = []
        var refusals: [String: Int] = [:]

        /// Every case it stands for ran, and no probe of it was lost: only then may the cell
        /// say that nothing was taken.
        var settled: Bool {
            guard let baseline, TryResult.served(baseline) != nil, !cases.isEmpty, missing == 0 else { return false }
            return cases.allSatisfy(\.isSettled)
        }

        /// Some case ran against a service whose baseline settled: something can be said.
        var shown: Bool { baseline.flatMap(TryResult.served) != nil && cases.contains { $0.status == .ran } }

        var unsettled: [MatrixCaseOutcome] { cases.filter { !$0.isSettled } }

        /// How many cases the cell stands for: those planned.
        var planned: Int { cases.count + missing }
    }

    // MARK: - Rendering

    public static func render(_ report: LabReport) -> String {
        var lines = ["## At a glance", ""]
        lines.append("Each row is one way a service binds, with exactly one option set: its address (or addresses, one socket each) and the options every socket of it sets. "
            + "The next four columns say what a second socket could take from it in this run, and with which bind: a process of the same user or of another user (uid 65534), over TCP and over UDP, "
            + "each trying every address and option set of the matrix. "
            + "**Bold** is a destination clients use (127.0.0.1, ::1, and the lab interface's \(LabAddresses.hostV4) and \(LabAddresses.hostV6), reached from outside), taken by the weakest bind after it; "
            + "\"family gap\" marks the other address family, which the service left free. "
            + "Single-socket rows link the weakest bind's grid in MATRIX.md; the per-address rows run as services of several sockets, which have no grid there (their cases are in the `--json` output, under `glance`). "
            + "\"nothing\" means every case ran and none took anything; otherwise the cell says what did not run or settle, and \"not shown in this run\" that no case could.")
        lines.append("")
        lines.append("| Your service binds | Same user, TCP | Same user, UDP | Another user, TCP | Another user, UDP | External clients affected | Fix |")
        lines.append("|---|---|---|---|---|---|---|")
        let note = addedLaterNote(report.scenarios)
        let index = report.glance.map(Index.init)
        for row in rows {
            let cells = Column.allCases.map { cell(row, $0, report.glance, index: index) }
            lines.append("| \(row.label) | " + cells.map { text($0, row) }.joined(separator: " | ") + " | \(external(cells, report.glance)) | \(fix(row, cells, addedLater: note)) |")
        }
        lines.append("")
        return lines.joined(separator: "\n")
    }

    /// The longest a cell's text may be as a reader sees it (`visibleLength`): more belongs
    /// in the linked case.
    static let cellLimit = 160

    /// A cell's text: what was taken and by which bind, or that nothing was, or what the run
    /// could not say.
    static func text(_ cell: Cell, _ row: Row) -> String {
        guard cell.shown else { return "not shown in this run" + notShownReason(cell) }
        let gap = unsettledText(cell)
        guard !cell.takes.isEmpty else {
            if !cell.settled { return "nothing seen; " + gap }
            let refused = cell.refusals.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
            return "nothing" + (refused.isEmpty ? "" : " (\(refused))")
        }
        let link = row.service.kind == .single
        // The most detail that fits: every group's binds, then the weakest bind alone, then
        // the destinations and the link; the cases that did not settle, counted at least.
        let notes = gap.isEmpty ? [""] : ["; " + gap, "; \(cell.unsettled.count + cell.missing) of \(cell.planned) cases did not settle"]
        let forms = [takesText(cell.takes, link: link), compactTakesText(cell.takes, link: link), briefTakesText(cell.takes, link: link)]
        let candidates = forms.flatMap { form in notes.map { form + $0 } }
        return candidates.first { visibleLength($0) <= cellLimit } ?? candidates.last!
    }

    /// Why a cell shows nothing: " (reason)", or "" when nothing was planned for it.
    static func notShownReason(_ cell: Cell) -> String {
        guard let baseline = cell.baseline else { return "" }
        if baseline.status == .skipped { return " (\(shortReason(baseline.skipReason ?? "skipped")))" }
        if TryResult.served(baseline) == nil { return " (the service alone did not settle)" }
        guard !cell.cases.isEmpty else { return "" }
        if cell.cases.allSatisfy({ $0.status == .skipped }) { return " (\(shortReason(cell.cases[0].skipReason ?? "skipped")))" }
        return " (none of its \(cell.planned) cases ran to the end)"
    }

    /// "3 of 32 cases did not settle (2 could not finish, 1 lost a probe)", or "" when every case did.
    static func unsettledText(_ cell: Cell) -> String {
        let unsettled = cell.unsettled
        guard !unsettled.isEmpty || cell.missing > 0 else { return "" }
        var why: [String] = []
        if cell.missing > 0 { why.append("\(cell.missing) not in this run's evidence") }
        let skipped = unsettled.filter { $0.status == .skipped }
        // Every one skipped, for one reason: the reason alone says it.
        if let reason = skipped.first?.skipReason { why.append((skipped.count == unsettled.count + cell.missing ? "" : "\(skipped.count) ") + "skipped: \(shortReason(reason))") }
        let errors = unsettled.filter { $0.status == .error }.count
        if errors > 0 { why.append("\(errors) could not finish") }
        let lost = unsettled.filter { $0.status == .ran }.count
        if lost > 0 { why.append("\(lost) lost a probe") }
        let verb = skipped.count == unsettled.count ? "did not run" : "did not settle"
        return "\(unsettled.count + cell.missing) of \(cell.planned) cases \(verb) (\(why.joined(separator: ", ")))"
    }

    /// A skip reason as a cell can hold it: its first clause, with the lab interface named
    /// in words. The reasons are the runner's own sentences, escaped all the same.
    static func shortReason(_ reason: String) -> String {
        let clause = reason.split(whereSeparator: { $0 == ";" || $0 == "," }).first.map(String.init) ?? reason
        let worded = clause.replacing(AddressSymbol.labInterface6.rawValue, with: "the lab interface").replacing(AddressSymbol.labInterface.rawValue, with: "the lab interface")
        return UntrustedText.markdown(worded.count > 70 ? String(worded.prefix(69)) + "…" : worded)
    }

    /// The public name of a matrix address: the lab interface's by its address, `[::]` for
    /// the wildcard (MATRIX.md's `[::]v6only` kept, as its grids name it).
    static func name(_ endpoint: MatrixEndpoint) -> String {
        endpoint.isLabInterface ? TryResult.destination(endpoint.label) : endpoint.label
    }

    /// "**127.0.0.1**, **::1** by `127.0.0.1`/`::1` SO_REUSEPORT ([case](MATRIX.md#…))": the
    /// destinations grouped by the option set of their weakest bind, weakest group first; one
    /// link, to the grid of the weakest bind of all.
    static func takesText(_ takes: [Take], link: Bool) -> String {
        var groups: [(options: MatrixOptions, takes: [Take])] = []
        for take in takes {
            if let index = groups.firstIndex(where: { $0.options == take.by.secondOptions }) { groups[index].takes.append(take) } else { groups.append((take.by.secondOptions, [take])) }
        }
        groups.sort { MatrixOptions.allCases.firstIndex(of: $0.options)! < MatrixOptions.allCases.firstIndex(of: $1.options)! }
        let weakest = takes.min { $0.by.secondStrength < $1.by.secondStrength }!.by
        return groups.map { group in
            var binds: [String] = []
            for take in group.takes where !binds.contains(name(take.by.second!)) { binds.append(name(take.by.second!)) }
            let options = group.options == .none ? "" : " " + group.options.names.joined(separator: "+")
            let proof = link && group.takes.contains { $0.by == weakest } ? " ([case](\(weakest.gridLink)))" : ""
            return destinations(group.takes) + " by " + binds.map { "`\($0)`" }.joined(separator: "/") + options + proof
        }.joined(separator: "; ")
    }

    /// The same, short enough for any number of takes: the destinations, then the weakest bind.
    static func compactTakesText(_ takes: [Take], link: Bool) -> String {
        let weakest = takes.min { $0.by.secondStrength < $1.by.secondStrength }!.by
        let options = weakest.secondOptions == .none ? "" : " " + weakest.secondOptions.names.joined(separator: "+")
        return destinations(takes) + " (weakest bind `\(name(weakest.second!))`\(options))" + (link ? " ([case](\(weakest.gridLink)))" : "")
    }

    /// The destinations alone, with the weakest bind's case.
    static func briefTakesText(_ takes: [Take], link: Bool) -> String {
        let weakest = takes.min { $0.by.secondStrength < $1.by.secondStrength }!.by
        return destinations(takes) + (link ? " ([case](\(weakest.gridLink)))" : "")
    }

    /// "**127.0.0.1**, **::1** (family gap)", or "(family gaps)" once when every one is a gap.
    static func destinations(_ takes: [Take]) -> String {
        let allGaps = takes.count > 1 && takes.allSatisfy(\.gap)
        let names = takes.map { "**\(TryResult.destination($0.destination))**" + ($0.gap && !allGaps ? " (family gap)" : "") }
        return names.joined(separator: ", ") + (allGaps ? " (family gaps)" : "")
    }

    /// The length of a cell as a reader sees it: link targets, emphasis, code marks and
    /// escapes are not shown.
    static func visibleLength(_ markdown: String) -> Int {
        var count = 0
        var characters = Array(markdown)[...]
        while let character = characters.first {
            characters = characters.dropFirst()
            switch character {
            case "\\": if !characters.isEmpty { characters = characters.dropFirst(); count += 1 }
            case "*", "`", "[": break
            case "]":
                // `](target)`: the target is not shown.
                if characters.first == "(", let close = characters.firstIndex(of: ")") { characters = characters[characters.index(after: close)...] }
            default: count += 1
            }
        }
        return count
    }

    /// Whether external clients lost anything: a take of one of the lab interface's
    /// addresses, which only the peer probes. "no" only when every cell settled and the
    /// run probed from outside.
    static func external(_ cells: [Cell], _ evidence: GlanceEvidence?) -> String {
        if cells.contains(where: { $0.takes.contains { MatrixEndpoint.labInterfaceHosts.contains($0.destination) } }) { return "**yes**" }
        guard let evidence, evidence.destinations.contains(where: MatrixEndpoint.labInterfaceHosts.contains) else { return "not shown in this run" }
        guard cells.contains(where: \.shown) else { return "not shown in this run" }
        return cells.allSatisfy(\.settled) ? "no" : "none seen; not every case settled"
    }

    /// The fix, read off what was taken: the other family where a family gap was used,
    /// SO_REUSEPORT off where a reuseport bind took the service's own addresses, no
    /// SO_REUSEADDR on UDP where that did; "nothing more needed" only when every case of the
    /// row settled and none took anything.
    static func fix(_ row: Row, _ cells: [Cell], addedLater: String?) -> String {
        let service = row.service
        let perAddress = service.kind != .single
        let note = perAddress ? addedLater : nil
        guard cells.contains(where: \.shown) else { return note ?? "—" }
        let takes = cells.flatMap { cell in cell.every.map { (take: $0, transport: cell.transport) } }
        var fixes: [String] = []
        if takes.isEmpty {
            fixes.append(cells.allSatisfy(\.settled) ? "nothing more needed" : "not fully shown in this run")
        } else {
            var gaps: [String] = []
            for (take, _) in takes where take.gap && !gaps.contains(take.destination) { gaps.append(take.destination) }
            if !gaps.isEmpty {
                if service.isWildcard {
                    fixes.append(service.addresses[0].v6only ? "leave IPV6_V6ONLY off, or one socket per address, both families" : "bind `[::]` dual-stack instead, or one socket per address, both families")
                } else {
                    // A placeholder is words, not code: only a literal address is written as code.
                    let words = gaps.map { gap -> String in
                        switch gap {
                        case AddressSymbol.labInterface.rawValue: "the interface's IPv4 address"
                        case AddressSymbol.labInterface6.rawValue: "the interface's IPv6 address"
                        default: "`\(gap)`"
                        }
                    }
                    fixes.append("bind " + words.joined(separator: " and ") + " too")
                }
            }
            let own = takes.filter { !$0.take.gap }
            if [.reusePort, .both].contains(service.options), own.contains(where: { [.reusePort, .both].contains($0.take.by.secondOptions) }) {
                fixes.append("leave SO_REUSEPORT off")
            }
            if [.reuseAddress, .both].contains(service.options), own.contains(where: { $0.transport == .udp && $0.take.by.secondOptions == .reuseAddress }) {
                fixes.append("no UDP SO_REUSEADDR")
            }
            if fixes.isEmpty { fixes.append(perAddress ? "no fix derived in this run" : "one socket per address, both families") }
        }
        return (fixes + (note.map { [$0] } ?? [])).joined(separator: "; ")
    }

    /// The note on per-address rows: an address added after the service started is nobody's
    /// until someone binds it. Read off the scenarios that ran and probed such an address,
    /// and only where an attacker received there; nil otherwise, so no scenario that did not
    /// run is named.
    static func addedLaterNote(_ scenarios: [ScenarioOutcome]) -> String? {
        let shown = scenarios.filter { scenario in
            scenario.status == .ran && scenario.probes.contains { probe in
                (probe.to ?? probe.toSpec) == LabAddresses.addedV4
                    && scenario.sockets.contains { $0.role == .attacker && (probe.receivedBy[$0.id] ?? 0) > 0 }
            }
        }
        guard let first = shown.first else { return nil }
        return "bind addresses added later as they appear ([\(first.name)](#\(first.name)))"
    }

    // MARK: - Cells

    /// The evidence's outcomes by their case, so that each cell looks up the cases it stands for.
    struct Index {
        var outcomes: [MatrixCase: MatrixCaseOutcome] = [:]

        init(_ evidence: GlanceEvidence) {
            for outcome in evidence.cases + evidence.baselines where outcomes[outcome.matrixCase] == nil { outcomes[outcome.matrixCase] = outcome }
        }
    }

    static func cell(_ row: Row, _ column: Column, _ evidence: GlanceEvidence?, index: Index? = nil) -> Cell {
        var cell = Cell(transport: column.transport)
        guard let evidence else { return cell }
        let index = index ?? Index(evidence)
        cell.baseline = index.outcomes[row.service.matrixCase(column.transport)]
        // The cell stands for the planned cases: one the evidence lacks did not run.
        let planned = GlanceEvidence.planned(row.service, column.transport, column.user)
        cell.cases = planned.compactMap { index.outcomes[$0] }
        cell.missing = planned.count - cell.cases.count
        // Without the service alone there is nothing to compare with: no take can be told.
        guard let baseline = cell.baseline, let served = TryResult.served(baseline) else { return cell }
        var weakest: [String: Take] = [:]
        // Weakest binds first: no option before SO_REUSEADDR before SO_REUSEPORT, and a
        // specific address before a wildcard.
        for outcome in cell.cases.sorted(by: { $0.matrixCase.secondStrength < $1.matrixCase.secondStrength }) where outcome.status == .ran {
            if let refusal = outcome.secondRefusal {
                cell.refusals[refusal, default: 0] += 1
                continue
            }
            // `localhost` is left to its two loopbacks, each of which the cell names.
            for take in TryResult.taken(outcome, served: served) where take.destination != "localhost" {
                let found = Take(destination: take.destination, gap: take.gap, by: outcome.matrixCase)
                cell.every.append(found)
                if weakest[take.destination] == nil { weakest[take.destination] = found }
            }
        }
        cell.takes = evidence.destinations.compactMap { weakest[$0] }
        return cell
    }
}
