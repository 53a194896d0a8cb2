import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Glibc

/// The clients of a run and, in the netns topology, the namespaces they hold.
///
/// In netns the host client unshares a fresh network namespace, which becomes the lab host,
/// and the peer client another, the external peer. The veth pair is created inside the lab
/// host with its other end moved straight into the peer, so nothing is ever created in the
/// host's own namespace. Anonymous namespaces, and the veth with them, vanish when their
/// last process exits: killing the agents is the whole teardown, on every exit path.
final class LabNetwork {
    let hostClient: AgentClient
    let peerClient: AgentClient?
    /// Arguments that put a socket's agent in the lab host.
    let placement: [String]
    /// iproute2's `ip`, in netns.
    private let ip: String?
    /// Whether the host client holds what an audit needs (see `hostClientFlag`).
    let audits: Bool

    private init(hostClient: AgentClient, peerClient: AgentClient?, placement: [String], ip: String? = nil, audits: Bool) {
        self.audits = audits
        self.hostClient = hostClient
        self.peerClient = peerClient
        self.placement = placement
        self.ip = ip
    }

    /// Adds (or removes) an IPv4 address on the lab host's interface: an address that appears
    /// after a service started. The host client's `ip` holds CAP_NET_ADMIN for this.
    func changeLabAddress(_ address: String, add: Bool) throws(LabError) {
        guard let ip else { throw .setup("addresses can be added only in the netns topology") }
        try Self.run(ip, on: hostClient, "addr \(add ? "add" : "del") \(address)/24 dev \(Topology.Lab.hostInterface)")
    }

    /// Marks the host client as the one agent that audits, and so keeps the capabilities for
    /// reading other processes' descriptors (CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE). Only a lab
    /// that audits passes it: socket agents never get it, nor a host client that only probes.
    private static let hostClientFlag = ["--host-client"]

    /// Starts the clients; `audits` says whether the host client may audit (see `hostClientFlag`).
    static func make(_ settings: LabSettings, audits: Bool, started: (ProcessIdentity) -> Void) throws(LabError) -> LabNetwork {
        let executable = settings.agentExecutable
        let hostClientFlag = audits ? Self.hostClientFlag : []
        guard settings.topology.kind == .netns else {
            let host = try AgentClient(executable: executable, id: "client-host", extraArguments: hostClientFlag, timeout: settings.replyTimeout)
            started(host.identity)
            try host.awaitReady()
            return LabNetwork(hostClient: host, peerClient: nil, placement: [], audits: audits)
        }
        guard let ip = Topology.ipExecutable() else { throw .setup("iproute2's `ip` was not found") }
        let host = try AgentClient(executable: executable, id: "client-host", extraArguments: ["--netns", "new"] + hostClientFlag, timeout: settings.replyTimeout)
        started(host.identity)
        let peer: AgentClient
        do throws(LabError) {
            peer = try AgentClient(executable: executable, id: "client-peer", extraArguments: ["--netns", "new"], timeout: settings.replyTimeout)
        } catch {
            host.kill()
            throw error
        }
        started(peer.identity)
        do throws(LabError) {
            try host.awaitReady()
            try peer.awaitReady()
            let lab = Topology.Lab.self
            // Addresses are added with nodad so IPv6 works at once, without duplicate detection.
            try run(ip, on: host, """
                link set lo up
                link add \(lab.hostInterface) type veth peer name \(lab.peerInterface) netns \(peer.pid)
                addr add \(lab.hostV4)/24 dev \(lab.hostInterface)
                addr add \(lab.hostV6)/64 dev \(lab.hostInterface) nodad
                link set \(lab.hostInterface) up
                """)
            try run(ip, on: peer, """
                link set lo up
                addr add \(lab.peerV4)/24 dev \(lab.peerInterface)
                addr add \(lab.peerV6)/64 dev \(lab.peerInterface) nodad
                link set \(lab.peerInterface) up
                """)
        } catch {
            host.kill()
            peer.kill()
            throw error
        }
        return LabNetwork(hostClient: host, peerClient: peer, placement: ["--netns", "/proc/\(host.pid)/ns/net"], ip: ip, audits: audits)
    }

    /// One `ip -batch -` per namespace: a launch per namespace, not per command.
    private static func run(_ ip: String, on agent: AgentClient, _ commands: String) throws(LabError) {
        let reply = try agent.request(.exec(argv: [ip, "-batch", "-"], input: commands, timeoutMilliseconds: 5000))
        guard case .executed(let call, let output) = reply else { throw .setup("setting up the lab network in \(agent.id)'s namespace failed: ip gave no result") }
        guard call.result == .ok else {
            throw .setup("setting up the lab network in \(agent.id)'s namespace failed (ip: \(call.result)): \(output ?? "no output")")
        }
    }

    func client(_ from: ProbeClient) -> AgentClient? {
        from == .host ? hostClient : peerClient
    }

    func finish() {
        hostClient.finish()
        peerClient?.finish()
    }

    func kill() {
        hostClient.kill()
        peerClient?.kill()
    }
}
