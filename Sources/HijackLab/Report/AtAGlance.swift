import HijackAgent
import HijackAudit
import HijackCLI
import HijackSystem

/// REPORT.md's first answer: for each common way a service binds, what another process can
/// take and how. Every cell is read off this run's outcomes: matrix cases for a single
/// socket, scenarios for one socket per address. A cell with no evidence says so.
public enum AtAGlance {
    /// A way a service binds, as one row.
    public struct Row: Sendable {
        public var label: String
        /// For rows that one matrix socket shows: its address and options.
        public var endpoint: String?
        public var options: MatrixOptions = .none
        /// For rows that only scenarios show: per-address binding on IPv4 only, or on both families.
        public var perAddress: PerAddress?
    }

    public enum PerAddress: Sendable { case ipv4, bothFamilies }

    public static let rows: [Row] = [
        Row(label: "`0.0.0.0`, no option", endpoint: "0.0.0.0"),
        Row(label: "`0.0.0.0` with SO_REUSEADDR", endpoint: "0.0.0.0", options: .reuseAddress),
        Row(label: "`0.0.0.0` with SO_REUSEPORT", endpoint: "0.0.0.0", options: .reusePort),
        Row(label: "`[::]` dual-stack", endpoint: "[::]"),
        Row(label: "`[::]` with IPV6_V6ONLY", endpoint: "[::]v6only"),
        Row(label: "`127.0.0.1` only", endpoint: "127.0.0.1"),
        Row(label: "`::1` only", endpoint: "::1"),
        Row(label: "one socket per IPv4 address", perAddress: .ipv4),
        Row(label: "one socket per address, both families (the full fix)", perAddress: .bothFamilies),
    ]

    /// The matrix cases behind the single-socket rows, and their baselines.
    public static var matrixCases: (cases: [MatrixCase], baselines: [MatrixCase]) {
        var cases: [MatrixCase] = []
        var baselines: [MatrixCase] = []
        for transport in Transport.allCases {
            for row in rows {
                guard let label = row.endpoint, let first = MatrixEndpoint.standard.first(where: { $0.label == label }) else { continue }
                baselines.append(MatrixCase(transport: transport, first: first, firstOptions: row.options, second: nil))
                for user in [SocketUser.same, .other] {
                    for second in MatrixEndpoint.standard {
                        for options in MatrixOptions.allCases {
                            cases.append(MatrixCase(transport: transport, first: first, firstOptions: row.options, second: second, secondOptions: options, secondUser: user))
                        }
                    }
                }
            }
        }
        return (cases, baselines)
    }

    /// What one column shows for one row.
    struct Cell {
        /// A destination the second socket received, with one bind that did it.
        var takes: [(destination: String, bind: String, gap: Bool, proof: String, external: Bool)] = []
        /// How many binds were tried against the row's service.
        var tried = 0
        var refusals: [String: Int] = [:]
        /// Cases or scenarios that did not run to their end: no evidence either way.
        var unfinished = 0
        /// Whether this run probed from outside (the peer) at all, for the external column.
        var probedFromOutside = false
        var shown: Bool { tried > 0 }

        var text: String {
            guard shown else { return unfinished > 0 ? "not shown in this run (\(unfinished) could not finish)" : "not shown in this run" }
            let incomplete = unfinished > 0 ? "; \(unfinished) could not finish" : ""
            guard !takes.isEmpty else {
                let refused = refusals.sorted { $0.value > $1.value }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
                return "nothing" + (refused.isEmpty && incomplete.isEmpty ? "" : " (\(refused)\(incomplete))")
            }
            var byDestination: [String] = []
            var seen: Set<String> = []
            for take in takes where seen.insert(take.destination).inserted {
                byDestination.append("**\(take.destination)**\(take.gap ? " (family gap)" : "") by \(take.bind) \(take.proof)")
            }
            return byDestination.joined(separator: "; ") + (incomplete.isEmpty ? "" : " (\(unfinished) could not finish)")
        }
    }

    enum Column: CaseIterable { case sameUser, otherTCP, otherUDP }

    // MARK: - Rendering

    public static func render(_ report: LabReport) -> String {
        var lines = ["## At a glance", ""]
        lines.append("Your service binds as in the first column. The next three say what another process could take from it in this run, and with which bind: "
            + "a process of the same user, another user over TCP, and another user over UDP. "
            + "**Bold** is a destination a client uses (127.0.0.1, ::1, or the lab interface, reached from outside), taken by the bind after it; "
            + "\"family gap\" marks the other address family, which the service left free. Each case is linked; \"not shown in this run\" means no case tried it.")
        lines.append("")
        lines.append("| Your service binds | Same user can take | Another user, TCP | Another user, UDP | External clients affected | Fix |")
        lines.append("|---|---|---|---|---|---|")
        for row in rows {
            let cells = Column.allCases.map { cell(row, $0, report) }
            let external: String
            if cells.contains(where: { $0.takes.contains(where: \.external) }) {
                external = "**yes**"
            } else if cells.contains(where: { $0.shown && $0.probedFromOutside }) {
                external = "no"
            } else {
                external = "not shown in this run"
            }
            lines.append("| \(row.label) | " + cells.map(\.text).joined(separator: " | ") + " | \(external) | \(fix(row, cells)) |")
        }
        lines.append("")
        return lines.joined(separator: "\n")
    }

    /// The fix, read off what was taken: the other family's address where a family gap was
    /// used, SO_REUSEPORT off where only a reuseport bind took traffic, each address bound.
    static func fix(_ row: Row, _ cells: [Cell]) -> String {
        let takes = cells.flatMap(\.takes)
        guard cells.contains(where: \.shown) else { return "—" }
        guard !takes.isEmpty else {
            if cells.contains(where: { $0.unfinished > 0 }) { return "not fully shown in this run" }
            return row.perAddress == nil ? "nothing more needed against these binds" : "holds against every bind tried"
        }
        var fixes: [String] = []
        let gaps = Set(takes.filter(\.gap).map(\.destination))
        // A placeholder is words, not code: only a literal address is written as code.
        if !gaps.isEmpty { fixes.append("bind " + gaps.sorted().map { $0 == "lab-interface" ? "the interface's address" : "`\($0)`" }.joined(separator: " and ") + " too") }
        if row.options == .reusePort { fixes.append("leave SO_REUSEPORT off") }
        if row.perAddress != nil { fixes.append("bind each new address as it appears; no SO_REUSEPORT or UDP SO_REUSEADDR on the sockets") }
        if fixes.isEmpty || row.endpoint == "0.0.0.0" || row.endpoint == "[::]" { fixes.append("one socket per address, both families") }
        return fixes.joined(separator: "; ")
    }

    // MARK: - Cells

    static func cell(_ row: Row, _ column: Column, _ report: LabReport) -> Cell {
        row.perAddress == nil ? matrixCell(row, column, report.glance) : scenarioCell(row, column, report.scenarios)
    }

    /// The destinations a service bound this way answers for its clients: a wildcard serves
    /// every address of the host, a loopback bind the local clients; on both families, since
    /// a client of `localhost` tries ::1 first and a client of the host's name may get either.
    static func scope(of endpoint: String) -> Set<String> {
        ["127.0.0.1", "::1"].contains(endpoint) ? ["127.0.0.1", "::1"] : ["127.0.0.1", "::1", "lab-interface", "lab-interface6"]
    }

    static func matrixCell(_ row: Row, _ column: Column, _ evidence: GlanceEvidence?) -> Cell {
        var cell = Cell()
        guard let evidence, let endpoint = row.endpoint else { return cell }
        let transport: Transport = column == .otherUDP ? .udp : .tcp
        let user: SocketUser = column == .sameUser ? .same : .other
        let baseline = evidence.baselines.first {
            $0.status == .ran && $0.matrixCase.transport == transport && $0.matrixCase.first.label == endpoint && $0.matrixCase.firstOptions == row.options
        }
        // Without the service alone there is nothing to compare with: no take can be told.
        guard let baseline else { return cell }
        let servedAlone = Set(baseline.deliveries.filter { $0.first > 0 }.map(\.destination))
        let scope = scope(of: endpoint)
        cell.probedFromOutside = evidence.destinations.contains("lab-interface")
        let all = evidence.cases.filter { outcome in
            let c = outcome.matrixCase
            return c.transport == transport && c.secondUser == user && c.first.label == endpoint && c.firstOptions == row.options
        }
        cell.unfinished = all.filter { $0.status == .error }.count
        let relevant = all.filter { $0.status == .ran }
        // Same user: TCP and UDP alike, each shown where it takes something.
        let sameUserUDP = column == .sameUser ? evidence.cases.filter { outcome in
            let c = outcome.matrixCase
            return outcome.status == .ran && c.transport == .udp && c.secondUser == .same && c.first.label == endpoint && c.firstOptions == row.options
        } : []
        let sameBaselineUDP = evidence.baselines.first {
            $0.status == .ran && $0.matrixCase.transport == .udp && $0.matrixCase.first.label == endpoint && $0.matrixCase.firstOptions == row.options
        }
        var sets = [(relevant, servedAlone, false)]
        if let sameBaselineUDP { sets.append((sameUserUDP, Set(sameBaselineUDP.deliveries.filter { $0.first > 0 }.map(\.destination)), true)) }
        for (cases, alone, udp) in sets {
            // Weakest binds first: no option before SO_REUSEADDR before SO_REUSEPORT, and a
            // specific address before a wildcard.
            let ordered = cases.sorted { rank($0.matrixCase) < rank($1.matrixCase) }
            for outcome in ordered {
                cell.tried += 1
                if outcome.secondBind != .ok { cell.refusals["bind \(outcome.secondBind)", default: 0] += 1; continue }
                if outcome.matrixCase.transport == .tcp, outcome.secondListen != .ok { cell.refusals["listen \(outcome.secondListen)", default: 0] += 1; continue }
                for delivery in outcome.deliveries where delivery.second > 0 && scope.contains(delivery.destination) {
                    let gap = !alone.contains(delivery.destination)
                    let c = outcome.matrixCase
                    let bind = "`\(c.second!.label)`" + (c.secondOptions == .none ? "" : " " + c.secondOptions.names.joined(separator: "+")) + (udp ? " (UDP)" : "")
                    let proof = "([matrix](MATRIX.md#\(MatrixReport.anchor(MatrixReport.gridTitle(c.transport, c.secondUser, c.firstOptions, c.secondOptions)))))"
                    cell.takes.append((delivery.destination, bind, gap, proof, MatrixEndpoint.labInterfaceHosts.contains(delivery.destination)))
                }
            }
        }
        return cell
    }

    static func rank(_ matrixCase: MatrixCase) -> (Int, Int, Int) { matrixCase.secondStrength }

    /// Rows for one socket per address: scenarios whose victims or defenders bind specific
    /// addresses only, on IPv4 only or on both families, and what their attackers got.
    static func scenarioCell(_ row: Row, _ column: Column, _ scenarios: [ScenarioOutcome]) -> Cell {
        var cell = Cell()
        for scenario in scenarios where matches(scenario, row.perAddress) {
            if column == .otherUDP && scenario.transport != .udp { continue }
            if column == .otherTCP && scenario.transport != .tcp { continue }
            guard scenario.status == .ran else {
                if scenario.status == .error { cell.unfinished += 1 }
                continue
            }
            if scenario.probes.contains(where: { $0.from == .peer }) { cell.probedFromOutside = true }
            for attacker in scenario.sockets where attacker.role == .attacker && (attacker.user == .same) == (column == .sameUser) {
                cell.tried += 1
                if let failure = ScenarioSection.failure(attacker) { cell.refusals[failure, default: 0] += 1; continue }
                for probe in scenario.probes where (probe.receivedBy[attacker.id] ?? 0) > 0 {
                    let destination = switch probe.to ?? probe.toSpec {
                    case LabAddresses.hostV4: "lab-interface"
                    case LabAddresses.addedV4: "an address added later"
                    case let other: other
                    }
                    let bind = "`\(attacker.address ?? attacker.addressSpec)`" + (attacker.options.isEmpty ? "" : " " + attacker.options.joined(separator: "+"))
                        + (scenario.transport == .udp && column == .sameUser ? " (UDP)" : "")
                    cell.takes.append((destination, bind, false, "([\(scenario.name)](#\(scenario.name)))", probe.from == .peer))
                }
            }
        }
        return cell
    }

    /// Whether a scenario's service binds one socket per address: every victim or defender on
    /// a specific address, on IPv4 only or on both families.
    static func matches(_ scenario: ScenarioOutcome, _ kind: PerAddress?) -> Bool {
        let service = scenario.sockets.filter { $0.role == .victim || $0.role == .defender }
        // Several addresses: one specific socket alone is the "127.0.0.1 only" kind of service.
        guard let kind, Set(service.compactMap(\.address)).count >= 2, scenario.sockets.contains(where: { $0.role == .attacker }) else { return false }
        let addresses = service.compactMap(\.address)
        guard addresses.count == service.count, !addresses.contains(where: { ["0.0.0.0", "::"].contains($0) }) else { return false }
        let v6 = addresses.filter { $0.contains(":") && !$0.hasPrefix("::ffff:") }
        switch kind {
        case .ipv4: return v6.isEmpty
        case .bothFamilies: return !v6.isEmpty && v6.count < addresses.count
        }
    }
}
