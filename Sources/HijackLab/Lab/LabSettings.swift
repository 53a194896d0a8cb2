import HijackCLI
import HijackAgent
import HijackSystem
import Glibc

/// How a run is carried out.
public struct LabSettings: Sendable {
    /// The binary started in the agent role: this program itself, found via /proc/self/exe.
    public var agentExecutable: String
    public var topology: Topology
    /// How long any agent may take to answer one command.
    public var replyTimeout: Double
    /// How long one probe connection may take to connect and deliver the identity line.
    public var connectTimeout: Double
    /// Audit every scenario while its sockets are live (`run --audit`), not only those that ask.
    public var auditAll = false
    /// Some scenario of the run audits: its lab's host client holds the audit's capabilities
    /// from the start, rather than being made anew for the first scenario that audits.
    public var scenariosAudit = false
    /// How long one whole scenario may take, start-up and probes included. Past it the
    /// scenario's agents are killed and it is reported as not finished.
    public var scenarioDeadline: Double = 60

    public init(agentExecutable: String, topology: Topology, replyTimeout: Double = 5, connectTimeout: Double = 2) {
        self.agentExecutable = agentExecutable
        self.topology = topology
        self.replyTimeout = replyTimeout
        self.connectTimeout = connectTimeout
    }

    /// The path of the running executable, from the kernel (argv[0] may be a bare name or a
    /// lie); where that path is not UTF-8, `/proc/self/exe`, which names the same binary to
    /// the children that exec it.
    public static func currentExecutable() -> String {
        Front.ownPath() ?? Front.ownByKernel
    }

    /// The program started as agents: `hijack-lab`, the small front built beside this one,
    /// which starts in a fraction of this program's time; this program itself (which also
    /// knows the role) when the front is not there.
    public static func defaultAgentExecutable() -> String {
        let own = currentExecutable()
        guard own != Front.ownByKernel, let slash = own.lastIndex(of: "/") else { return own }
        let front = String(own[...slash]) + Front.agentName
        return access(front, X_OK) == 0 ? front : own
    }
}

/// Why a run skips what it cannot give, asked by the runner and the matrix alike.
extension LabSettings {
    /// Another user's agent (uid 65534) needs root to start it.
    func otherUserSkip(_ subject: String) -> String? {
        geteuid() == 0 ? nil : "\(subject) runs as another user (uid 65534), which only root can start; this run is uid \(geteuid())"
    }

    /// What exists only in the lab's own namespaces: the lab interface, the external peer,
    /// devices, privileged ports. `subject` says which, and why it needs them.
    func netnsSkip(_ subject: String) -> String? {
        topology.kind == .netns ? nil : "\(subject) only in the netns topology"
    }
}
