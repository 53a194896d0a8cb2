import HijackSystem
import CHijackLab
import Glibc

/// What NETLINK_SOCK_DIAG (the interface `ss` uses) adds to /proc/net: whether an IPv6
/// socket has IPV6_V6ONLY, and which device a socket is bound to (SO_BINDTODEVICE).
public struct SocketDetails: Sendable, Equatable {
    /// IPV6_V6ONLY, for IPv6 sockets in LISTEN or CLOSE state (bound UDP is CLOSE).
    public var v6only: Bool?
    /// The interface index of SO_BINDTODEVICE, 0 when unbound.
    public var boundDevice: UInt32
}

public enum SockDiag {
    /// The kernel's state numbers (include/net/tcp_states.h), as bits of idiag_states.
    package static let listening: UInt32 = 1 << 10  // TCP_LISTEN
    package static let everyState: UInt32 = .max

    /// Every socket of one transport, both families, whose state is among `states`: one dump
    /// per family, the addresses, ports, uid, inode, V6ONLY and bound device of each. Nil when
    /// the kernel offers no sock_diag for it (no inet_diag, or no tcp_diag/udp_diag module).
    package static func sockets(_ transport: Transport, states: UInt32) -> [hl_diag_socket]? {
        var found: [hl_diag_socket] = []
        for family in [AF_INET, AF_INET6] {
            let status = withUnsafeMutablePointer(to: &found) { pointer in
                hl_sock_diag_dump(family, Int32(transport.ipProtocol), states, 2_000, { socket, context in
                    context!.assumingMemoryBound(to: [hl_diag_socket].self).pointee.append(socket!.pointee)
                }, pointer)
            }
            guard status == 0 else { return nil }
        }
        return found
    }

    /// Details per socket inode, for one transport and both families, or nil when the kernel
    /// offers no sock_diag for it (then the audit knows only what /proc shows).
    public static func details(_ transport: Transport) -> [UInt64: SocketDetails]? {
        guard let sockets = sockets(transport, states: everyState) else { return nil }
        var all: [UInt64: SocketDetails] = [:]
        for socket in sockets where all[socket.inode] == nil {
            all[socket.inode] = SocketDetails(v6only: socket.v6only < 0 ? nil : socket.v6only != 0, boundDevice: socket.bound_device)
        }
        return all
    }

    /// "lo" for an interface index, or "if7" when it has no name here.
    public static func deviceName(_ index: UInt32) -> String {
        var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(index, &name) != nil else { return "if\(index)" }
        return name.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
