import HijackAudit
import HijackSystem

/// The runner and its agents speak one JSON object per line: commands on the agent's
/// stdin, replies and events on its stdout. Every reply carries the results of the
/// system calls it made, so readiness and outcomes both come from the kernel's answers.
public struct AgentCommand: Codable, Sendable, Equatable {
    public enum Operation: String, Codable, Sendable {
        /// socket(), setsockopt() for each option, bind().
        case bind
        case listen
        /// Start answering connections on the listening socket.
        case serve
        /// close() the socket and every served connection.
        case close
        /// close, reply, and end the process.
        case exit
        /// Reply once every event before this command has been written.
        case sync
        /// Run a tool (`argv`, with `input` on its stdin) in the agent's network namespace.
        case exec
        /// Audit this agent's network namespace (only `port`, when given).
        case audit
        /// bind, then (with `listen`) listen and serve: one round trip per socket, for the matrix.
        case open
        /// Write `input` to the /proc/sys/net file `address` in this agent's namespace.
        case sysctl
        /// Client role: connect `count` times and read each identity line. With `closes`
        /// server-first the client sends "S" and waits for the server's FIN before closing;
        /// otherwise it closes as soon as it has the identity, and the server waits for that.
        case probe
    }

    public var op: Operation
    public var transport: Transport?
    public var address: String?
    public var port: UInt16?
    public var options: [String]?
    public var device: String?
    public var closes: CloseOrder?
    public var count: Int?
    public var timeoutMilliseconds: Int?
    public var argv: [String]?
    public var input: String?
    /// Whether the lab's own ranges (198.51.100.0/24, 2001:db8::/64) may be probed: netns only.
    public var labRanges: Bool?
    /// probe: several destinations in one request, `counts[i]` connections to `addresses[i]`.
    public var addresses: [String]?
    public var counts: [Int]?
    /// open: also listen (TCP) and serve.
    public var listen: Bool?

    public init(op: Operation, transport: Transport? = nil, address: String? = nil, port: UInt16? = nil, options: [String]? = nil,
                device: String? = nil, closes: CloseOrder? = nil, count: Int? = nil, timeoutMilliseconds: Int? = nil, argv: [String]? = nil, input: String? = nil, labRanges: Bool? = nil) {
        self.op = op
        self.transport = transport
        self.address = address
        self.port = port
        self.options = options
        self.device = device
        self.closes = closes
        self.count = count
        self.timeoutMilliseconds = timeoutMilliseconds
        self.argv = argv
        self.input = input
        self.labRanges = labRanges
    }

    /// The matrix's one-round-trip commands.
    public static func open(transport: Transport, address: String, port: UInt16, options: [String], listen: Bool) -> AgentCommand {
        var command = AgentCommand(op: .open, transport: transport, address: address, port: port, options: options)
        command.listen = listen
        return command
    }

    public static func probe(transport: Transport, port: UInt16, destinations: [(address: String, count: Int)], closes: CloseOrder,
                             timeoutMilliseconds: Int, labRanges: Bool) -> AgentCommand {
        var command = AgentCommand(op: .probe, transport: transport, port: port, closes: closes, timeoutMilliseconds: timeoutMilliseconds, labRanges: labRanges)
        command.addresses = destinations.map(\.address)
        command.counts = destinations.map(\.count)
        return command
    }
}

/// One system call as it ran: `bind(127.0.0.1:40123) = EADDRINUSE`.
public struct SyscallRecord: Codable, Sendable, Equatable, CustomStringConvertible {
    public var call: String
    public var arguments: String
    /// "ok" or the errno's name.
    public var result: String

    public init(call: String, arguments: String, result: String) {
        self.call = call
        self.arguments = arguments
        self.result = result
    }

    public var description: String { "\(call)(\(arguments)) = \(result)" }
}

/// One connection a probe made, as the client saw it.
public struct ProbeConnection: Codable, Sendable, Equatable {
    /// The client's own address, which the receiving agent reports as its peer.
    public var local: String?
    /// The identity line the server wrote: "socket-id pid uid".
    public var identity: String?
    /// The errno name when connect or read failed.
    public var error: String?
    /// The address this connection or datagram went to (for a name, the one that worked).
    public var remote: String?
    /// UDP: no reply came back by the deadline. A lost datagram is not a failure.
    public var lost: Bool?

    public init(local: String? = nil, identity: String? = nil, error: String? = nil, remote: String? = nil, lost: Bool? = nil) {
        self.local = local
        self.identity = identity
        self.error = error
        self.remote = remote
        self.lost = lost
    }
}

/// A line from an agent: a reply to the last command, or an event (`event` set).
public struct AgentMessage: Codable, Sendable, Equatable {
    /// "ready" once at start, "accepted" per accepted connection, "received" per datagram
    /// served; nil for replies.
    public var event: String?
    public var ok: Bool?
    public var calls: [SyscallRecord]?
    public var connections: [ProbeConnection]?
    /// Why a command could not be carried out at all (not a syscall result).
    public var error: String?
    public var peer: String?
    public var pid: Int32?
    public var uid: UInt32?
    /// A probe to a name: the addresses the lab's hosts file gives, in the order a client tries them (LabHosts).
    public var resolved: [String]?
    public var audit: AuditReport?

    public init(event: String? = nil, ok: Bool? = nil, calls: [SyscallRecord]? = nil, connections: [ProbeConnection]? = nil,
                error: String? = nil, peer: String? = nil, pid: Int32? = nil, uid: UInt32? = nil, resolved: [String]? = nil) {
        self.event = event
        self.ok = ok
        self.calls = calls
        self.connections = connections
        self.error = error
        self.peer = peer
        self.pid = pid
        self.uid = uid
        self.resolved = resolved
        audit = nil
    }
}

/// Which side of a served TCP connection closes first, and so which side keeps TIME_WAIT.
public enum CloseOrder: String, Codable, Sendable {
    case clientFirst = "client-first"
    case serverFirst = "server-first"
    /// The client closes with SO_LINGER 0: a RST, and no TIME_WAIT on either side.
    case clientReset = "client-reset"
}
