import HijackAudit
import HijackSystem
import Glibc

/// Why a scenario could not be carried out (as opposed to what the kernel answered).
public enum LabError: Error, Sendable, CustomStringConvertible {
    case spawn(agent: String, SystemError)
    case timeout(agent: String, waitingFor: String, seconds: Double)
    case agentEnded(agent: String, waitingFor: String)
    case agentRefused(agent: String, command: String, reason: String)
    case identityMismatch(String)
    case setup(String)
    /// The whole scenario ran past its deadline (`--deadline`).
    case deadline(seconds: Double)

    public var description: String {
        switch self {
        case .spawn(let agent, let error): "could not start agent \(agent): \(error)"
        case .timeout(let agent, let what, let seconds):
            "agent \(agent) did not answer \(what) within \(seconds < 0.01 ? String(seconds) : Self.decimal(seconds, digits: 2)) s; it was killed"
        case .agentEnded(let agent, let what): "agent \(agent) ended while the runner waited for \(what)"
        case .agentRefused(let agent, let command, let reason): "agent \(agent) refused \(command): \(reason)"
        case .identityMismatch(let detail): "identity check failed: \(detail)"
        case .setup(let detail): detail
        case .deadline(let seconds):
            "the scenario ran past its deadline of \(Self.decimal(seconds, digits: 3)) s (--deadline); its agents were killed"
        }
    }

    /// At most `digits` decimals, without trailing zeros: 5, 0.5, 1.25.
    static func decimal(_ value: Double, digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (value * scale).rounded()
        guard scaled.isFinite, abs(scaled) < 1e15 else { return String(value) }
        let whole = Int64(scaled)
        let unit = Int64(scale)
        var fraction = String(abs(whole % unit))
        fraction = String(repeating: "0", count: digits - fraction.count) + fraction
        while fraction.hasSuffix("0") { fraction.removeLast() }
        let integer = (whole < 0 ? "-" : "") + String(abs(whole / unit))
        return fraction.isEmpty ? integer : integer + "." + fraction
    }
}

/// The runner's handle on one agent process.
package final class AgentClient {
    package let id: String
    private let process: ChildProcess
    private let timeout: Double
    /// The pid the runner itself started; an agent's own claim is only checked against it.
    package let pid: pid_t
    /// The pid together with its start time, which no later process with that pid shares.
    package let identity: ProcessIdentity
    package private(set) var uid: UInt32?
    /// Peers of the connections it accepted, or datagrams it answered, as it reported them:
    /// each parsed once as it arrives (`confirm` looks them up, per connection).
    private var acceptedPeers = AcceptedPeers()

    /// Starts the agent; `awaitReady()` then waits for its first line.
    package init(executable: String, id: String, extraArguments: [String] = [], timeout: Double) throws(LabError) {
        self.id = id
        self.timeout = timeout
        do throws(SystemError) {
            process = try ChildProcess(executable: executable, arguments: ["agent", "--id", id] + extraArguments)
        } catch {
            throw .spawn(agent: id, error)
        }
        pid = process.pid
        identity = ProcessIdentity(of: process.pid)
    }

    package func awaitReady(timeout override: Double? = nil) throws(LabError) {
        let ready = try nextMessage(waitingFor: "its start-up", seconds: override ?? timeout, acceptEvents: true)
        guard case .event(.ready(let reported, let uid, let failure)) = ready else {
            throw .agentRefused(agent: id, command: "start", reason: "its first line was not \"ready\"")
        }
        if let failure { throw .agentRefused(agent: id, command: "start", reason: failure) }
        if reported != pid {
            throw .agentRefused(agent: id, command: "start", reason: "it reported pid \(reported), but the runner started pid \(pid)")
        }
        self.uid = uid
    }

    /// Sends one command and returns its reply; events that arrive first are recorded.
    /// A refusal is thrown.
    package func request(_ command: AgentCommand, timeout override: Double? = nil) throws(LabError) -> AgentReply {
        try send([command])
        return try reply(to: command, timeout: override)
    }

    /// Sends commands without waiting: each is answered by one `reply(to:)`, in order. Several
    /// agents can so work at once, and one agent's commands need one pipe write.
    package func send(_ commands: [AgentCommand]) throws(LabError) {
        // ChildProcess.send ends the text with the last newline.
        let lines = commands.map { String(decoding: AgentWire.encode($0), as: UTF8.self) }.joined(separator: "\n")
        do throws(SystemError) {
            try process.send(lines)
        } catch {
            throw .agentEnded(agent: id, waitingFor: "\"\(commands.first?.operation ?? "")\"")
        }
    }

    /// The reply to a command sent with `send`; a refusal is thrown.
    package func reply(to command: AgentCommand, timeout override: Double? = nil) throws(LabError) -> AgentReply {
        let what = "\"\(command.operation)\""
        guard case .reply(let reply) = try nextMessage(waitingFor: what, seconds: override ?? timeout, acceptEvents: false) else {
            throw .agentRefused(agent: id, command: what, reason: "it answered with an event")
        }
        if case .refused(let reason) = reply { throw .agentRefused(agent: id, command: what, reason: reason) }
        return reply
    }

    /// The calls a command made (bind, listen, open, close, sysctl).
    package func calls(_ command: AgentCommand, timeout override: Double? = nil) throws(LabError) -> [SyscallRecord] {
        try request(command, timeout: override).calls
    }

    /// The audit of this agent's namespace, of `port` only when given.
    package func audit(port: UInt16?, options: Bool = true, ephemeral: EphemeralUDP = .bound, timeout override: Double? = nil) throws(LabError) -> AuditReport {
        guard let report = try request(.audit(port: port, options: options, ephemeral: ephemeral), timeout: override).audit else {
            throw .agentRefused(agent: id, command: "\"audit\"", reason: "it answered without an audit")
        }
        return report
    }

    /// The connections of a probe, and for a name, what it resolved to.
    package func probe(_ request: ProbeRequest, timeout override: Double? = nil) throws(LabError) -> (connections: [ProbeConnection], resolved: [String]?) {
        guard case .probed(let connections, let resolved) = try self.request(.probe(request), timeout: override) else {
            throw .agentRefused(agent: id, command: "\"probe\"", reason: "it answered without connections")
        }
        return (connections, resolved)
    }

    private func nextMessage(waitingFor what: String, seconds: Double, acceptEvents: Bool) throws(LabError) -> AgentMessage {
        let deadline = Deadline.after(seconds: seconds)
        while true {
            let text: String?
            do throws(SystemError) {
                text = try process.readLine(until: deadline)
            } catch where error.code == ETIMEDOUT {
                process.killAndReap()
                throw .timeout(agent: id, waitingFor: what, seconds: seconds)
            } catch {
                throw .agentEnded(agent: id, waitingFor: what)
            }
            guard let text else { throw .agentEnded(agent: id, waitingFor: what) }
            let line = Array(text.utf8)
            let message: AgentMessage
            do throws(AgentWire.Unreadable) {
                message = try AgentWire.decodeMessage(line)
            } catch {
                throw .agentRefused(agent: id, command: what, reason: "unreadable line (\(error.reason)): \(String(decoding: line, as: UTF8.self))")
            }
            switch message {
            case .event(.accepted(let peer)), .event(.received(let peer)):
                acceptedPeers.insert(peer ?? "?")
            case .event where !acceptEvents:
                continue
            default:
                return message
            }
        }
    }

    /// Checks that this agent wrote the identity a client read on `connection`: the pid is the
    /// one the runner started, and the agent itself reported serving that very client. Call it
    /// after a `sync` (or another reply), which brings in every report written before the identity.
    package func confirm(_ connection: ProbeConnection, in probe: String) throws(LabError) {
        guard let claimed = connection.identity.flatMap(AgentIdentity.init(line:)), claimed.id == id, claimed.pid == pid else {
            throw .identityMismatch("probe \(probe) read \"\(connection.identity ?? "")\" for \(id), whose agent is pid \(pid)")
        }
        guard let local = connection.local, acceptedPeers.contains(client: local) else {
            throw .identityMismatch("\(id) did not report serving the client \(connection.local ?? "?") of probe \(probe)")
        }
    }

    /// Forgets the reports so far: a long-lived matrix agent would otherwise keep every
    /// connection of every case.
    package func forgetAcceptedPeers() {
        acceptedPeers = AcceptedPeers()
    }

    /// Closes the agent's stdin, its cue to close its socket and exit; `finish` then waits.
    package func closeInput() {
        process.closeStdin()
    }

    /// Lets the agent exit on its own (stdin closed), killing it at the deadline.
    package func finish() {
        process.finish(until: .after(seconds: timeout))
    }

    package func kill() {
        process.killAndReap()
    }
}

/// The peers an agent reported serving, indexed for `SocketAddress.samePeer`: a client's
/// own address matches a peer equal to it once both are unmapped, or, for a client whose
/// address is a wildcard, any peer with its port. A peer that is not an address is kept
/// as text and matches only the same text.
private struct AcceptedPeers {
    private var addresses: Set<String> = []
    private var ports: Set<UInt16> = []
    private var unparsed: Set<String> = []

    mutating func insert(_ peer: String) {
        if let address = SocketAddress(endpoint: peer)?.unmapped {
            addresses.insert(address.description)
            ports.insert(address.port)
        } else {
            unparsed.insert(peer)
        }
    }

    func contains(client: String) -> Bool {
        guard let own = SocketAddress(endpoint: client)?.unmapped else { return unparsed.contains(client) }
        return own.isWildcard ? ports.contains(own.port) : addresses.contains(own.description)
    }
}
