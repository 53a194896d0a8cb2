import HijackAgent
import HijackSystem
import Foundation

/// `hijack-lab try`: one service's bind as the first socket, against every second socket of the
/// matrix, and the per-address fix for that bind against the same second sockets.
public struct TryRequest: Codable, Sendable, Equatable {
    /// The service's address, as the matrix names it ("0.0.0.0", "[::]v6only", "lab-interface6"...).
    public var bind: MatrixEndpoint
    public var options: MatrixOptions
    /// SO_BINDTODEVICE on the service's socket (`--device`).
    public var device: String?
    /// The port as given; nil lets the lab choose, as the matrix does.
    public var port: UInt16?
    public var transports: [Transport]

    public init(bind: MatrixEndpoint, options: MatrixOptions, device: String? = nil, port: UInt16? = nil, transports: [Transport] = Transport.allCases) {
        self.bind = bind
        self.options = options
        self.device = device
        self.port = port
        self.transports = transports
    }

    /// The service's own case, alone and against one second socket.
    public func service(_ transport: Transport, second: MatrixEndpoint? = nil, options secondOptions: MatrixOptions = .none, user: SocketUser = .same) -> MatrixCase {
        var c = MatrixCase(transport: transport, first: bind, firstOptions: options, second: second, secondOptions: secondOptions, secondUser: user)
        c.firstDevice = device
        return c
    }

    /// The fix for this bind: one socket per address the bind answers on, both families, with
    /// the options that let nobody join a socket's group taken off.
    public func fix(_ transport: Transport, labInterface: Bool) -> TryFix {
        let named = { (label: String) in MatrixEndpoint.standard.first { $0.label == label }! }
        let loopbacks = [named("127.0.0.1"), named("::1")]
        let interface = labInterface ? [named(AddressSymbol.labInterface.rawValue), named(AddressSymbol.labInterface6.rawValue)] : []
        var addresses: [MatrixEndpoint]
        switch bind.host {
        case "127.0.0.1", "::1", "::ffff:127.0.0.1": addresses = loopbacks
        case AddressSymbol.labInterface.rawValue, AddressSymbol.labInterface6.rawValue: addresses = interface.isEmpty ? [bind] : interface
        default: addresses = loopbacks + interface
        }
        // A socket bound to a device answers only there: lo's addresses are the loopbacks, lab0's
        // the interface's. The fix binds those and opens the service nowhere else.
        switch device {
        case "lo"?: addresses = addresses.filter { !$0.isLabInterface }
        case LabAddresses.hostInterface?: addresses = addresses.filter(\.isLabInterface)
        default: break
        }
        if addresses.isEmpty { addresses = device == "lo" ? loopbacks : interface.isEmpty ? [bind] : interface }
        var options = options
        var dropped: [String] = []
        if options == .reusePort || options == .both {
            options = options == .both ? .reuseAddress : .none
            dropped.append("SO_REUSEPORT, which lets any process of the same user join a socket's group on its own address")
        }
        if transport == .udp, options == .reuseAddress {
            options = .none
            dropped.append("UDP SO_REUSEADDR, which lets any user bind the same address beside a socket")
        }
        if device != nil { dropped.append("SO_BINDTODEVICE: each socket's address already says where it answers") }
        return TryFix(addresses: addresses, options: options, dropped: dropped)
    }

    /// How `try` was asked, in its own syntax: `[::]:8443 with SO_REUSEPORT`.
    public var title: String {
        let host = bind.host == "::" ? "[::]" : bind.isLabInterface ? TryResult.destination(bind.label) : bind.host
        let address = port.map { host.contains(":") && !host.hasPrefix("[") ? "[\(host)]:\($0)" : "\(host):\($0)" } ?? host
        var set = (bind.v6only ? ["IPV6_V6ONLY"] : []) + options.names
        if let device { set.append("SO_BINDTODEVICE \(device)") }
        return address + (set.isEmpty ? " with no option" : " with " + set.joined(separator: ", "))
    }
}

/// The per-address set of sockets `try` runs as the fix.
public struct TryFix: Codable, Sendable, Equatable {
    public var addresses: [MatrixEndpoint]
    public var options: MatrixOptions
    /// What the fix leaves out of the service's options, and why.
    public var dropped: [String]

    public func service(_ transport: Transport, second: MatrixEndpoint? = nil, options secondOptions: MatrixOptions = .none, user: SocketUser = .same) -> MatrixCase {
        var c = MatrixCase(transport: transport, first: addresses[0], firstOptions: options, second: second, secondOptions: secondOptions, secondUser: user)
        c.service = Array(addresses.dropFirst())
        return c
    }
}

/// One transport's evidence: the service alone and beside each second socket, and the same for the fix.
public struct TryTransport: Codable, Sendable {
    public var transport: Transport
    public var alone: MatrixCaseOutcome
    public var cases: [MatrixCaseOutcome]
    public var fix: TryFix
    public var fixAlone: MatrixCaseOutcome
    public var fixCases: [MatrixCaseOutcome]
}

/// One destination one user can take, and every bind that did it.
public struct TryTake: Codable, Sendable, Equatable {
    public var transport: Transport
    /// `127.0.0.1`, `::1`, `localhost`, `198.51.100.1` or `2001:db8::1`.
    public var destination: String
    /// `same` or `other`.
    public var user: SocketUser
    public var binds: [TryBind]
}

/// Second sockets of one user that the kernel refused the same way (`bind EADDRINUSE`).
public struct TryRefusal: Codable, Sendable, Equatable {
    public var transport: Transport
    public var user: SocketUser
    public var refusal: String
    public var binds: [TryBind]
}

/// A second socket's bind, as `try` prints it, with the matrix case that shows the same.
public struct TryBind: Codable, Sendable, Equatable {
    /// The numeric address: `0.0.0.0`, `::`, `198.51.100.1`...
    public var address: String
    /// Every option it set, IPV6_V6ONLY included.
    public var options: [String]
    /// The matrix's name for the address (`[::]v6only`, `lab-interface`).
    public var label: String
    /// MATRIX.md's grid of this case, where the grid's row is the service's address and its
    /// column this bind's; nil for a case the matrix has no cell for (a device, the fix).
    public var `case`: String?
    /// The case's cell as MATRIX.md shows it.
    public var cell: String
    /// The service still received part of it.
    public var shared: Bool
    /// The destination is of the family the service left free (its twin is the service's).
    public var familyGap: Bool
    /// For a refused bind: `bind EADDRINUSE`, `listen EADDRINUSE`.
    public var refusal: String?

    enum CodingKeys: String, CodingKey { case address, options, label, `case`, cell, shared, familyGap, refusal }

    /// `case` and `refusal` are always written, null when there is none, so a script finds every key.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(address, forKey: .address)
        try container.encode(options, forKey: .options)
        try container.encode(label, forKey: .label)
        try container.encode(`case`, forKey: .case)
        try container.encode(cell, forKey: .cell)
        try container.encode(shared, forKey: .shared)
        try container.encode(familyGap, forKey: .familyGap)
        try container.encode(refusal, forKey: .refusal)
    }
}

public struct TryResult: Codable, Sendable {
    public var schemaVersion = 1
    public var environment: LabReport.Environment
    public var request: TryRequest
    /// The destinations each cell's letters stand for, in order, as the matrix names them.
    public var destinations: [String]
    public var transports: [TryTransport]

    public init(environment: LabReport.Environment, request: TryRequest, destinations: [String], transports: [TryTransport]) {
        self.environment = environment
        self.request = request
        self.destinations = destinations
        self.transports = transports
    }

    /// The public name of a matrix destination: the lab interface's by its address.
    public static func destination(_ label: String) -> String { MatrixEndpoint.numeric(label) }

    /// The destinations a transport's service receives alone (`localhost` included), or nil
    /// when its baseline did not settle: it did not run to the end, a probe went unanswered,
    /// or the service's own bind or listen failed.
    public static func served(_ alone: MatrixCaseOutcome) -> Set<String>? { alone.received }

    /// What the second socket took in one case: each destination it received that the service,
    /// alone, receives, or whose other-family twin the service receives (a family gap).
    /// `localhost` counts when the service alone receives either loopback.
    public static func taken(_ outcome: MatrixCaseOutcome, served: Set<String>) -> [(destination: String, gap: Bool, shared: Bool)] {
        guard outcome.status == .ran, outcome.bothServe else { return [] }
        return outcome.allDeliveries.compactMap { delivery in
            guard delivery.second > 0 else { return nil }
            if served.contains(delivery.destination) { return (delivery.destination, false, delivery.first > 0) }
            if let twin = MatrixResult.familyTwin[delivery.destination], served.contains(twin) { return (delivery.destination, true, delivery.first > 0) }
            return nil
        }
    }

    static func bind(_ outcome: MatrixCaseOutcome, linked: Bool) -> TryBind {
        let c = outcome.matrixCase
        let second = c.second!
        return TryBind(address: second.numericHost, options: (second.v6only ? ["IPV6_V6ONLY"] : []) + c.secondOptions.names, label: second.label,
                       case: linked ? c.gridLink : nil, cell: outcome.cell, shared: false, familyGap: false, refusal: outcome.secondRefusal)
    }

    /// Every transport x destination x user that some second socket can take, with its binds:
    /// the service's own cases, or with `fix` the fix's.
    public func takes(fix: Bool = false) -> [TryTake] {
        var list: [TryTake] = []
        for evidence in transports {
            let alone = fix ? evidence.fixAlone : evidence.alone
            let cases = fix ? evidence.fixCases : evidence.cases
            guard let served = Self.served(alone) else { continue }
            // The service's own bind has a matrix cell unless a device or several sockets make it new.
            let linked = !fix && request.device == nil
            for user in [SocketUser.same, .other] {
                var byDestination: [String: [TryBind]] = [:]
                for outcome in cases.sorted(by: { $0.matrixCase.secondStrength < $1.matrixCase.secondStrength }) where outcome.matrixCase.secondUser == user {
                    for take in Self.taken(outcome, served: served) {
                        var bind = Self.bind(outcome, linked: linked)
                        bind.shared = take.shared
                        bind.familyGap = take.gap
                        byDestination[take.destination, default: []].append(bind)
                    }
                }
                for label in destinationOrder where byDestination[label] != nil {
                    list.append(TryTake(transport: evidence.transport, destination: Self.destination(label), user: user, binds: byDestination[label]!))
                }
            }
        }
        return list
    }

    /// Every destination `try` answers for, in the order it prints them.
    public var destinationOrder: [String] {
        var order = destinations
        if let v6 = order.firstIndex(of: "::1") { order.insert("localhost", at: v6 + 1) }
        return order
    }

    /// The port given is below the lab namespace's ip_unprivileged_port_start (a new
    /// namespace's default, 1024): the same-user agents bound it with CAP_NET_BIND_SERVICE.
    public var privilegedPort: Bool { environment.topology == .netns && (request.port ?? 1024) < 1024 }

    /// The top-level `takes` of the JSON: what can be taken from the service as it binds.
    public var takes: [TryTake] { takes() }

    /// Every case of every transport, the baselines included.
    public var allCases: [MatrixCaseOutcome] {
        transports.flatMap { (evidence: TryTransport) -> [MatrixCaseOutcome] in
            [evidence.alone] + evidence.cases + [evidence.fixAlone] + evidence.fixCases
        }
    }

    /// Cases that ran (or could not finish) without settling who receives: could not finish,
    /// the service's own socket failed, or some probe went unanswered.
    public var unsettled: [MatrixCaseOutcome] { allCases.filter { $0.status != .skipped && !$0.isSettled } }

    /// Every case could not finish: the lab itself could not be set up.
    public var labFailed: Bool { !allCases.isEmpty && allCases.allSatisfy { $0.status == .error } }

    /// Every second socket the kernel refused, by transport, user and refusal, with its errno.
    public var refused: [TryRefusal] {
        var list: [TryRefusal] = []
        for evidence in transports {
            for user in [SocketUser.same, .other] {
                var groups: [String: [TryBind]] = [:]
                var order: [String] = []
                for outcome in evidence.cases.sorted(by: { $0.matrixCase.secondStrength < $1.matrixCase.secondStrength }) where outcome.matrixCase.secondUser == user {
                    guard let refusal = outcome.secondRefusal else { continue }
                    if groups[refusal] == nil { order.append(refusal) }
                    groups[refusal, default: []].append(Self.bind(outcome, linked: request.device == nil))
                }
                list += order.map { TryRefusal(transport: evidence.transport, user: user, refusal: $0, binds: groups[$0]!) }
            }
        }
        return list
    }

    /// Cases skipped, with the reason (another user, when not root).
    public var skipped: [MatrixCaseOutcome] { allCases.filter { $0.status == .skipped } }

    /// 1 when something can be taken; 3 when nothing was seen taken but some case did not
    /// run or settle; 0 when every case ran and nothing can take anything.
    public var exitStatus: Int32 {
        if !takes.isEmpty { return 1 }
        return unsettled.isEmpty && skipped.isEmpty ? 0 : 3
    }
}

extension TryResult {
    /// The JSON, with `takes` and `fixTakes` written out beside the evidence they come from.
    struct Document: Encodable {
        var result: TryResult

        enum Keys: String, CodingKey { case schemaVersion, environment, request, destinations, takes, fixTakes, refused, transports, exitStatus }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(result.schemaVersion, forKey: .schemaVersion)
            try container.encode(result.environment, forKey: .environment)
            try container.encode(result.request, forKey: .request)
            try container.encode(result.destinationOrder.map(TryResult.destination), forKey: .destinations)
            try container.encode(result.takes, forKey: .takes)
            try container.encode(result.takes(fix: true), forKey: .fixTakes)
            try container.encode(result.refused, forKey: .refused)
            try container.encode(result.transports, forKey: .transports)
            try container.encode(result.exitStatus, forKey: .exitStatus)
        }
    }
}
