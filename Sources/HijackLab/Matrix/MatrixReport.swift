import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation

/// The whole matrix run: what `matrix --json` writes and what MATRIX.md renders.
public struct MatrixResult: Codable, Sendable {
    public var environment: LabReport.Environment
    /// The destinations each cell's letters stand for, in order.
    public var destinations: [String]
    public var cases: [MatrixCaseOutcome]
    /// Each first socket alone: which destinations it receives with nobody beside it.
    public var baselines: [MatrixCaseOutcome]
    /// The audit's recall and precision over the cases, with `matrix --audit`.
    public var audit: MatrixAuditScore? = nil

    /// 0 when every case ran or was skipped with a reason, 1 when any could not finish.
    public var exitStatus: Int32 { cases.contains { $0.status == .error } || baselines.contains { $0.status == .error } ? 1 : 0 }

    /// A client that resolves `localhost` tries both loopback addresses, so a service that
    /// answers on one of them is reached, for that client, through either: whoever holds
    /// the other one receives some of its clients. The lab interface has no such twin
    /// among the probes (its IPv6 address is not probed), so it only counts for itself.
    public static let localhostTwin = ["127.0.0.1": "::1", "::1": "127.0.0.1"]

    static func baselineKey(_ matrixCase: MatrixCase) -> String {
        "\(matrixCase.transport.rawValue) \(matrixCase.first.label) \(matrixCase.firstOptions.rawValue)"
    }

    /// What each first socket receives alone, keyed by transport, address and options; a
    /// first socket whose baseline did not run is absent, since nothing is known of it.
    var aloneReceives: [String: Set<String>] {
        var alone: [String: Set<String>] = [:]
        for baseline in baselines where baseline.status == .ran {
            alone[Self.baselineKey(baseline.matrixCase)] = Set(baseline.deliveries.filter { $0.first > 0 }.map(\.destination))
        }
        return alone
    }

    /// Cases in which the second socket received traffic that belongs to the first: to a
    /// destination the first, alone, receives, or to that destination's `localhost` twin.
    public var takeovers: [MatrixTakeover] {
        let alone = aloneReceives
        return cases.compactMap { Self.takeover($0, alone: alone) }
    }

    static func takeover(_ outcome: MatrixCaseOutcome, alone: [String: Set<String>]) -> MatrixTakeover? {
        guard outcome.status == .ran, outcome.matrixCase.second != nil, let own = alone[baselineKey(outcome.matrixCase)] else { return nil }
        var taken: [String] = []
        var gaps: [String] = []
        var all = false
        for delivery in outcome.deliveries where delivery.second > 0 {
            if own.contains(delivery.destination) {
                taken.append(delivery.destination)
            } else if let twin = localhostTwin[delivery.destination], own.contains(twin) {
                taken.append(delivery.destination)
                gaps.append(delivery.destination)
            } else {
                continue
            }
            if delivery.first == 0 { all = true }
        }
        return taken.isEmpty ? nil : MatrixTakeover(outcome: outcome, destinations: taken, familyGaps: gaps, shared: !all)
    }

    /// The outcome class of every case, as the pictures colour it.
    public var classes: [MatrixCase: MatrixOutcomeClass] {
        let alone = aloneReceives
        var classes: [MatrixCase: MatrixOutcomeClass] = [:]
        for outcome in cases { classes[outcome.matrixCase] = Self.outcomeClass(outcome, alone: alone) }
        return classes
    }

    static func outcomeClass(_ outcome: MatrixCaseOutcome, alone: [String: Set<String>]) -> MatrixOutcomeClass {
        switch outcome.cell {
        case "B": return .bindRefused
        case "L": return .listenRefused
        case "F", "E", "·": return .incomplete
        default: break
        }
        if let takeover = takeover(outcome, alone: alone) { return takeover.shared ? .shares : .takes }
        // Without the first socket's baseline, traffic the second received may have been the first's.
        if alone[baselineKey(outcome.matrixCase)] == nil && outcome.deliveries.contains(where: { $0.second > 0 }) { return .incomplete }
        return .keeps
    }
}

/// One case in which the second socket received the first socket's traffic.
public struct MatrixTakeover: Sendable {
    public var outcome: MatrixCaseOutcome
    /// The destinations the second socket received, of those that belong to the first.
    public var destinations: [String]
    /// Of those, the ones the first does not receive even alone: only their `localhost`
    /// twin. The first socket's family left them open to anyone.
    public var familyGaps: [String]
    /// The first socket still received part of every taken destination.
    public var shared: Bool
}

/// How one case ends, in the words a reader scanning for a hijack needs.
public enum MatrixOutcomeClass: String, CaseIterable, Sendable {
    case takes
    case shares
    case keeps
    case bindRefused = "bind-refused"
    case listenRefused = "listen-refused"
    case incomplete

    /// One letter per class, so that no reader depends on telling colours apart.
    public var letter: String {
        switch self {
        case .takes: "A"
        case .shares: "S"
        case .keeps: "V"
        case .bindRefused: "B"
        case .listenRefused: "L"
        case .incomplete: "?"
        }
    }

    public var label: String {
        switch self {
        case .takes: "second takes traffic"
        case .shares: "shared with the second"
        case .keeps: "first keeps its traffic"
        case .bindRefused: "second bind refused"
        case .listenRefused: "second listen refused"
        case .incomplete: "skipped or could not finish"
        }
    }
}

/// MATRIX.md. Its cells, labels and destinations are the lab's own fixed text; the one thing
/// it did not write, the kernel release, goes through UntrustedText like a scenario's text.
public enum MatrixReport {
    public static let legend = "`B` the second bind failed, `L` its listen failed, `V` the victim (first socket) got everything, `A` the attacker (second socket) got everything, `S` shared, `-` nobody got it (`F` the first socket failed, `·` skipped, `E` could not finish)."

    static let takeoverTitle = "Where the second socket takes traffic from the first"
    static let picturesTitle = "Pictures"

    /// The definition of a take-over, as MATRIX.md states it.
    public static let takeoverRule = "A destination counts as taken when the second socket received some of its traffic and the first socket, bound alone (its baseline), receives that destination or the other loopback address, since a client resolving `localhost` tries both ::1 and 127.0.0.1: a service on one family loses those clients to whoever binds the other (a family gap)."

    /// MATRIX.md. `pictures` are the SVG files the caller writes next to it (see
    /// `MatrixSVG.render`); the report embeds each by its file name, so pass none when the
    /// report goes where no file can sit beside it, such as stdout.
    public static func render(_ result: MatrixResult, pictures: [MatrixPicture] = []) -> String {
        let sections = self.sections(result)
        var out: [String] = []
        out.append("# hijack-lab matrix")
        out.append("")
        out.append("Generated by `swift run -c release hijack-lab matrix`. Every cell is a real case: two processes, one socket each; the first binds (and listens) before the second; then real clients connect or send to each destination and the receiving process names itself. Nothing is inferred from rules.")
        out.append("")
        out.append(contents(sections, pictures: !pictures.isEmpty, audit: result.audit != nil))
        if !pictures.isEmpty {
            out.append("## \(picturesTitle)")
            out.append("")
            out.append("One picture per transport and owner of the second socket. Rows: the first socket's address; columns: the second's. Each cell holds one small square per option pair (rows: the first socket's options, columns: the second's, both in the order none, SO_REUSEADDR, SO_REUSEPORT, both), coloured and lettered by how the case ends; the take-over list below says which destinations.")
            out.append("")
            for picture in pictures {
                out.append("![\(picture.title)](\(picture.fileName))")
                out.append("")
            }
        }
        out.append("## About this run")
        out.append("")
        out.append("- Kernel: \(UntrustedText.markdownCode(result.environment.kernel)); run as uid \(result.environment.uid); topology **\(result.environment.topology.rawValue)**")
        out.append("- Date: \(result.environment.date)")
        let ran = result.cases.filter { $0.status == .ran }.count
        let skipped = result.cases.filter { $0.status == .skipped }.count
        let failed = result.cases.filter { $0.status == .error }.count
        let baselinesFailed = result.baselines.filter { $0.status == .error }.count
        out.append("- Cases: \(result.cases.count) (\(ran) ran" + (skipped > 0 ? ", \(skipped) skipped" : "") + (failed > 0 ? ", \(failed) could not finish" : "") + "), plus \(result.baselines.count) baselines of the first socket alone"
            + (baselinesFailed > 0 ? " (\(baselinesFailed) could not finish: takeovers from those first sockets are unknown and not listed)" : "") + ".")
        out.append("")
        out.append("**Legend.** " + legend + " Each cell has one letter per destination, in this order: " + result.destinations.map { "`\($0)`" }.joined(separator: ", ")
            + (result.destinations.contains("lab-interface") ? " (the lab interface's IPv4 address, \(Topology.Lab.hostV4), from the external peer; its IPv6 address is not probed, so a `[::]v6only` socket shows `-` there)" : "") + ".")
        out.append("")
        out.append("**How each case runs.** The first socket binds and listens (TCP) on a port of its own, then the second. Probes come from the lab host to 127.0.0.1 and ::1, and from the peer to the lab interface. Each probe is one connection or datagram when only one socket serves (the result is then fixed), and 16 when both do, so that a split by the kernel's reuseport hash shows as `S`. Clients close with a RST (SO_LINGER 0), so no TIME_WAIT is left behind, and each case closes its sockets before the next begins.")
        out.append("")
        out.append("**The kernel's own selftest binds only.** `tools/testing/selftests/net/bind_wildcard.c` checks the second bind() with neither socket listening. Here the first socket listens before the second binds, which is what a running service does, and for TCP that changes SO_REUSEADDR: Linux lets two SO_REUSEADDR sockets overlap only while neither listens. So a TCP SO_REUSEADDR cell may show `B` where the selftest expects success. The test suite runs the matrix's bind-only path on the selftest's 44 address pairs and checks that it agrees with the selftest's expectations.")
        out.append("")
        out.append(takeovers(result))
        if let score = result.audit { out.append(auditSection(score)) }
        for section in sections {
            out.append("## \(section.title)")
            out.append("")
            for grid in section.grids { out.append(self.grid(grid.cases, title: grid.title)) }
        }
        return out.joined(separator: "\n")
    }

    struct Section {
        var title: String
        var transport: Transport
        var user: SocketUser
        var grids: [(title: String, firstOptions: MatrixOptions, secondOptions: MatrixOptions, cases: [MatrixCaseOutcome])]
    }

    /// Headings are plain ASCII, and each names its transport and user, so that every one is
    /// unique and GitHub gives it an anchor with no `-1` suffix: `anchor(title)` is its link.
    static func sections(_ result: MatrixResult) -> [Section] {
        var sections: [Section] = []
        for transport in Transport.allCases {
            for user in [SocketUser.same, .other] {
                let slice = result.cases.filter { $0.matrixCase.transport == transport && $0.matrixCase.secondUser == user }
                guard !slice.isEmpty else { continue }
                let title = sliceTitle(transport, user)
                var section = Section(title: title, transport: transport, user: user, grids: [])
                for firstOptions in MatrixOptions.allCases {
                    for secondOptions in MatrixOptions.allCases {
                        let grid = slice.filter { $0.matrixCase.firstOptions == firstOptions && $0.matrixCase.secondOptions == secondOptions }
                        guard !grid.isEmpty else { continue }
                        section.grids.append((gridTitle(transport, user, firstOptions, secondOptions), firstOptions, secondOptions, grid))
                    }
                }
                sections.append(section)
            }
        }
        return sections
    }

    /// One grid's heading, and so (through `anchor`) the link to it from REPORT.md.
    static func gridTitle(_ transport: Transport, _ user: SocketUser, _ first: MatrixOptions, _ second: MatrixOptions) -> String {
        "\(sliceTitle(transport, user)): first \(optionWords(first)), second \(optionWords(second))"
    }

    static func sliceTitle(_ transport: Transport, _ user: SocketUser) -> String {
        "\(transport.rawValue), second socket \(user == .same ? "same user" : "another user (uid 65534)")"
    }

    /// The options as someone would search for them: the real option names.
    static func optionWords(_ options: MatrixOptions) -> String {
        options == .none ? "none" : options.names.joined(separator: " and ")
    }

    /// The anchor GitHub derives from a heading: lower case; every character that is not a
    /// letter, digit, space, hyphen or underscore dropped; each space a hyphen.
    public static func anchor(_ heading: String) -> String {
        String(heading.lowercased().unicodeScalars.compactMap { scalar -> Character? in
            if scalar == " " { return "-" }
            if scalar == "-" || scalar == "_" || CharacterSet.alphanumerics.contains(scalar) { return Character(scalar) }
            return nil
        })
    }

    /// One table for the 64 grids: a row per transport, user and first options, a column
    /// per second options, so that a reader finds a configuration in two glances.
    static func contents(_ sections: [Section], pictures: Bool, audit: Bool = false) -> String {
        var lines = ["## Contents", ""]
        if pictures { lines.append("- [\(picturesTitle)](#\(anchor(picturesTitle)))") }
        lines.append("- [\(takeoverTitle)](#\(anchor(takeoverTitle)))")
        if audit { lines.append("- [\(auditTitle)](#\(anchor(auditTitle)))") }
        lines.append("- The grids, one per transport, user and option pair:")
        lines.append("")
        let seconds = MatrixOptions.allCases.filter { second in sections.contains { $0.grids.contains { $0.secondOptions == second } } }
        lines.append("| Grids | " + seconds.map { "second \($0.short)" }.joined(separator: " | ") + " |")
        lines.append("|---|" + String(repeating: "---|", count: seconds.count))
        for section in sections {
            for first in MatrixOptions.allCases {
                let row = section.grids.filter { $0.firstOptions == first }
                guard !row.isEmpty else { continue }
                let cells = seconds.map { second in
                    row.first { $0.secondOptions == second }.map { "[\(second.short)](#\(anchor($0.title)))" } ?? ""
                }
                lines.append("| [\(section.transport.rawValue), \(section.user == .same ? "same user" : "uid 65534")](#\(anchor(section.title))), first \(first.short) | " + cells.joined(separator: " | ") + " |")
            }
        }
        lines.append("")
        return lines.joined(separator: "\n")
    }

    /// Rows: the first socket's address; columns: the second's.
    static func grid(_ cases: [MatrixCaseOutcome], title: String) -> String {
        var firsts: [MatrixEndpoint] = []
        var seconds: [MatrixEndpoint] = []
        for outcome in cases {
            if !firsts.contains(outcome.matrixCase.first) { firsts.append(outcome.matrixCase.first) }
            if let second = outcome.matrixCase.second, !seconds.contains(second) { seconds.append(second) }
        }
        var lines = ["### \(title)", "", "| first ↓ · second → | " + seconds.map { "`\($0.label)`" }.joined(separator: " | ") + " |",
                     "|---|" + String(repeating: "---|", count: seconds.count)]
        for first in firsts {
            let cells = seconds.map { second in
                cases.first { $0.matrixCase.first == first && $0.matrixCase.second == second }.map { "`\($0.cell)`" } ?? ""
            }
            lines.append("| `\(first.label)` | " + cells.joined(separator: " | ") + " |")
        }
        lines.append("")
        return lines.joined(separator: "\n")
    }

    static let auditTitle = "The audit against every case"

    /// How the audit's definitions are scored, as MATRIX.md states them.
    public static let auditRule = "With `--audit`, the lab host runs the audit of the case's port (as `hijack-lab audit --port PORT` would) in every case in which both sockets bound (and listen), while they are live, and the case's JSON keeps its findings; with one socket nothing can be taken. **Takes:** one socket takes traffic from the other when it receives traffic, to some destination, that the other socket receives when alone (its baseline). The destinations are 127.0.0.1, ::1, the lab interface and `localhost`. `localhost` is not probed by name: a client resolves it to ::1, then 127.0.0.1, and goes on to 127.0.0.1 only when ::1 refuses it, so a `localhost` client receives what the ::1 probe received, or, where every ::1 probe was refused, what the 127.0.0.1 probe received (`MatrixCaseOutcome.localhost`, the one place this is derived). **Recall:** every case in which either socket takes from the other must have an `interception` finding on its port (another uid) or a `shadowing` one (same uid); two sockets of one uid on one address may instead have a `load-balancing` finding that names both. **Precision:** an interception, shadowing or load-balancing finding in a case where neither socket takes anything from the other is a false alarm. Cases whose sockets are of different address families (v4-mapped counts as IPv4, dual-stack `[::]` as both) are left out of the precision count, since the audit may warn about a family split as policy."

    /// Recall and precision over every audited case, with each miss and false alarm.
    static func auditSection(_ score: MatrixAuditScore) -> String {
        var lines = ["## \(auditTitle)", "", auditRule, ""]
        lines.append("- Recall: **\(percent(score.recall))** (\(score.caught) of \(score.takes) cases in which a socket takes traffic from the other are flagged).")
        lines.append("- Precision: **\(percent(score.precision))** (\(score.falseAlarmCount) false alarms among \(score.alarms) flagged cases; \(score.crossFamily) flagged cases of two address families left out, \(score.crossFamilyWithoutTake) of them with no take).")
        lines.append("- Audited cases: \(score.audited).")
        lines.append("")
        lines.append(score.misses.isEmpty ? "No case was missed." : "Missed:")
        lines.append("")
        for miss in score.misses { lines.append("- " + miss) }
        if !score.misses.isEmpty { lines.append("") }
        lines.append(score.falseAlarms.isEmpty ? "No false alarm." : "False alarms:")
        lines.append("")
        for alarm in score.falseAlarms { lines.append("- " + alarm) }
        if !score.falseAlarms.isEmpty { lines.append("") }
        return lines.joined(separator: "\n")
    }

    /// A share as a percentage with one decimal, rounded down so that 100% means all of it.
    public static func percent(_ share: Double) -> String {
        let tenths = (share * 1000 + 1e-9).rounded(.down) / 10
        return tenths.formatted(.number.precision(.fractionLength(1))) + "%"
    }

    /// The short list: combinations in which the second socket takes traffic from the first.
    /// One row per transport, user, address pair and way (all of it or a share), with the
    /// option pairs and one line on why.
    static func takeovers(_ result: MatrixResult) -> String {
        var lines = ["## \(takeoverTitle)", ""]
        let found = result.takeovers
        guard !found.isEmpty else {
            let unknown = result.baselines.contains { $0.status != .ran }
            lines.append(unknown ? "No takeover was seen among the first sockets whose baseline ran; see the count of failed baselines above."
                                 : "In no case did the second socket receive traffic that belongs to the first.")
            lines.append("")
            return lines.joined(separator: "\n")
        }
        lines.append(takeoverRule + " Options are written first / second; `any` is every option that ran, `REUSEPORT set` that option with or without the other.")
        lines.append("")
        lines.append("| Transport | Second as | First | Second | Takes | How | With options | Why |")
        lines.append("|---|---|---|---|---|---|---|---|")
        let options = MatrixOptions.allCases.filter { option in result.cases.contains { $0.matrixCase.firstOptions == option || $0.matrixCase.secondOptions == option } }
        var order: [String] = []
        var rows: [String: (takeover: MatrixTakeover, destinations: Set<String>, gaps: Set<String>, pairs: [(MatrixOptions, MatrixOptions)])] = [:]
        for takeover in found {
            let c = takeover.outcome.matrixCase
            let key = "\(c.transport.rawValue)|\(c.secondUser.rawValue)|\(c.first.label)|\(c.second?.label ?? "")|\(takeover.shared)"
            if rows[key] == nil { order.append(key); rows[key] = (takeover, [], [], []) }
            rows[key]!.destinations.formUnion(takeover.destinations)
            rows[key]!.gaps.formUnion(takeover.familyGaps)
            rows[key]!.pairs.append((c.firstOptions, c.secondOptions))
        }
        // The list reads like the grids: transport, user, first address, second address.
        let position = { (key: String) -> [Int] in
            let c = rows[key]!.takeover.outcome.matrixCase
            let index = { (endpoint: MatrixEndpoint?) in endpoint.flatMap { MatrixEndpoint.standard.firstIndex(of: $0) } ?? MatrixEndpoint.standard.count }
            return [Transport.allCases.firstIndex(of: c.transport) ?? 0, c.secondUser == .same ? 0 : 1, index(c.first), index(c.second), rows[key]!.takeover.shared ? 1 : 0]
        }
        for key in order.sorted(by: { position($0).lexicographicallyPrecedes(position($1)) }) {
            let row = rows[key]!
            let c = row.takeover.outcome.matrixCase
            let second = c.second ?? c.first
            let taken = result.destinations.filter { row.destinations.contains($0) }.map { "`\($0)`" }.joined(separator: ", ")
            let why = reason(first: c.first, second: second, direct: result.destinations.filter { row.destinations.contains($0) && !row.gaps.contains($0) },
                             gaps: result.destinations.filter { row.gaps.contains($0) }, shared: row.takeover.shared)
            lines.append("| \(c.transport.rawValue) | \(c.secondUser == .same ? "same user" : "uid 65534") | `\(c.first.label)` | `\(second.label)` | \(taken) | "
                + "\(row.takeover.shared ? "a share" : "all of it") | \(optionPairs(row.pairs, options: options)) | \(why) |")
        }
        lines.append("")
        return lines.joined(separator: "\n")
    }

    /// Option pairs as few products as possible: `any / any`, `REUSEPORT set / REUSEPORT set`
    /// (that option, with or without the other), else the groups one by one.
    static func optionPairs(_ pairs: [(MatrixOptions, MatrixOptions)], options: [MatrixOptions]) -> String {
        let present = Set(pairs.map { "\($0.0.rawValue) \($0.1.rawValue)" })
        let has = { (first: MatrixOptions, second: MatrixOptions) in present.contains("\(first.rawValue) \(second.rawValue)") }
        // Groups of outer options that pair with the same set of inner ones: each group is one product.
        func products(byFirst: Bool) -> [(outer: [MatrixOptions], inner: [MatrixOptions])] {
            var groups: [(outer: [MatrixOptions], inner: [MatrixOptions])] = []
            for outer in options {
                let inner = options.filter { byFirst ? has(outer, $0) : has($0, outer) }
                guard !inner.isEmpty else { continue }
                if let index = groups.firstIndex(where: { $0.inner == inner }) { groups[index].outer.append(outer) } else { groups.append(([outer], inner)) }
            }
            return groups
        }
        // UDP lets sockets share a port when both set SO_REUSEADDR, or both SO_REUSEPORT: one phrase says it.
        let common = options.flatMap { first in options.filter { !Set(first.names).isDisjoint(with: $0.names) }.map { "\(first.rawValue) \($0.rawValue)" } }
        if options.count == 4 && present == Set(common) { return "both set one same option" }
        let byFirst = products(byFirst: true)
        let bySecond = products(byFirst: false)
        let groups = bySecond.count < byFirst.count ? bySecond.map { ($0.inner, $0.outer) } : byFirst.map { ($0.outer, $0.inner) }
        return groups.map { "\(optionSet($0.0, of: options)) / \(optionSet($0.1, of: options))" }.joined(separator: "; ")
    }

    static func optionSet(_ set: [MatrixOptions], of options: [MatrixOptions]) -> String {
        if Set(set) == Set(options) && options.count > 1 { return "any" }
        if options.count == 4 {
            switch Set(set) {
            case [.reusePort, .both]: return "REUSEPORT set"
            case [.reuseAddress, .both]: return "REUSEADDR set"
            case [.none, .reuseAddress]: return "no REUSEPORT"
            case [.none, .reusePort]: return "no REUSEADDR"
            case [.reuseAddress, .reusePort, .both]: return "any but none"
            default: break
            }
        }
        return set.map(\.short).joined(separator: " or ")
    }

    /// One line on why the second socket got the first's traffic. The kernel picks, per
    /// packet, the socket whose address matches best (an exact address over a wildcard, an
    /// IPv4 socket over an IPv6 one for IPv4 traffic), and spreads over a SO_REUSEPORT group
    /// only among sockets that match equally well.
    static func reason(first: MatrixEndpoint, second: MatrixEndpoint, direct: [String], gaps: [String], shared: Bool) -> String {
        var clauses: [String] = []
        for gap in gaps {
            let family: String
            switch first.host {
            case "::" where first.v6only: family = "is IPv6-only (V6ONLY)"
            case "::1": family = "is IPv6-only"
            case "0.0.0.0", "127.0.0.1": family = "is IPv4-only"
            case "::ffff:127.0.0.1": family = "is IPv4-mapped (IPv4 only)"
            default: family = "does not receive \(gap) even alone"
            }
            clauses.append("family gap: the first socket \(family), so \(gap) was free for anyone, and a client resolving `localhost` tries both")
        }
        if !direct.isEmpty {
            let list = direct.joined(separator: ", ")
            let wildcard = { (endpoint: MatrixEndpoint) in endpoint.host == "0.0.0.0" || endpoint.host == "::" }
            if first.host == second.host {
                clauses.append(shared ? "same address in one SO_REUSEPORT group: the kernel spreads \(list) over both sockets"
                                      : "same address, bound twice through the reuse options: the kernel delivered \(list) to the second, newer socket")
            } else if wildcard(first) && !wildcard(second) {
                clauses.append("more specific address: `\(second.label)` matches \(list) exactly, and the kernel prefers it to the first's wildcard")
            } else if first.host == "::" && second.host == "0.0.0.0" {
                clauses.append("IPv4 over dual-stack: for \(list) the kernel prefers the second's IPv4 socket to the first's `[::]`")
            } else if first.host == "::ffff:127.0.0.1" && second.host == "127.0.0.1" {
                clauses.append("IPv4 over IPv4-mapped: for \(list) the kernel prefers the second's IPv4 socket to the first's `::ffff:127.0.0.1`")
            } else {
                clauses.append("the second socket matches \(list) as well as the first, and the kernel delivered to it" + (shared ? " in part" : ""))
            }
        }
        return clauses.joined(separator: "; ")
    }
}
