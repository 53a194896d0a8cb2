import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation

/// One column of KERNELS.md: a kernel and what the lab saw on it.
struct KernelColumn: Codable, Sendable {
    /// Short name for headings: the upstream version when known (6.1.192), else the release.
    var label: String
    /// `uname -r`.
    var release: String
    /// /proc/version.
    var procVersion: String?
    /// The Debian package's version, when it came from one.
    var packageVersion: String?
    var isHost: Bool
    /// How it ran: "host", "qemu, TCG".
    var how: String
    var bootSeconds: Double?
    var runSeconds: Double?
    /// Outcome per key ("scenario NAME", "matrix tcp other ::1 none / [::] both", …), first run.
    var outcomes: [String: String] = [:]
    /// The outcomes of the re-runs of differing keys, in order.
    var reruns: [String: [String]] = [:]
    /// Keys whose job could not finish.
    var problems: [String] = []

    /// The upstream version a Debian /proc/version names: "… Debian 6.1.192-2 (2025-…)" → 6.1.192.
    static func upstreamVersion(procVersion: String?, release: String) -> String {
        // The last "Debian " is the kernel's; an earlier one names the compiler's version.
        if let text = procVersion, let range = text.range(of: "Debian ", options: .backwards) {
            let rest = text[range.upperBound...]
            let version = rest.prefix { $0.isNumber || $0 == "." }
            if version.split(separator: ".").count >= 2 { return String(version) }
        }
        let version = release.prefix { $0.isNumber || $0 == "." }
        return version.isEmpty ? release : String(version)
    }
}

/// Turns the lab's JSON into comparable outcomes: one short text per scenario and per matrix
/// cell, which is equal on two kernels exactly when the kernel did the same thing. Counts that
/// depend on chance (how SO_REUSEPORT spreads connections) are left out; who received is kept.
enum OutcomeKeys {
    static func scenarios(_ json: [UInt8]) -> [String: String]? {
        guard let report = try? JSONDecoder().decode(LabReport.self, from: Data(json)) else { return nil }
        var keys: [String: String] = [:]
        for outcome in report.scenarios { keys["scenario " + outcome.name] = signature(outcome) }
        return keys
    }

    static func signature(_ outcome: ScenarioOutcome) -> String {
        switch outcome.status {
        case .skipped: return "skipped"
        case .error: return "could not finish"
        case .ran: break
        }
        var parts: [String] = [outcome.verdict?.rawValue ?? "no verdict"]
        let binds = outcome.sockets.map { socket in
            var text = "\(socket.id) bind \(socket.bind)"
            if socket.listens, socket.listen != "ok", socket.listen != "not-applicable" { text += " listen \(socket.listen)" }
            return text
        }
        parts.append(binds.joined(separator: ", "))
        let probes = outcome.probes.filter(\.ran).map { probe in
            let receivers = probe.receivedBy.filter { $0.value > 0 }.keys.sorted()
            return "\(probe.id) → " + (receivers.isEmpty ? "nobody" : receivers.joined(separator: "+"))
        }
        if !probes.isEmpty { parts.append(probes.joined(separator: ", ")) }
        return parts.joined(separator: "; ")
    }

    static func matrix(_ json: [UInt8]) -> [String: String]? {
        guard let result = try? JSONDecoder().decode(MatrixResult.self, from: Data(json)) else { return nil }
        var keys: [String: String] = [:]
        for outcome in result.cases + result.baselines {
            keys[key(outcome.matrixCase)] = cellText(outcome, destinations: result.destinations)
        }
        return keys
    }

    static func key(_ matrixCase: MatrixCase) -> String {
        let first = "\(matrixCase.first.label) \(matrixCase.firstOptions.rawValue)"
        guard let second = matrixCase.second else { return "matrix \(matrixCase.transport.rawValue) alone \(first)" }
        return "matrix \(matrixCase.transport.rawValue) \(matrixCase.secondUser.rawValue) \(first) / \(second.label) \(matrixCase.secondOptions.rawValue)"
    }

    /// What the case did, in words: a refused bind or listen, then who received the probes to
    /// each destination (V first, A second, S both, - nobody, X lost, with why nobody). Deliveries are
    /// kept even when the second bind failed: the first socket must still receive then, and a
    /// probe that reached nobody is exactly what the watched cell is about.
    static func cellText(_ outcome: MatrixCaseOutcome, destinations: [String]) -> String {
        switch outcome.status {
        case .skipped: return "skipped"
        case .error: return "could not finish"
        case .ran: break
        }
        var parts: [String] = []
        let tcpListens = outcome.matrixCase.transport == .tcp && outcome.matrixCase.listens
        if outcome.firstBind != "ok" { parts.append("first bind \(outcome.firstBind)") }
        else if tcpListens, outcome.firstListen != "ok" { parts.append("first listen \(outcome.firstListen)") }
        if outcome.matrixCase.second != nil {
            if outcome.secondBind != "ok" { parts.append("second bind \(outcome.secondBind)") }
            else if tcpListens, outcome.secondListen != "ok" { parts.append("second listen \(outcome.secondListen)") }
        }
        let deliveries = outcome.deliveries.map { delivery -> String in
            var text = "\(delivery.destination) \(delivery.letter)"
            if delivery.letter == "-" || delivery.letter == "X" {
                if delivery.lost > 0 { text += " (lost)" } else if delivery.refused > 0 { text += " (refused)" } else if delivery.nobody > 0 { text += " (no answer)" }
            }
            return text
        }
        if !deliveries.isEmpty { parts.append(deliveries.joined(separator: ", ")) }
        return parts.joined(separator: "; ")
    }

    /// The matrix filter that runs one key again (a few neighbouring cases come along).
    static func matrixArguments(forKey key: String) -> [String]? {
        let words = key.split(separator: " ").map(String.init)
        guard words.count >= 4, words[0] == "matrix" else { return nil }
        if words[2] == "alone", words.count == 5 {
            return ["--transport", words[1], "--addresses", words[3], "--options", words[4], "--users", "same"]
        }
        guard words.count == 8, words[5] == "/" else { return nil }
        let addresses = words[3] == words[6] ? words[3] : words[3] + "," + words[6]
        let options = words[4] == words[7] ? words[4] : words[4] + "," + words[7]
        return ["--transport", words[1], "--addresses", addresses, "--options", options, "--users", words[2]]
    }
}

/// The verdict on one key that differed in the first run.
struct KernelDifference: Codable, Sendable {
    enum Kind: String, Codable, Sendable {
        /// Every kernel gave its own outcome on every run, and they differ.
        case confirmed
        /// Some kernel gave different outcomes across runs.
        case unstable
        /// Every kernel gave one and the same outcome every time (a watched case that agreed).
        case same
    }

    var key: String
    var kind: Kind
    /// Per column label: the outcome (confirmed), or each outcome with its count (unstable).
    var outcomes: [String: [String: Int]]
    var runs: Int
}

enum KernelComparison {
    /// The keys whose first-run outcome is not the same on every column (a key missing on one
    /// column, because its job failed there, is not compared).
    static func differingKeys(_ columns: [KernelColumn]) -> [String] {
        guard let first = columns.first else { return [] }
        return first.outcomes.keys.filter { key in
            let values = columns.compactMap { $0.outcomes[key] }
            return values.count == columns.count && Set(values).count > 1
        }.sorted()
    }

    /// The keys that ran on every column with one outcome.
    static func sameKeys(_ columns: [KernelColumn]) -> [String] {
        guard let first = columns.first else { return [] }
        return first.outcomes.keys.filter { key in
            let values = columns.compactMap { $0.outcomes[key] }
            return values.count == columns.count && Set(values).count == 1
        }.sorted()
    }

    static func classify(_ columns: [KernelColumn], keys: [String]) -> [KernelDifference] {
        keys.map { key in
            var outcomes: [String: [String: Int]] = [:]
            var stable = true
            var runs = Int.max
            for column in columns {
                let all = [column.outcomes[key]].compactMap { $0 } + (column.reruns[key] ?? [])
                runs = min(runs, all.count)
                var counts: [String: Int] = [:]
                for outcome in all { counts[outcome, default: 0] += 1 }
                if counts.count != 1 || all.count < 2 { stable = false }
                outcomes[column.label] = counts
            }
            let distinct = Set(outcomes.values.compactMap { $0.count == 1 ? $0.keys.first : nil })
            let kind: KernelDifference.Kind = !stable ? .unstable : distinct.count > 1 ? .confirmed : .same
            return KernelDifference(key: key, kind: kind, outcomes: outcomes, runs: runs == .max ? 0 : runs)
        }
    }
}
