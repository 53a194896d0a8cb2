import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation

/// An address a matrix socket binds: a host, and whether the socket sets IPV6_V6ONLY.
public struct MatrixEndpoint: Codable, Sendable, Hashable, CustomStringConvertible {
    /// How grids and filters name it: "0.0.0.0", "[::]", "[::]v6only", "lab-interface"...
    public var label: String
    /// The numeric address, or the symbol "lab-interface" that the topology resolves.
    public var host: String
    public var v6only: Bool

    public init(label: String, host: String, v6only: Bool = false) {
        self.label = label
        self.host = host
        self.v6only = v6only
    }

    public var description: String { label }

    /// The addresses of the matrix, in grid order: the lab interface's on both families last.
    public static let standard: [MatrixEndpoint] = [
        MatrixEndpoint(label: "0.0.0.0", host: "0.0.0.0"),
        MatrixEndpoint(label: "127.0.0.1", host: "127.0.0.1"),
        MatrixEndpoint(label: "[::]", host: "::"),
        MatrixEndpoint(label: "[::]v6only", host: "::", v6only: true),
        MatrixEndpoint(label: "::1", host: "::1"),
        MatrixEndpoint(label: "::ffff:127.0.0.1", host: "::ffff:127.0.0.1"),
        MatrixEndpoint(label: AddressSymbol.labInterface.rawValue, host: AddressSymbol.labInterface.rawValue),
        MatrixEndpoint(label: AddressSymbol.labInterface6.rawValue, host: AddressSymbol.labInterface6.rawValue),
    ]

    /// The lab interface's addresses, which exist only in the netns topology.
    public static let labInterfaceHosts: Set<String> = [AddressSymbol.labInterface.rawValue, AddressSymbol.labInterface6.rawValue]

    /// Whether the address is one of the lab interface's, which the topology resolves.
    public var isLabInterface: Bool { Self.labInterfaceHosts.contains(host) }

    /// The numeric address a socket binds: the lab interface's symbols resolved (netns only).
    public var numericHost: String { Self.numeric(host) }

    /// A matrix address or destination label as a number: `lab-interface` is 198.51.100.1,
    /// `lab-interface6` 2001:db8::1; anything else is already one (or `localhost`).
    public static func numeric(_ label: String) -> String {
        switch label {
        case AddressSymbol.labInterface.rawValue: LabAddresses.hostV4
        case AddressSymbol.labInterface6.rawValue: LabAddresses.hostV6
        default: label
        }
    }
}

/// The reuse options one matrix socket sets.
public enum MatrixOptions: String, Codable, Sendable, CaseIterable {
    case none
    case reuseAddress = "SO_REUSEADDR"
    case reusePort = "SO_REUSEPORT"
    case both

    public var names: [String] {
        switch self {
        case .none: []
        case .reuseAddress: ["SO_REUSEADDR"]
        case .reusePort: ["SO_REUSEPORT"]
        case .both: ["SO_REUSEADDR", "SO_REUSEPORT"]
        }
    }

    /// Short form for grid headings.
    public var short: String {
        switch self {
        case .none: "none"
        case .reuseAddress: "REUSEADDR"
        case .reusePort: "REUSEPORT"
        case .both: "REUSEADDR+REUSEPORT"
        }
    }
}

/// One combination: a first socket (the victim's place), and optionally a second one.
public struct MatrixCase: Codable, Sendable, Hashable {
    public var transport: Transport
    public var first: MatrixEndpoint
    public var firstOptions: MatrixOptions
    public var second: MatrixEndpoint?
    public var secondOptions: MatrixOptions
    public var secondUser: SocketUser
    /// false for the bind-only path, as the kernel's selftest runs it.
    public var listens: Bool
    public var probes: Bool
    /// `try`'s fix: more addresses the service binds beside `first`, with the same options,
    /// one socket (and process) each, all of them the first. Absent in the matrix.
    public var service: [MatrixEndpoint]? = nil
    /// `try --device`: the first socket's SO_BINDTODEVICE. Absent in the matrix.
    public var firstDevice: String? = nil

    public init(transport: Transport, first: MatrixEndpoint, firstOptions: MatrixOptions, second: MatrixEndpoint?, secondOptions: MatrixOptions = .none,
                secondUser: SocketUser = .same, listens: Bool = true, probes: Bool = true) {
        self.transport = transport
        self.first = first
        self.firstOptions = firstOptions
        self.second = second
        self.secondOptions = secondOptions
        self.secondUser = secondUser
        self.listens = listens
        self.probes = probes
    }

    /// Every address the first (the service) binds: `first`, then `service`.
    public var firstSockets: [MatrixEndpoint] { [first] + (service ?? []) }
}

/// Who received the probes to one destination in one case.
public struct MatrixDelivery: Codable, Sendable, Equatable {
    /// "127.0.0.1", "::1" (from the host client), "lab-interface" or "lab-interface6" (the lab
    /// interface's IPv4 and IPv6 addresses, from the peer).
    public var destination: String
    public var sent: Int
    public var first: Int
    public var second: Int
    /// Refused, unreachable or timed out: nobody received.
    public var nobody: Int
    /// Probes nobody answered within the deadline: UDP datagrams, though each was sent
    /// `ProbeSession.datagramTries` times, and TCP connects or identity lines that timed out.
    /// Not the same as `nobody`: in the lab a refusal is immediate, and silence says only
    /// that the answer did not come in time (a loaded machine), not who would have given it.
    public var lost: Int
    /// Of `nobody`, those refused or unreachable at once: the errors on which a client that
    /// resolved a name goes on to the name's next address.
    public var refused: Int = 0
    /// UDP: datagrams sent to this destination, every try of every probe (0 for TCP). More
    /// than `sent` means some probe was answered only after a resend, or not at all.
    public var tries: Int = 0

    /// Some probe went unanswered until its deadline, and what did arrive does not settle the
    /// letter: nobody received, or one socket only, where the lost probe might have reached
    /// the other (a share, `S`). Who would have received it is unknown, which `-` (refused
    /// at once) or `V`/`A` would not say. A share seen is a share, whatever was lost.
    public var isLost: Bool { lost > 0 && !(first > 0 && second > 0) }

    /// V, A, S, - or X (lost) for this destination.
    public var letter: String {
        if isLost { return "X" }
        return switch (first > 0, second > 0) {
        case (true, true): "S"
        case (false, true): "A"
        case (true, false): "V"
        case (false, false): "-"
        }
    }
}

public struct MatrixCaseOutcome: Codable, Sendable, Equatable {
    public var matrixCase: MatrixCase
    public var status: RunStatus
    public var skipReason: String?
    public var error: String?
    public var port: UInt16?
    public var firstBind = SyscallResult.notAttempted
    public var firstListen = SyscallResult.notAttempted
    public var secondBind = SyscallResult.notAttempted
    public var secondListen = SyscallResult.notAttempted
    public var deliveries: [MatrixDelivery] = []
    /// What the audit said in the lab host while this case's sockets were live (`--audit`).
    public var audit: MatrixCaseAudit?
    /// What the audit predicted this case's second socket takes, from the first alone,
    /// before the second bound (`--audit`).
    public var prediction: MatrixPrediction?

    public init(matrixCase: MatrixCase, status: RunStatus, skipReason: String? = nil) {
        self.matrixCase = matrixCase
        self.status = status
        self.skipReason = skipReason
        let notListening: SyscallResult = matrixCase.transport == .udp ? .notApplicable : .notAttempted
        firstListen = notListening
        secondListen = notListening
    }

    /// The grid cell: `B` or `L` when the second socket failed, `F` when the first did,
    /// otherwise one letter per destination (V, A, S or -).
    public var cell: String {
        guard status == .ran else { return status == .skipped ? "·" : "E" }
        if firstBind != .ok || (matrixCase.transport == .tcp && matrixCase.listens && firstListen != .ok) { return "F" }
        guard matrixCase.second != nil else { return deliveries.map(\.letter).joined() }
        if secondBind != .ok { return "B" }
        if matrixCase.transport == .tcp && matrixCase.listens && secondListen != .ok { return "L" }
        return deliveries.map(\.letter).joined()
    }
}

/// Which combinations to run: `--transport`, `--addresses`, `--options`, `--users`.
public struct MatrixFilter: Sendable {
    public var transports: [Transport] = Transport.allCases
    public var addresses: [MatrixEndpoint] = MatrixEndpoint.standard
    public var options: [MatrixOptions] = MatrixOptions.allCases
    public var users: [SocketUser] = [.same, .other]
    /// `--first` and `--second`: each socket's own choice, on top of the lists above (which
    /// filter both sockets at once). nil lets every address and option set through.
    public var first: [SocketChoice]?
    public var second: [SocketChoice]?

    /// One socket's bind as `--first` and `--second` write it: `ADDRESS` or `ADDRESS/OPTIONS`,
    /// e.g. `[::]/SO_REUSEPORT`; without options, every option set.
    public struct SocketChoice: Sendable, Equatable {
        public var address: MatrixEndpoint
        public var options: MatrixOptions?

        public init(address: MatrixEndpoint, options: MatrixOptions? = nil) {
            self.address = address
            self.options = options
        }

        /// `ADDRESS[/OPTIONS]`, or nil. The options are `none`, `SO_REUSEADDR`, `SO_REUSEPORT`,
        /// `both` (or their short forms).
        public init?(parsing text: String) {
            let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard let address = MatrixEndpoint.standard.first(where: { $0.label == parts[0] }) else { return nil }
            self.address = address
            if parts.count == 2 {
                guard let options = MatrixOptions(rawValue: parts[1]) ?? MatrixOptions.allCases.first(where: { $0.short == parts[1] }) else { return nil }
                self.options = options
            }
        }

        func admits(_ endpoint: MatrixEndpoint, _ set: MatrixOptions) -> Bool {
            address == endpoint && (options == nil || options == set)
        }
    }

    public init() {}

    private func admits(_ choices: [SocketChoice]?, _ endpoint: MatrixEndpoint, _ set: MatrixOptions) -> Bool {
        choices?.contains { $0.admits(endpoint, set) } ?? true
    }

    /// Every case the filter selects, in grid order.
    public var cases: [MatrixCase] {
        var cases: [MatrixCase] = []
        for transport in transports {
            for user in users {
                for firstOptions in options {
                    for secondOptions in options {
                        for first in addresses where admits(self.first, first, firstOptions) {
                            for second in addresses where admits(self.second, second, secondOptions) {
                                cases.append(MatrixCase(transport: transport, first: first, firstOptions: firstOptions, second: second,
                                                        secondOptions: secondOptions, secondUser: user))
                            }
                        }
                    }
                }
            }
        }
        return cases
    }

    /// One first socket alone per transport, address and options: what it receives with
    /// nobody beside it, the baseline for "takes traffic from the first".
    public var baselines: [MatrixCase] {
        transports.flatMap { transport in
            options.flatMap { options in
                addresses.filter { admits(first, $0, options) }.map { MatrixCase(transport: transport, first: $0, firstOptions: options, second: nil) }
            }
        }
    }

    /// Parses a comma-separated list, naming what was expected on error.
    /// A list flag whose value names something that is not among the allowed ones.
    public struct ListError: Error, Sendable {
        public var reason: String
    }

    public static func parseList<T>(_ text: String, flag: String, parse: (String) -> T?, allowed: [String]) -> Result<[T], ListError> {
        var values: [T] = []
        for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            guard let value = parse(item) else {
                return .failure(.init(reason: "\(flag): \"\(item)\" is not one of \(allowed.joined(separator: ", "))"))
            }
            values.append(value)
        }
        return values.isEmpty ? .failure(.init(reason: "\(flag) needs at least one of \(allowed.joined(separator: ", "))")) : .success(values)
    }
}

/// The audit of one case, read while both sockets were live: its findings on the case's port.
public struct MatrixCaseAudit: Codable, Sendable, Equatable {
    public var findings: [MatrixAuditFinding]
    /// Why the audit could not be read, if so.
    public var error: String?

    public init(findings: [MatrixAuditFinding], error: String? = nil) {
        self.findings = findings
        self.error = error
    }
}

/// The audit's prediction for one case, made while the first socket was alone on its port:
/// its options as read from the socket itself, and which of the case's destinations its
/// `takeable` finding says the case's second bind, as its user, would take.
public struct MatrixPrediction: Codable, Sendable, Equatable {
    /// The first socket's options, as the audit's table shows them ("reuseport", "-").
    public var options: String
    /// Destinations by the matrix's labels ("127.0.0.1", "localhost", "lab-interface").
    public var takes: [String]
    /// Why the audit could not predict, if so (the options could not be read).
    public var unknown: String?

    public init(options: String, takes: [String], unknown: String? = nil) {
        self.options = options
        self.takes = takes
        self.unknown = unknown
    }
}

/// How the audit's predictions agree with what the second sockets took (`matrix --audit`).
public struct MatrixPredictionScore: Codable, Sendable, Equatable {
    public struct Destination: Codable, Sendable, Equatable {
        public var destination: String
        /// Cases in which this destination was predicted and probed.
        public var cases: Int
        public var agree: Int
        /// Cases in which the second socket took it, and in which the audit said it would.
        public var taken: Int
        public var predicted: Int
    }

    /// Cases with a prediction whose every probe was answered.
    public var cases: Int
    /// Cases left out: a prediction that could not be made, or a probe unanswered.
    public var unsettled: Int
    public var destinations: [Destination]
    /// One line per case and destination where the prediction and the kernel disagree.
    public var disagreements: [String]

    /// Agreeing (case, destination) pairs over all of them; 1 when there are none.
    public var agreement: Double {
        let total = destinations.reduce(0) { $0 + $1.cases }
        return total == 0 ? 1 : Double(destinations.reduce(0) { $0 + $1.agree }) / Double(total)
    }
}

extension MatrixResult {
    /// The audit's predictions held to the kernel: for every case with a prediction, every
    /// destination the case probed (and "localhost"), whether the second socket took it
    /// (`TryResult.taken`: it received there, and the first alone received there or at the
    /// twin) and whether the audit, from the first socket alone, said it would.
    public var predictionScore: MatrixPredictionScore? {
        let predicted = cases.filter { $0.prediction != nil }
        guard !predicted.isEmpty else { return nil }
        let alone = aloneDestinations
        var score = MatrixPredictionScore(cases: 0, unsettled: 0, destinations: [], disagreements: [])
        var byDestination: [String: MatrixPredictionScore.Destination] = [:]
        var order: [String] = []
        for outcome in predicted {
            let c = outcome.matrixCase
            guard let prediction = outcome.prediction, prediction.unknown == nil, outcome.isSettled,
                  let served = alone[Self.aloneKey(c.transport, c.first, c.firstOptions)] else {
                score.unsettled += 1
                continue
            }
            score.cases += 1
            let taken = Set(TryResult.taken(outcome, served: served).map(\.destination))
            for delivery in outcome.allDeliveries {
                let destination = delivery.destination
                if byDestination[destination] == nil {
                    byDestination[destination] = .init(destination: destination, cases: 0, agree: 0, taken: 0, predicted: 0)
                    order.append(destination)
                }
                let says = prediction.takes.contains(destination)
                let did = taken.contains(destination)
                byDestination[destination]!.cases += 1
                if says { byDestination[destination]!.predicted += 1 }
                if did { byDestination[destination]!.taken += 1 }
                if says == did {
                    byDestination[destination]!.agree += 1
                } else {
                    score.disagreements.append("\(c.transport.rawValue) first \(c.first.label) \(c.firstOptions.rawValue) (read: \(prediction.options)), second \(c.second!.label) "
                        + "\(c.secondOptions.rawValue) as \(c.secondUser.rawValue) user, \(destination): audit \(says ? "predicted a take" : "predicted none"), "
                        + "kernel \(did ? "took it" : "did not") (cell \(outcome.cell))")
                }
            }
        }
        score.destinations = order.map { byDestination[$0]! }
        return score
    }
}

/// One audit finding, with its sockets named by their role in the case.
public struct MatrixAuditFinding: Codable, Sendable, Equatable {
    public var kind: AuditFinding.Kind
    public var severity: AuditFinding.Severity
    public var port: UInt16
    /// "first" or "second" for each socket the finding names, in its order ("?" for a socket
    /// of neither agent).
    public var sockets: [String] = []
    /// The socket the audit names as the likely intruder, where it could tell.
    public var likelyIntruder: String?
}

extension MatrixCaseOutcome {
    /// Both sockets bound (and listened): only then can either take from the other.
    public var bothServe: Bool {
        matrixCase.second != nil && SyscallResult.served(bind: firstBind, listen: firstListen) && SyscallResult.served(bind: secondBind, listen: secondListen)
    }

    /// The one place where the matrix derives where `localhost` goes: a client resolves it to
    /// ::1, then 127.0.0.1 (the lab's hosts file, in getaddrinfo's order), and goes on to
    /// 127.0.0.1 only when ::1 refused it. The probes to ::1 and to 127.0.0.1 already are
    /// those two attempts, so a localhost client gets what ::1 gave, or, where every ::1
    /// probe was refused, what 127.0.0.1 gave. Nil without both probes.
    public var localhost: MatrixDelivery? {
        guard let v6 = deliveries.first(where: { $0.destination == "::1" }),
              let v4 = deliveries.first(where: { $0.destination == "127.0.0.1" }) else { return nil }
        var delivery = v6.sent > 0 && v6.refused == v6.sent ? v4 : v6
        delivery.destination = "localhost"
        return delivery
    }

    /// Every destination of the case, `localhost` included.
    public var allDeliveries: [MatrixDelivery] { deliveries + (localhost.map { [$0] } ?? []) }

    /// The first socket (every socket of a service) bound and, where it listens, listened.
    public var firstServes: Bool {
        firstBind == .ok && (!matrixCase.listens || SyscallResult.served(bind: firstBind, listen: firstListen))
    }

    /// The case says who receives: it ran, the first socket serves, and no probe went unanswered.
    public var isSettled: Bool { status == .ran && firstServes && !deliveries.contains(where: \.isLost) }

    /// How the kernel refused the second socket (`bind EADDRINUSE`, `listen EADDRINUSE`), or nil:
    /// the same rule as the cell's `B` and `L`.
    public var secondRefusal: String? {
        guard status == .ran, matrixCase.second != nil, firstServes else { return nil }
        if secondBind != .ok { return "bind \(secondBind)" }
        if matrixCase.transport == .tcp, matrixCase.listens, secondListen != .ok { return "listen \(secondListen)" }
        return nil
    }

    /// What the first socket receives, `localhost` included, from a settled case; nil when the
    /// case did not settle, since then nothing is known of it.
    public var received: Set<String>? {
        guard isSettled else { return nil }
        return Set(allDeliveries.filter { $0.first > 0 }.map(\.destination))
    }
}

/// How well the audit's findings match what the matrix saw the kernel do (`matrix --audit`).
public struct MatrixAuditScore: Codable, Sendable, Equatable {
    /// Cases with an audit: those in which both sockets bound (and listened).
    public var audited: Int
    /// Cases in which either socket takes traffic from the other.
    public var takes: Int
    /// Of those, cases the audit flags as it should.
    public var caught: Int
    /// caught / takes (1 when nothing was taken).
    public var recall: Double
    /// Cases counted for precision with an interception, shadowing or load-balancing finding.
    public var alarms: Int
    /// Of those, cases in which neither socket takes anything from the other.
    public var falseAlarmCount: Int
    /// (alarms - false alarms) / alarms (1 when there was no alarm).
    public var precision: Double
    /// Cases left out of the precision count: two sockets of different address families.
    public var crossFamily: Int
    /// Of those, cases in which neither socket takes anything: the policy warnings.
    public var crossFamilyWithoutTake: Int = 0
    /// One line per case the audit missed, and per false alarm.
    public var misses: [String]
    public var falseAlarms: [String]
}

extension MatrixResult {
    /// Kinds of finding that say one socket takes (or may take) another's traffic.
    static let alarmKinds: Set<AuditFinding.Kind> = [.interception, .shadowing, .loadBalancing]

    static func aloneKey(_ transport: Transport, _ endpoint: MatrixEndpoint, _ options: MatrixOptions) -> String {
        "\(transport.rawValue) \(endpoint.label) \(options.rawValue)"
    }

    /// What each socket receives alone, `localhost` included, keyed by `aloneKey`.
    var aloneDestinations: [String: Set<String>] {
        var alone: [String: Set<String>] = [:]
        // A baseline that lost a destination knows nothing of it: as if it had not run.
        for baseline in baselines where baseline.status == .ran && !baseline.deliveries.contains(where: \.isLost) {
            let c = baseline.matrixCase
            alone[Self.aloneKey(c.transport, c.first, c.firstOptions)] = Set(baseline.allDeliveries.filter { $0.first > 0 }.map(\.destination))
        }
        return alone
    }

    /// The destinations each socket takes from the other: it receives there, and the other
    /// receives there when alone. Nil when a baseline is missing, since nothing is known.
    static func takes(_ outcome: MatrixCaseOutcome, alone: [String: Set<String>]) -> (first: [String], second: [String])? {
        let c = outcome.matrixCase
        guard outcome.status == .ran, let second = c.second else { return nil }
        guard outcome.bothServe else { return ([], []) }
        guard let firstAlone = alone[aloneKey(c.transport, c.first, c.firstOptions)],
              let secondAlone = alone[aloneKey(c.transport, second, c.secondOptions)] else { return nil }
        let deliveries = outcome.allDeliveries
        return (deliveries.filter { $0.first > 0 && secondAlone.contains($0.destination) }.map(\.destination),
                deliveries.filter { $0.second > 0 && firstAlone.contains($0.destination) }.map(\.destination))
    }

    /// The address families a matrix address receives: v4-mapped is IPv4, dual-stack `[::]` both.
    static func families(_ endpoint: MatrixEndpoint) -> Set<Int> {
        switch endpoint.host {
        case "::": endpoint.v6only ? [6] : [4, 6]
        case "::1", AddressSymbol.labInterface6.rawValue: [6]
        default: [4]
        }
    }

    /// Whether the audit flags the case as the definition asks: interception for another
    /// uid, shadowing for the same; for two sockets of one uid on one address, load-balancing
    /// that names both will do.
    static func flags(_ outcome: MatrixCaseOutcome, findings: [MatrixAuditFinding]) -> Bool {
        let c = outcome.matrixCase
        if c.secondUser == .other { return findings.contains { $0.kind == .interception } }
        if findings.contains(where: { $0.kind == .shadowing }) { return true }
        return c.first.host == c.second?.host && findings.contains { $0.kind == .loadBalancing && Set($0.sockets).isSuperset(of: ["first", "second"]) }
    }

    /// The score over every audited case; nil when no case has an audit.
    public var auditScore: MatrixAuditScore? {
        let audited = cases.filter { $0.audit != nil }
        guard !audited.isEmpty else { return nil }
        let alone = aloneDestinations
        var score = MatrixAuditScore(audited: audited.count, takes: 0, caught: 0, recall: 1, alarms: 0, falseAlarmCount: 0, precision: 1,
                                     crossFamily: 0, misses: [], falseAlarms: [])
        for outcome in audited {
            guard let taken = Self.takes(outcome, alone: alone) else { continue }
            let findings = outcome.audit!.findings
            let c = outcome.matrixCase
            let takes = !taken.first.isEmpty || !taken.second.isEmpty
            if takes {
                score.takes += 1
                if Self.flags(outcome, findings: findings) {
                    score.caught += 1
                } else {
                    score.misses.append(Self.line(outcome, taken: taken))
                }
            }
            guard findings.contains(where: { Self.alarmKinds.contains($0.kind) }) else { continue }
            if let second = c.second, Self.families(c.first).isDisjoint(with: Self.families(second)) {
                score.crossFamily += 1
                if !takes { score.crossFamilyWithoutTake += 1 }
                continue
            }
            score.alarms += 1
            if !takes {
                score.falseAlarmCount += 1
                score.falseAlarms.append(Self.line(outcome, taken: taken))
            }
        }
        score.recall = score.takes == 0 ? 1 : Double(score.caught) / Double(score.takes)
        score.precision = score.alarms == 0 ? 1 : Double(score.alarms - score.falseAlarmCount) / Double(score.alarms)
        return score
    }

    /// One line on a case: its sockets, what each took, and what the audit said.
    static func line(_ outcome: MatrixCaseOutcome, taken: (first: [String], second: [String])) -> String {
        let c = outcome.matrixCase
        var what: [String] = []
        if !taken.first.isEmpty { what.append("the first takes \(taken.first.joined(separator: ", "))") }
        if !taken.second.isEmpty { what.append("the second takes \(taken.second.joined(separator: ", "))") }
        let findings = (outcome.audit?.findings ?? []).map { finding in
            "\(finding.kind.rawValue)" + (finding.likelyIntruder.map { " (intruder: \($0))" } ?? "")
        }
        return "\(c.transport.rawValue), \(c.secondUser == .same ? "same user" : "uid 65534"): \(c.first.label) \(c.firstOptions.short) / "
            + "\(c.second?.label ?? "-") \(c.secondOptions.short), cell \(outcome.cell): "
            + (what.isEmpty ? "neither takes anything" : what.joined(separator: "; "))
            + "; audit: " + (findings.isEmpty ? "no finding" : findings.joined(separator: ", "))
    }
}

extension MatrixCase {
    /// The heading of the MATRIX.md grid that holds the case (its row is the first socket's
    /// address, its column the second's), and so, through `anchor`, the link to it.
    public static func gridTitle(_ transport: Transport, _ user: SocketUser, _ first: MatrixOptions, _ second: MatrixOptions) -> String {
        "\(sliceTitle(transport, user)): first \(optionWords(first)), second \(optionWords(second))"
    }

    public static func sliceTitle(_ transport: Transport, _ user: SocketUser) -> String {
        "\(transport.rawValue), second socket \(user == .same ? "same user" : "another user (uid 65534)")"
    }

    /// The options as someone would search for them: the real option names.
    public static func optionWords(_ options: MatrixOptions) -> String {
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

    /// `MATRIX.md#…`, the grid that holds this case.
    public var gridLink: String { "MATRIX.md#" + Self.anchor(Self.gridTitle(transport, secondUser, firstOptions, secondOptions)) }

    /// How little the second socket needs, for listing the weakest bind first: no option
    /// before SO_REUSEADDR before SO_REUSEPORT, a specific address before a wildcard.
    public var secondStrength: (Int, Int, Int) {
        let wildcard = ["0.0.0.0", "[::]", "[::]v6only"].contains(second?.label ?? "") ? 1 : 0
        let position = MatrixEndpoint.standard.firstIndex { $0.label == second?.label } ?? 0
        return (MatrixOptions.allCases.firstIndex(of: secondOptions) ?? 0, wildcard, position)
    }
}
