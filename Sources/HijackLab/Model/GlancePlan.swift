import HijackAgent
import HijackSystem

extension GlanceEvidence {
    /// A way a service binds, as one row of the "At a glance" table shows it: one socket per
    /// address, every one with the same options. A single address is a row of MATRIX.md; a
    /// set of them (the per-address fix) has no grid there and runs as a service of several
    /// sockets (`MatrixCase.service`).
    public struct Service: Sendable, Hashable {
        /// The addresses the service binds, one socket (and process) each, the first first.
        public var addresses: [MatrixEndpoint]
        public var options: MatrixOptions
        public var kind: Kind

        public enum Kind: Sendable, Hashable {
            /// One socket on one address of `MatrixEndpoint.standard`.
            case single
            /// One socket per IPv4 address: 127.0.0.1 and the lab interface's.
            case perAddressIPv4
            /// One socket per address on both families: both loopbacks and both of the interface's.
            case perAddressBothFamilies
        }

        public init(addresses: [MatrixEndpoint], options: MatrixOptions, kind: Kind) {
            self.addresses = addresses
            self.options = options
            self.kind = kind
        }

        /// The service's case beside one second socket, or alone (`second` nil). A single
        /// address keeps `service` nil, so its case is the very one MATRIX.md has a cell for.
        public func matrixCase(_ transport: Transport, second: MatrixEndpoint? = nil, options secondOptions: MatrixOptions = .none,
                               user: SocketUser = .same) -> MatrixCase {
            guard addresses.count > 1 else {
                return MatrixCase(transport: transport, first: addresses[0], firstOptions: options, second: second, secondOptions: secondOptions, secondUser: user)
            }
            return TryFix(addresses: addresses, options: options, dropped: []).service(transport, second: second, options: secondOptions, user: user)
        }

        /// Whether the case's first is this service: the same addresses, in order, and options.
        public func isFirst(of matrixCase: MatrixCase) -> Bool {
            matrixCase.firstOptions == options && matrixCase.firstSockets.map(\.label) == addresses.map(\.label)
        }

        /// Whether the service is one wildcard socket, which answers on every address of its family.
        public var isWildcard: Bool { kind == .single && ["0.0.0.0", "::"].contains(addresses[0].host) }
    }

    /// The single addresses the table has rows for: the ways a service commonly binds.
    public static let singleAddresses = ["0.0.0.0", "[::]", "[::]v6only", "127.0.0.1", "::1"]

    /// Every service the table answers for, in row order: each single address with each
    /// option set, then one socket per IPv4 address and one per address on both families,
    /// each with each option set. The sets name the lab interface, so outside the netns
    /// topology the runner skips their cases, with its reason.
    public static var services: [Service] {
        let named = { (label: String) in MatrixEndpoint.standard.first { $0.label == label }! }
        let interface = AddressSymbol.labInterface.rawValue, interface6 = AddressSymbol.labInterface6.rawValue
        var services: [Service] = []
        for label in singleAddresses {
            for options in MatrixOptions.allCases { services.append(Service(addresses: [named(label)], options: options, kind: .single)) }
        }
        for (kind, labels) in [(Service.Kind.perAddressIPv4, ["127.0.0.1", interface]), (.perAddressBothFamilies, ["127.0.0.1", "::1", interface, interface6])] {
            for options in MatrixOptions.allCases { services.append(Service(addresses: labels.map(named), options: options, kind: kind)) }
        }
        return services
    }

    /// The cases `all` runs for the table: every service beside every second socket of the
    /// matrix (each address, option set and user), on each transport; and each service alone,
    /// its baseline, per transport. `MatrixRunner.run(cases:baselines:)` runs them.
    public static var plan: (cases: [MatrixCase], baselines: [MatrixCase]) {
        var cases: [MatrixCase] = []
        var baselines: [MatrixCase] = []
        for transport in Transport.allCases {
            for service in services {
                baselines.append(service.matrixCase(transport))
                for user in [SocketUser.same, .other] { cases += planned(service, transport, user) }
            }
        }
        return (cases, baselines)
    }

    /// The cases the plan holds for one service, transport and user: every second socket of
    /// the matrix, each address with each option set. A cell of the table stands for these.
    public static func planned(_ service: Service, _ transport: Transport, _ user: SocketUser) -> [MatrixCase] {
        MatrixEndpoint.standard.flatMap { second in
            MatrixOptions.allCases.map { service.matrixCase(transport, second: second, options: $0, user: user) }
        }
    }
}
