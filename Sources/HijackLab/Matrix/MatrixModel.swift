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

    /// The seven addresses of the matrix, in grid order.
    public static let standard: [MatrixEndpoint] = [
        MatrixEndpoint(label: "0.0.0.0", host: "0.0.0.0"),
        MatrixEndpoint(label: "127.0.0.1", host: "127.0.0.1"),
        MatrixEndpoint(label: "[::]", host: "::"),
        MatrixEndpoint(label: "[::]v6only", host: "::", v6only: true),
        MatrixEndpoint(label: "::1", host: "::1"),
        MatrixEndpoint(label: "::ffff:127.0.0.1", host: "::ffff:127.0.0.1"),
        MatrixEndpoint(label: "lab-interface", host: "lab-interface"),
    ]
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
}

/// Who received the probes to one destination in one case.
public struct MatrixDelivery: Codable, Sendable, Equatable {
    /// "127.0.0.1", "::1" (from the host client) or "lab-interface" (from the peer).
    public var destination: String
    public var sent: Int
    public var first: Int
    public var second: Int
    /// Refused, unreachable or timed out: nobody received.
    public var nobody: Int
    public var lost: Int

    /// V, A, S or - for this destination.
    public var letter: String {
        switch (first > 0, second > 0) {
        case (true, true): "S"
        case (false, true): "A"
        case (true, false): "V"
        case (false, false): "-"
        }
    }
}

public struct MatrixCaseOutcome: Codable, Sendable, Equatable {
    public var matrixCase: MatrixCase
    public var status: ScenarioOutcome.Status
    public var skipReason: String?
    public var error: String?
    public var port: UInt16?
    public var firstBind = "not-attempted"
    public var firstListen = "not-attempted"
    public var secondBind = "not-attempted"
    public var secondListen = "not-attempted"
    public var deliveries: [MatrixDelivery] = []

    public init(matrixCase: MatrixCase, status: ScenarioOutcome.Status, skipReason: String? = nil) {
        self.matrixCase = matrixCase
        self.status = status
        self.skipReason = skipReason
        let notListening = matrixCase.transport == .udp ? "not-applicable" : "not-attempted"
        firstListen = notListening
        secondListen = notListening
    }

    static func served(bind: String, listen: String) -> Bool { bind == "ok" && (listen == "ok" || listen == "not-applicable") }

    /// The grid cell: `B` or `L` when the second socket failed, `F` when the first did,
    /// otherwise one letter per destination (V, A, S or -).
    public var cell: String {
        guard status == .ran else { return status == .skipped ? "·" : "E" }
        if firstBind != "ok" || (matrixCase.transport == .tcp && matrixCase.listens && firstListen != "ok") { return "F" }
        guard matrixCase.second != nil else { return deliveries.map(\.letter).joined() }
        if secondBind != "ok" { return "B" }
        if matrixCase.transport == .tcp && matrixCase.listens && secondListen != "ok" { return "L" }
        return deliveries.map(\.letter).joined()
    }
}

/// Which combinations to run: `--transport`, `--addresses`, `--options`, `--users`.
public struct MatrixFilter: Sendable {
    public var transports: [Transport] = Transport.allCases
    public var addresses: [MatrixEndpoint] = MatrixEndpoint.standard
    public var options: [MatrixOptions] = MatrixOptions.allCases
    public var users: [SocketUser] = [.same, .other]

    public init() {}

    /// Every case the filter selects, in grid order.
    public var cases: [MatrixCase] {
        var cases: [MatrixCase] = []
        for transport in transports {
            for user in users {
                for firstOptions in options {
                    for secondOptions in options {
                        for first in addresses {
                            for second in addresses {
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
            options.flatMap { options in addresses.map { MatrixCase(transport: transport, first: $0, firstOptions: options, second: nil) } }
        }
    }

    /// Parses a comma-separated list, naming what was expected on error.
    public static func parseList<T>(_ text: String, flag: String, parse: (String) -> T?, allowed: [String]) -> Result<[T], Topology.Unavailable> {
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
