import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation
import Glibc

/// Where the lab's sockets and clients live, and what its address symbols mean there.
public struct Topology: Sendable {
    public typealias Kind = TopologyKind

    public var kind: Kind
    /// Why this topology was chosen, for the report header.
    public var reason: String

    public static func loopback(reason: String) -> Topology { Topology(kind: .loopback, reason: reason) }
    public static func netns(reason: String) -> Topology { Topology(kind: .netns, reason: reason) }

    public typealias Lab = LabAddresses

    /// The numeric address a symbol stands for here, or why it has none.
    public func resolve(_ spec: AddressSpec) -> Result<String, Unavailable> {
        switch spec {
        case .literal(let text):
            if let refusal = LabAddressPolicy.refusal(for: text, labRangesAllowed: kind == .netns) { return .failure(Unavailable(reason: "\(text): \(refusal)")) }
            return .success(SocketAddress(host: text, port: 0)?.host ?? text)
        case .symbol(.wildcard4): return .success("0.0.0.0")
        case .symbol(.loopback4): return .success("127.0.0.1")
        case .symbol(.wildcard6), .symbol(.wildcard6Only): return .success("::")
        case .symbol(.loopback6): return .success("::1")
        case .symbol(.v4mappedLoopback): return .success("::ffff:127.0.0.1")
        case .symbol(.labInterfaceAdded):
            guard kind == .netns else {
                return .failure(Unavailable(reason: "lab-interface-added exists only in the netns topology; this run uses \(kind.rawValue)"))
            }
            return .success(Lab.addedV4)
        case .symbol(let symbol) where symbol == .labInterface || symbol == .labInterface6:
            guard kind == .netns else {
                return .failure(Unavailable(reason: "\(symbol.rawValue) exists only in the netns topology; this run uses \(kind.rawValue)"))
            }
            return .success(symbol == .labInterface ? Lab.hostV4 : Lab.hostV6)
        case .symbol: return .failure(Unavailable(reason: "\(spec) has no address here"))
        case .name(let name):
            // Names are resolved by the client from the lab's own hosts file (LabHosts). Its
            // addresses are the lab host's loopbacks, which only the netns lab owns outright.
            guard kind == .netns else {
                return .failure(Unavailable(reason: "\(name) is resolved only on the lab host, whose loopbacks the run owns (netns topology); here it would reach this machine's own ::1 and 127.0.0.1"))
            }
            return .success(name)
        }
    }

    public struct Unavailable: Error, Sendable { public var reason: String }

    /// The scenario's port. In the private namespace it is fixed by the name, so that the
    /// report is the same every run; below the ephemeral range, so that no client's
    /// TIME_WAIT from an earlier scenario can sit on it. On the host it is whatever the
    /// kernel says is free now.
    /// A privileged scenario gets a port from 600 to 999, below the kernel's default
    /// ip_unprivileged_port_start (1024), and only in the lab's own namespace.
    public func port(for name: String, transport: Transport, taken: Set<UInt16>, kind portKind: PortKind = .ordinary) throws(SystemError) -> UInt16 {
        guard kind == .netns else { return try Self.freeHostPort(for: transport) }
        var hash: UInt32 = 2_166_136_261
        for byte in name.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        let range: ClosedRange<UInt16> = portKind == .privileged ? 600...999 : 10_000...29_999
        var port = range.lowerBound + UInt16(hash % UInt32(range.count))
        while taken.contains(port) { port = port == range.upperBound ? range.lowerBound : port + 1 }
        return port
    }

    /// A port that nothing on this host uses now, on both families. It is taken from below
    /// the ephemeral range, where no outgoing connection of any program can take it (or leave
    /// it in TIME_WAIT) between this check and the scenario's bind.
    static func freeHostPort(for transport: Transport) throws(SystemError) -> UInt16 {
        let ceiling = max(min(Audit.ephemeralPorts.lowerBound, 32_768), 10_100)
        var lastError = SystemError(call: "bind", code: EADDRINUSE)
        for _ in 0..<200 {
            let candidate = UInt16.random(in: 10_000..<ceiling)
            do throws(SystemError) {
                // [::] without IPV6_V6ONLY reserves the IPv4 port too, so one bind checks both.
                let socket = try Socket(family: AF_INET6, transport: transport)
                try socket.bind(to: SocketAddress(host: "::", port: candidate)!)
                try socket.close()
                return candidate
            } catch where error.code == EAFNOSUPPORT {
                // No IPv6 on this host: check the IPv4 wildcard alone.
                do throws(SystemError) {
                    let socket = try Socket(family: AF_INET, transport: transport)
                    try socket.bind(to: SocketAddress(host: "0.0.0.0", port: candidate)!)
                    try socket.close()
                    return candidate
                } catch {
                    lastError = error
                }
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// Chooses the topology. Without `forced`, netns when this process may make network
    /// namespaces and iproute2 is installed, loopback otherwise. A forced netns that cannot
    /// be had is an error that says what is missing.
    public static func choose(forced: Kind?) -> Result<Topology, Unavailable> {
        let missing = netnsMissing()
        switch (forced, missing) {
        case (.loopback?, _):
            return .success(.loopback(reason: "chosen with --topology loopback: the host's own loopback, with no peer, no lab interface and no device binding"))
        case (.netns?, let missing?):
            return .failure(Unavailable(reason: "--topology netns needs \(missing)"))
        case (_, nil):
            return .success(.netns(reason: "private network namespaces made by this run (uid \(geteuid()) may create them); nothing is bound on the host's own network"))
        case (nil, let missing?):
            return .success(.loopback(reason: "the host's own loopback, because the netns topology needs \(missing)"))
        }
    }

    /// What stops this process from building the netns topology, or nil.
    static func netnsMissing() -> String? {
        if !mayCreateNamespaces() {
            return "root or CAP_SYS_ADMIN to create network namespaces (this is uid \(geteuid())); run it with sudo for the full lab"
        }
        if ipExecutable() == nil { return "iproute2's `ip` command, which was not found on PATH or in /sbin, /usr/sbin (install the iproute2 package)" }
        return nil
    }

    static func mayCreateNamespaces() -> Bool {
        if geteuid() == 0 { return true }
        guard let status = ProcNet.read("/proc/self/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let mask = UInt64(line.split(separator: "\t").last ?? "", radix: 16) else { return false }
        return mask & (1 << 21) != 0  // CAP_SYS_ADMIN
    }

    /// The absolute path of `ip`, looked up on PATH and in the usual sbin directories.
    public static func ipExecutable() -> String? { SearchPath.find("ip") }
}
