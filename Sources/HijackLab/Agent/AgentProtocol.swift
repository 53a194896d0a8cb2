import HijackAudit
import HijackSystem

/// The runner and its agents speak one JSON object per line (AgentWire): commands on the
/// agent's stdin, replies and events on its stdout. Every reply carries the results of the
/// system calls it made, so readiness and outcomes both come from the kernel's answers.
public enum AgentCommand: Sendable, Equatable {
    /// socket(), setsockopt() for each option, bind().
    case bind(SocketRequest)
    case listen
    /// Start answering connections on the listening socket.
    case serve
    /// close() the socket and every served connection, waiting up to this long for each
    /// client's FIN (nil: the agent's default).
    case close(waitMilliseconds: Int?)
    /// close, reply, and end the process.
    case exit(waitMilliseconds: Int?)
    /// Reply once every event before this command has been written.
    case sync
    /// Run a tool (`argv`, with `input` on its stdin) in the agent's network namespace.
    case exec(argv: [String], input: String?, timeoutMilliseconds: Int)
    /// Audit this agent's network namespace (only `port`, when given), with `ephemeral` for
    /// the UDP sockets in its ephemeral range (`audit --watch`, `--include-ephemeral`).
    /// `options`: read each socket's options from the socket itself (`audit --no-options` says no).
    case audit(port: UInt16?, options: Bool = true, ephemeral: EphemeralUDP = .bound)
    /// bind, then (with `listen`) listen and serve: one round trip per socket, for the matrix.
    case open(SocketRequest, listen: Bool)
    /// Write `value` to one of the sysctls an agent may change, in this agent's namespace.
    case sysctl(WritableSysctl, value: String)
    /// Client role: connections or datagrams to each destination in turn.
    case probe(ProbeRequest)

    /// The operation's name on the wire and in messages about it.
    public var operation: String {
        switch self {
        case .bind: "bind"
        case .listen: "listen"
        case .serve: "serve"
        case .close: "close"
        case .exit: "exit"
        case .sync: "sync"
        case .exec: "exec"
        case .audit: "audit"
        case .open: "open"
        case .sysctl: "sysctl"
        case .probe: "probe"
        }
    }
}

/// The socket a `bind` or `open` makes.
public struct SocketRequest: Sendable, Equatable {
    public var transport: Transport
    /// A numeric address.
    public var address: String
    public var port: UInt16
    /// Option names as `SocketOption(name:)` reads them, set in this order.
    public var options: [String]
    /// SO_BINDTODEVICE, after the other options.
    public var device: String?

    public init(transport: Transport, address: String, port: UInt16, options: [String] = [], device: String? = nil) {
        self.transport = transport
        self.address = address
        self.port = port
        self.options = options
        self.device = device
    }
}

/// A probe: `count` connections (TCP) or datagrams (UDP) to each destination in turn, one
/// new socket each. With `closes` server-first the client sends "S" and waits for the
/// server's FIN before closing; otherwise it closes as soon as it has the identity, and the
/// server waits for that.
public struct ProbeRequest: Sendable, Equatable {
    public struct Destination: Sendable, Equatable {
        /// A numeric address, or a name from the lab's hosts file (LabHosts).
        public var address: String
        public var count: Int

        public init(address: String, count: Int) {
            self.address = address
            self.count = count
        }
    }

    public var transport: Transport
    public var destinations: [Destination]
    public var port: UInt16
    public var closes: CloseOrder
    public var timeoutMilliseconds: Int
    /// Whether the lab's own ranges (198.51.100.0/24, 2001:db8::/64) may be probed: netns only.
    public var labRanges: Bool

    public init(transport: Transport, destinations: [Destination], port: UInt16, closes: CloseOrder, timeoutMilliseconds: Int, labRanges: Bool) {
        self.transport = transport
        self.destinations = destinations
        self.port = port
        self.closes = closes
        self.timeoutMilliseconds = timeoutMilliseconds
        self.labRanges = labRanges
    }
}

/// The only settings an agent may change: the ICMP rate limits, and only inside a namespace
/// the run made. Port-unreachable replies are rate-limited; the matrix exempts them there.
public enum WritableSysctl: String, Sendable, CaseIterable {
    case icmpRatemask = "/proc/sys/net/ipv4/icmp_ratemask"
    case icmpRatelimit = "/proc/sys/net/ipv4/icmp_ratelimit"
    /// ICMPv6's own: a list of types (0, a reserved type, leaves destination-unreachable out of
    /// the global limit), and the per-peer interval in milliseconds (100 by default).
    case icmpv6Ratemask = "/proc/sys/net/ipv6/icmp/ratemask"
    case icmpv6Ratelimit = "/proc/sys/net/ipv6/icmp/ratelimit"

    public var path: String { rawValue }
}

/// An agent's answer to one command.
public enum AgentReply: Sendable, Equatable {
    /// The system calls the command made, in order (none for `sync` or `serve`).
    case done(calls: [SyscallRecord])
    /// `exec`: the tool's result, and what it wrote, when anything.
    case executed(SyscallRecord, output: String?)
    /// `probe`: every connection in order; for a name, the addresses the lab's hosts file gives.
    case probed(connections: [ProbeConnection], resolved: [String]?)
    case audited(AuditReport)
    /// Why the command could not be carried out at all (not a syscall result).
    case refused(reason: String)

    public var calls: [SyscallRecord] {
        switch self {
        case .done(let calls): calls
        case .executed(let call, _): [call]
        default: []
        }
    }

    public var audit: AuditReport? {
        if case .audited(let report) = self { report } else { nil }
    }
}

/// What an agent reports unasked.
public enum AgentEvent: Sendable, Equatable {
    /// Once at start: its pid and uid as it sees them, or why it could not take its place.
    case ready(pid: Int32, uid: UInt32, failure: String?)
    /// Per accepted TCP connection, before the identity goes out on it.
    case accepted(peer: String?)
    /// Per UDP datagram served, before the answer goes out.
    case received(peer: String?)
}

/// One line from an agent.
public enum AgentMessage: Sendable, Equatable {
    case reply(AgentReply)
    case event(AgentEvent)
}

/// What a system call gave: the evidence this project reports. It becomes text only where
/// it is written out (`text`: reports, JSON, the wire).
public enum SyscallResult: Sendable, Hashable {
    case ok
    /// The errno's symbolic name, e.g. EADDRINUSE (SystemError.name).
    case errno(String)
    /// A tool run with `exec` that ended other than with status 0: "exit 1", "signal 9".
    case toolFailed(String)
    /// An earlier call failed, so this one never ran.
    case notAttempted
    /// There is no such call for this transport (listen on UDP).
    case notApplicable

    public init(_ error: SystemError) { self = .errno(error.name) }

    public var isOK: Bool { self == .ok }

    /// A socket that bound, and listened where its transport has listen(): it receives.
    public static func served(bind: SyscallResult, listen: SyscallResult) -> Bool {
        bind == .ok && (listen == .ok || listen == .notApplicable)
    }
}

/// One system call as it ran: `bind(127.0.0.1:40123) = EADDRINUSE`.
public struct SyscallRecord: Codable, Sendable, Equatable, CustomStringConvertible {
    public var call: String
    public var arguments: String
    public var result: SyscallResult

    public init(call: String, arguments: String, result: SyscallResult) {
        self.call = call
        self.arguments = arguments
        self.result = result
    }

    public var description: String { "\(call)(\(arguments)) = \(result)" }
}

/// The identity line an agent writes on every connection it accepts: "socket-id pid uid".
/// Read only here.
public struct AgentIdentity: Sendable, Equatable, CustomStringConvertible {
    public var id: String
    public var pid: Int32
    public var uid: UInt32

    public init(id: String, pid: Int32, uid: UInt32) {
        self.id = id
        self.pid = pid
        self.uid = uid
    }

    public init?(line: String) {
        let parts = line.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, let pid = Int32(parts[1]), let uid = UInt32(parts[2]) else { return nil }
        self.init(id: String(parts[0]), pid: pid, uid: uid)
    }

    public var description: String { "\(id) \(pid) \(uid)" }

    /// The socket id a line names, for counting receivers: its first word, or the whole line
    /// when it is malformed (the identity check then fails the scenario).
    public static func receiver(named line: String) -> String {
        AgentIdentity(line: line)?.id ?? line.split(separator: " ").first.map(String.init) ?? line
    }
}

/// One connection a probe made, as the client saw it.
public struct ProbeConnection: Codable, Sendable, Equatable {
    /// The client's own address, which the receiving agent reports as its peer.
    public var local: String?
    /// The identity line the server wrote (AgentIdentity), as read: untrusted until confirmed.
    public var identity: String?
    /// The errno name when connect or read failed.
    public var error: String?
    /// The address this connection or datagram went to (for a name, the one that worked).
    public var remote: String?
    /// UDP: no reply came back by the deadline. A lost datagram is not a failure.
    public var lost: Bool?
    /// UDP: how many times the datagram was sent (1 to 3) before its first answer, or, for a
    /// lost one, in all (none answered). Nil for TCP.
    public var tries: Int?

    public init(local: String? = nil, identity: String? = nil, error: String? = nil, remote: String? = nil, lost: Bool? = nil, tries: Int? = nil) {
        self.local = local
        self.identity = identity
        self.error = error
        self.remote = remote
        self.lost = lost
        self.tries = tries
    }
}

/// Which side of a served TCP connection closes first, and so which side keeps TIME_WAIT.
public enum CloseOrder: String, Codable, Sendable {
    case clientFirst = "client-first"
    case serverFirst = "server-first"
    /// The client closes with SO_LINGER 0: a RST, and no TIME_WAIT on either side.
    case clientReset = "client-reset"
}
