import HijackAudit
import HijackSystem
import Foundation
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
            "agent \(agent) did not answer \(what) within \(seconds < 0.01 ? String(seconds) : seconds.formatted(.number.precision(.fractionLength(0...2)))) s; it was killed"
        case .agentEnded(let agent, let what): "agent \(agent) ended while the runner waited for \(what)"
        case .agentRefused(let agent, let command, let reason): "agent \(agent) refused \(command): \(reason)"
        case .identityMismatch(let detail): "identity check failed: \(detail)"
        case .setup(let detail): detail
        case .deadline(let seconds):
            "the scenario ran past its deadline of \(seconds.formatted(.number.precision(.fractionLength(0...3)))) s (--deadline); its agents were killed"
        }
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
    /// Peers of the connections it accepted, or datagrams it answered, as it reported them.
    private var acceptedPeers: [String] = []
    private let encoder = JSONEncoder()
    private let decoder = JSONDecoder()

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
        guard ready.event == "ready" else { throw .agentRefused(agent: id, command: "start", reason: "its first line was not \"ready\"") }
        if ready.ok == false { throw .agentRefused(agent: id, command: "start", reason: ready.error ?? "no reason given") }
        if let reported = ready.pid, reported != pid {
            throw .agentRefused(agent: id, command: "start", reason: "it reported pid \(reported), but the runner started pid \(pid)")
        }
        uid = ready.uid
    }

    /// Sends one command and returns its reply; events that arrive first are recorded.
    package func request(_ command: AgentCommand, timeout override: Double? = nil) throws(LabError) -> AgentMessage {
        let what = "\"\(command.op.rawValue)\""
        let line = (try? encoder.encode(command)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        do throws(SystemError) {
            try process.send(line)
        } catch {
            throw .agentEnded(agent: id, waitingFor: what)
        }
        let reply = try nextMessage(waitingFor: what, seconds: override ?? timeout, acceptEvents: false)
        if reply.ok != true { throw .agentRefused(agent: id, command: what, reason: reply.error ?? "no reason given") }
        return reply
    }

    private func nextMessage(waitingFor what: String, seconds: Double, acceptEvents: Bool) throws(LabError) -> AgentMessage {
        let deadline = Deadline.after(seconds: seconds)
        while true {
            let line: String?
            do throws(SystemError) {
                line = try process.readLine(until: deadline)
            } catch where error.code == ETIMEDOUT {
                process.killAndReap()
                throw .timeout(agent: id, waitingFor: what, seconds: seconds)
            } catch {
                throw .agentEnded(agent: id, waitingFor: what)
            }
            guard let line else { throw .agentEnded(agent: id, waitingFor: what) }
            guard let message = try? decoder.decode(AgentMessage.self, from: Data(line.utf8)) else {
                throw .agentRefused(agent: id, command: what, reason: "unreadable line: \(line)")
            }
            if message.event == "accepted" || message.event == "received" {
                acceptedPeers.append(message.peer ?? "?")
                continue
            }
            if message.event != nil && !acceptEvents { continue }
            return message
        }
    }

    /// Checks that this agent wrote the identity a client read on `connection`: the pid is the
    /// one the runner started, and the agent itself reported serving that very client. Call it
    /// after a `sync`, which brings in every report written before the identity.
    package func confirm(_ connection: ProbeConnection, in probe: String) throws(LabError) {
        let parts = (connection.identity ?? "").split(separator: " ")
        guard parts.count == 3, parts[0] == id, Int32(parts[1]) == pid else {
            throw .identityMismatch("probe \(probe) read \"\(connection.identity ?? "")\" for \(id), whose agent is pid \(pid)")
        }
        guard let local = connection.local, acceptedPeers.contains(where: { SocketAddress.samePeer(server: $0, client: local) }) else {
            throw .identityMismatch("\(id) did not report serving the client \(connection.local ?? "?") of probe \(probe)")
        }
    }

    /// Forgets the reports so far: a long-lived matrix agent would otherwise keep every
    /// connection of every case.
    package func forgetAcceptedPeers() {
        acceptedPeers.removeAll(keepingCapacity: true)
    }

    /// Lets the agent exit on its own (stdin closed), killing it at the deadline.
    package func finish() {
        process.finish(until: .after(seconds: timeout))
    }

    package func kill() {
        process.killAndReap()
    }
}
