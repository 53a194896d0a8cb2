import HijackAgent
import HijackAudit
import HijackCLI
import HijackSystem

/// Where a run's sockets and clients live (Lab/Topology.swift chooses and builds it).
public enum TopologyKind: String, Codable, Sendable, CaseIterable {
    /// The host's own loopback: no peer, no lab interface.
    case loopback
    /// Private network namespaces made by the run: a lab host and an external peer.
    case netns
}

/// The lab network's addresses. They exist only inside namespaces the run creates.
public enum LabAddresses {
    /// The lab host's /etc/hosts, the only place the lab looks names up (`LabHosts`).
    public static let hostsFile = LabHosts.labFile
    public static let hostInterface = "lab0"
    public static let peerInterface = "peer0"
    public static let hostV4 = "198.51.100.1"
    /// Put on lab0 only by a scenario's add-address step, and taken off when it ends.
    public static let addedV4 = "198.51.100.3"
    public static let peerV4 = "198.51.100.2"
    public static let hostV6 = "2001:db8::1"
    public static let peerV6 = "2001:db8::2"
}

