import Glibc

/// Where the lab's sockets and clients live, and what its address symbols mean there.
public struct Topology: Sendable {
    public enum Kind: String, Codable, Sendable {
        /// The host's own loopback: no peer, no lab interface.
        case loopback
        /// Private network namespaces made by the run.
        case netns
    }

    public var kind: Kind
    /// Why this topology was chosen, for the report header.
    public var reason: String

    public static func loopback(reason: String) -> Topology {
        Topology(kind: .loopback, reason: reason)
    }

    /// The numeric address a symbol stands for here, or why it has none.
    public func resolve(_ spec: AddressSpec) -> Result<String, Unavailable> {
        switch spec {
        case .literal(let text):
            if let refusal = LabAddressPolicy.refusal(for: text, labRangesAllowed: kind == .netns) { return .failure(Unavailable(reason: "\(text): \(refusal)")) }
            return .success(SocketAddress(host: text, port: 0)?.host ?? text)
        case .symbol(.wildcard4): return .success("0.0.0.0")
        case .symbol(.loopback4): return .success("127.0.0.1")
        case .symbol(.wildcard6): return .success("::")
        case .symbol(.loopback6): return .success("::1")
        case .symbol(.labInterface):
            return .failure(Unavailable(reason: "lab-interface exists only in the netns topology; this run uses \(kind.rawValue)"))
        }
    }

    public struct Unavailable: Error, Sendable { public var reason: String }

    /// A port that nothing on this host uses now, on both families, chosen by the kernel.
    public func freePort(for transport: Transport) throws(SystemError) -> UInt16 {
        // [::] without IPV6_V6ONLY also reserves the IPv4 port, so one bind checks both.
        let probes: [(Int32, String)] = [(AF_INET6, "::"), (AF_INET, "0.0.0.0")]
        var lastError = SystemError(call: "bind", code: EADDRNOTAVAIL)
        for (family, host) in probes {
            do throws(SystemError) {
                let socket = try Socket(family: family, transport: transport)
                try socket.bind(to: SocketAddress(host: host, port: 0)!)
                let port = try socket.localAddress().port
                try socket.close()
                return port
            } catch {
                lastError = error
            }
        }
        throw lastError
    }
}
