import HijackAgent
import HijackAudit
import HijackSystem

/// One real server of the servers/ catalog (issue 22), as its data file describes it: the
/// package that ships it, how its unit starts it, its configuration as shipped and with the
/// fix, how it is ready and what request it answers.
public struct ServerSpec: Sendable, Equatable {
    /// How its package's unit starts it.
    public enum StartsAs: String, Codable, Sendable, CaseIterable {
        /// As root: the server binds first, then drops to its account itself.
        case root
        /// As its account (User= in the unit).
        case account
    }

    /// The request it answers, which tells its reply from an agent's identity line.
    public enum Request: String, Codable, Sendable, CaseIterable {
        /// `GET / HTTP/1.0`; the reply starts with "HTTP/".
        case http
        /// `PING`; the reply is "+PONG".
        case redis
        /// `version`; the reply starts with "VERSION ".
        case memcached
        /// A query for `localhost. A` (over TCP with its two-byte length); the reply is a DNS
        /// response with the query's id.
        case dns
    }

    public var name: String
    public var title: String
    /// The Debian package, which `apt-get install` names.
    public var package: String
    /// The program the command runs: it must exist for the server to run.
    public var program: String
    /// The account the server runs as, or drops to.
    public var account: String
    public var startsAs: StartsAs
    /// How the package's unit starts it, in words (ExecStart, User=).
    public var unit: String
    /// The shipped default port.
    public var port: UInt16
    public var transports: [Transport]
    /// The foreground command line, with {dir}, {port} and {config} in it.
    public var command: [String]
    /// Extra environment, NAME=VALUE, with the same placeholders.
    public var environment: [String]
    /// The configuration file's name in the run's folder, and its text as shipped.
    public var configFile: String?
    public var config: String?
    /// How many listening sockets on the port, the server's own, make it ready.
    public var readySockets: Int
    public var request: Request
    /// The fix in one line, and the configuration (and, where it changes, the command) with it.
    public var fixChange: String
    public var fixConfig: String?
    public var fixCommand: [String]?
    /// The attackers the fix is meant to stop (all three unless the file says fewer).
    public var fixAgainst: [ServerAttack.Who] = ServerAttack.Who.allCases
    /// The data file it came from.
    public var file: String

    public init(name: String, title: String, package: String, program: String, account: String, startsAs: StartsAs, unit: String, port: UInt16,
                transports: [Transport], command: [String], environment: [String] = [], configFile: String?, config: String?, readySockets: Int,
                request: Request, fixChange: String, fixConfig: String?, fixCommand: [String]?, file: String) {
        self.name = name
        self.title = title
        self.package = package
        self.program = program
        self.account = account
        self.startsAs = startsAs
        self.unit = unit
        self.port = port
        self.transports = transports
        self.command = command
        self.environment = environment
        self.configFile = configFile
        self.config = config
        self.readySockets = readySockets
        self.request = request
        self.fixChange = fixChange
        self.fixConfig = fixConfig
        self.fixCommand = fixCommand
        self.file = file
    }

    /// The placeholders a command, environment or configuration may use.
    public static let placeholders = ["{dir}", "{port}", "{config}"]
}

/// What `servers` (and `all`) found: each server run, and each one that could not run here.
public struct ServersEvidence: Codable, Sendable {
    public struct Skipped: Codable, Sendable, Equatable {
        public var name: String
        public var package: String
        public var reason: String
        /// The line that installs it (`apt-get install PACKAGE`).
        public var install: String

        public init(name: String, package: String, reason: String) {
            self.name = name
            self.package = package
            self.reason = reason
            install = "apt-get install \(package)"
        }
    }

    public var servers: [ServerOutcome]
    public var skipped: [Skipped]
    /// Why no server ran at all (not root, no netns), when that is so.
    public var unavailable: String?

    public init(servers: [ServerOutcome], skipped: [Skipped], unavailable: String? = nil) {
        self.servers = servers
        self.skipped = skipped
        self.unavailable = unavailable
    }

    /// 1 when a server could not finish, a fix did not hold, or the kernel disagreed with a
    /// prediction; 0 otherwise.
    public var exitStatus: Int32 { servers.contains { !$0.isClean } ? 1 : 0 }
}

/// One server, run as shipped and again with its fix, the same attacks on both.
public struct ServerOutcome: Codable, Sendable {
    public var name: String
    public var title: String
    public var package: String
    /// The package's version, from dpkg's status file.
    public var version: String
    public var file: String
    public var account: String
    public var startsAs: ServerSpec.StartsAs
    public var unit: String
    public var port: UInt16
    /// The port below which only CAP_NET_BIND_SERVICE binds, in the lab host.
    public var unprivilegedPortStart: UInt16
    public var fixChange: String
    /// The attackers the fix is meant to stop.
    public var fixAgainst: [ServerAttack.Who]
    public var shipped: ServerRun
    public var fixed: ServerRun?

    public init(spec: ServerSpec, version: String, unprivilegedPortStart: UInt16, shipped: ServerRun, fixed: ServerRun?) {
        name = spec.name
        title = spec.title
        package = spec.package
        self.version = version
        file = spec.file
        account = spec.account
        startsAs = spec.startsAs
        unit = spec.unit
        port = spec.port
        self.unprivilegedPortStart = unprivilegedPortStart
        fixChange = spec.fixChange
        fixAgainst = spec.fixAgainst
        self.shipped = shipped
        self.fixed = fixed
    }

    /// Whether the fix held: the fixed run finished, and no attacker it is meant to stop
    /// took anything from it.
    public var fixHeld: Bool? {
        guard let fixed, fixed.error == nil else { return nil }
        return fixed.attacks.allSatisfy { $0.taken.isEmpty || !fixAgainst.contains($0.who) }
    }

    /// Both runs finished, every receiver was confirmed, every bind and take went as the
    /// rules predicted, and the fix held.
    public var isClean: Bool {
        shipped.isClean && (fixed?.isClean ?? false) && fixHeld == true
    }
}

/// One start of a server (as shipped, or with the fix) and the attacks on it.
public struct ServerRun: Codable, Sendable {
    public enum Configuration: String, Codable, Sendable {
        case shipped, fix
    }

    public var configuration: Configuration
    /// The server's first process, as the runner sees it, and its account's uid.
    public var pid: Int32?
    /// Why the run could not finish (a server that never became ready, a lab that broke).
    public var error: String?
    /// The end of the server's own log, when it failed.
    public var log: String?
    /// Its listening sockets, with the options read from each socket itself.
    public var sockets: [ObservedSocket]
    /// Every client's connection or datagram with no attacker present.
    public var baseline: [Delivery]
    public var attacks: [ServerAttack]
    /// Milliseconds from the launch until every listening socket was there.
    public var readyMilliseconds: Int?
    /// The server's network namespace ("net:[N]"), read from its process: the lab host's,
    /// never the runner's own (`runnerNetwork`).
    public var network: String?
    public var runnerNetwork: String?

    public init(configuration: Configuration, pid: Int32? = nil, error: String? = nil, log: String? = nil, sockets: [ObservedSocket] = [],
                baseline: [Delivery] = [], attacks: [ServerAttack] = [], readyMilliseconds: Int? = nil) {
        self.configuration = configuration
        self.pid = pid
        self.error = error
        self.log = log
        self.sockets = sockets
        self.baseline = baseline
        self.attacks = attacks
        self.readyMilliseconds = readyMilliseconds
    }

    /// The destinations the server itself received, with no attacker present.
    public var served: [String] {
        var seen: [String] = []
        for delivery in baseline where delivery.receiver == .server && !seen.contains(delivery.destination) { seen.append(delivery.destination) }
        return seen
    }

    public var isClean: Bool {
        error == nil && (baseline + attacks.flatMap(\.deliveries)).allSatisfy(\.agrees) && attacks.allSatisfy(\.asPredicted)
    }
}

/// A listening socket of the server, as sock_diag and the socket itself say.
public struct ObservedSocket: Codable, Sendable, Equatable {
    public var transport: Transport
    public var address: String
    public var port: UInt16
    public var uid: UInt32
    public var user: String
    public var reuseAddress: Bool?
    public var reusePort: Bool?
    public var v6only: Bool?
    public var device: String?
    /// Its holders: "pid command".
    public var owners: [String]

    public init(transport: Transport, address: String, port: UInt16, uid: UInt32, user: String, reuseAddress: Bool?, reusePort: Bool?,
                v6only: Bool?, device: String?, owners: [String]) {
        self.transport = transport
        self.address = address
        self.port = port
        self.uid = uid
        self.user = user
        self.reuseAddress = reuseAddress
        self.reusePort = reusePort
        self.v6only = v6only
        self.device = device
        self.owners = owners
    }

    /// `SO_REUSEADDR+SO_REUSEPORT`, `IPV6_V6ONLY`, or `none`.
    public var optionsText: String {
        var names: [String] = []
        if reuseAddress == true { names.append("SO_REUSEADDR") }
        if reusePort == true { names.append("SO_REUSEPORT") }
        if v6only == true { names.append("IPV6_V6ONLY") }
        if let device { names.append("SO_BINDTODEVICE=\(device)") }
        if reuseAddress == nil || reusePort == nil { names.append("options unread") }
        return names.isEmpty ? "none" : names.joined(separator: "+")
    }

    /// `tcp 0.0.0.0:80` or `udp [::]:53`.
    public var bindText: String {
        "\(transport.rawValue) " + (address.contains(":") ? "[\(address)]" : address) + ":\(port)"
    }
}

/// Who received one client's connection or datagram.
public enum Receiver: String, Codable, Sendable {
    /// A process of the server (its PID namespace).
    case server
    /// The attack's agent.
    case attacker
    /// Another process: never expected in the lab.
    case other
    /// Nobody: refused, unreachable, or no answer by the deadline.
    case nobody
}

/// One client connection (TCP) or datagram (UDP), and who received it.
public struct Delivery: Codable, Sendable, Equatable {
    /// `host` (the lab host itself: 127.0.0.1, ::1, localhost) or `peer` (the external peer).
    public var client: ProbeClient
    /// The address or name the client asked for.
    public var destination: String
    public var transport: Transport
    /// The address it went to (a name's), and the client's own.
    public var remote: String?
    public var local: String?
    public var receiver: Receiver
    /// TCP: the process holding the accepted socket, from sock_diag's record of the
    /// established connection (the client's 4-tuple) and its owner in /proc.
    public var pid: Int32?
    public var uid: UInt32?
    public var command: String?
    /// The first line of the reply, as read (untrusted).
    public var reply: String?
    /// The errno name of a connect, send or read that failed.
    public var error: String?
    /// UDP: no reply to any try by the deadline.
    public var lost: Bool?
    /// Whether the reply and the kernel's owner name the same receiver (TCP), or the reply
    /// was recognised (UDP). A receiver is never inferred from another's absence.
    public var agrees: Bool
    /// How it was confirmed: "sock_diag + /proc and the reply", "the reply".
    public var confirmedBy: String?

    public init(client: ProbeClient, destination: String, transport: Transport, remote: String? = nil, local: String? = nil, receiver: Receiver = .nobody,
                pid: Int32? = nil, uid: UInt32? = nil, command: String? = nil, reply: String? = nil, error: String? = nil, lost: Bool? = nil,
                agrees: Bool = true, confirmedBy: String? = nil) {
        self.client = client
        self.destination = destination
        self.transport = transport
        self.remote = remote
        self.local = local
        self.receiver = receiver
        self.pid = pid
        self.uid = uid
        self.command = command
        self.reply = reply
        self.error = error
        self.lost = lost
        self.agrees = agrees
        self.confirmedBy = confirmedBy
    }
}

/// One attacker's bind beside the running server, and what every client then reached.
public struct ServerAttack: Codable, Sendable {
    public enum Who: String, Codable, Sendable, CaseIterable {
        /// A process of the server's own account (a compromised plugin or CGI).
        case serverAccount = "server-account"
        /// A process of the uid that owns the listening socket, where that differs (root).
        case socketOwner = "socket-owner"
        /// A process of another account.
        case otherAccount = "other-account"
    }

    public var who: Who
    public var user: String
    public var uid: UInt32
    public var transport: Transport
    public var address: String
    public var options: [String]
    /// What the rules (Audit.Takeover, held to the kernel by `matrix --audit`) predicted from
    /// the server's own sockets: whether the bind succeeds, what it takes, and the rule that decides.
    public var predictedBind: Bool
    public var predictedTakes: [String]
    public var rule: String
    public var bind: SyscallResult
    public var listen: SyscallResult
    public var deliveries: [Delivery]
    /// The destinations the attacker received that the server received with no attacker.
    public var taken: [String]

    public init(who: Who, user: String, uid: UInt32, transport: Transport, address: String, options: [String], predictedBind: Bool,
                predictedTakes: [String], rule: String, bind: SyscallResult, listen: SyscallResult, deliveries: [Delivery], taken: [String]) {
        self.who = who
        self.user = user
        self.uid = uid
        self.transport = transport
        self.address = address
        self.options = options
        self.predictedBind = predictedBind
        self.predictedTakes = predictedTakes
        self.rule = rule
        self.bind = bind
        self.listen = listen
        self.deliveries = deliveries
        self.taken = taken
    }

    /// `127.0.0.1:80 with SO_REUSEPORT`.
    public var bindText: String {
        (address.contains(":") ? "[\(address)]" : address) + (options.isEmpty ? "" : " with " + options.joined(separator: "+"))
    }

    /// The kernel agreed with the prediction: the bind's result and the destinations taken.
    public var asPredicted: Bool {
        SyscallResult.served(bind: bind, listen: listen) == predictedBind && Set(taken) == Set(predictedTakes)
    }
}
