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
    /// How the audit's predictions, from each first socket alone, agree with the kernel.
    public var predictions: MatrixPredictionScore? = nil

    /// 0 when every case ran or was skipped with a reason, 1 when any could not finish.
    public var exitStatus: Int32 { cases.contains { $0.status == .error } || baselines.contains { $0.status == .error } ? 1 : 0 }

    /// A client that resolves a name tries each of its addresses: `localhost` both loopbacks,
    /// a host name with an A and an AAAA record both of the interface's addresses. So a
    /// service that answers on one of a pair is reached, for those clients, through either:
    /// whoever holds the other one receives some of its clients (a family gap).
    public static let familyTwin = [
        "127.0.0.1": "::1", "::1": "127.0.0.1",
        AddressSymbol.labInterface.rawValue: AddressSymbol.labInterface6.rawValue,
        AddressSymbol.labInterface6.rawValue: AddressSymbol.labInterface.rawValue,
    ]

    static func baselineKey(_ matrixCase: MatrixCase) -> String {
        "\(matrixCase.transport.rawValue) \(matrixCase.first.label) \(matrixCase.firstOptions.rawValue)"
    }

    /// What each first socket receives alone, keyed by transport, address and options; a
    /// first socket whose baseline did not run is absent, since nothing is known of it.
    var aloneReceives: [String: Set<String>] {
        var alone: [String: Set<String>] = [:]
        // A baseline that lost a destination knows nothing of it: as if it had not run.
        for baseline in baselines where baseline.status == .ran && !baseline.deliveries.contains(where: \.isLost) {
            alone[Self.baselineKey(baseline.matrixCase)] = Set(baseline.deliveries.filter { $0.first > 0 }.map(\.destination))
        }
        return alone
    }

    /// Cases in which the second socket received traffic that belongs to the first: to a
    /// destination the first, alone, receives, or to that destination's other-family twin.
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
            } else if let twin = familyTwin[delivery.destination], own.contains(twin) {
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
        if let takeover = takeover(outcome, alone: alone) {
            // Only the other family, which the first socket left open: a gap, not its own
            // address taken. A case that takes both is a take-over.
            if Set(takeover.destinations).isSubset(of: takeover.familyGaps) { return .familyGap }
            return takeover.shared ? .shares : .takes
        }
        // A destination whose datagrams were all lost may have gone to either socket.
        if outcome.deliveries.contains(where: \.isLost) { return .incomplete }
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
    /// The second takes only destinations of the other address family, which the first
    /// socket does not serve itself (0.0.0.0 beside ::1): a gap the service left, not its own
    /// address taken.
    case familyGap = "family-gap"
    case keeps
    case bindRefused = "bind-refused"
    case listenRefused = "listen-refused"
    case incomplete

    /// One letter per class, so that no reader depends on telling colours apart.
    public var letter: String {
        switch self {
        case .takes: "A"
        case .shares: "S"
        case .familyGap: "G"
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
        case .familyGap: "second takes the other family only (a gap)"
        case .keeps: "first keeps its traffic"
        case .bindRefused: "second bind refused"
        case .listenRefused: "second listen refused"
        case .incomplete: "skipped, could not finish, or lost"
        }
    }
}
