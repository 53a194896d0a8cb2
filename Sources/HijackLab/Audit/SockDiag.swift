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
    /// Details per socket inode, for one transport and both families, or nil when the kernel
    /// offers no sock_diag for it (then the audit knows only what /proc shows).
    public static func details(_ transport: Transport) -> [UInt64: SocketDetails]? {
        var all: [UInt64: SocketDetails] = [:]
        for family in [AF_INET, AF_INET6] {
            guard let found = dump(family: family, protocol: transport == .tcp ? 6 : 17) else { return nil }
            all.merge(found) { first, _ in first }
        }
        return all
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value) { bytes += $0 }
    }

    /// One SOCK_DIAG_BY_FAMILY dump request and its answers, read within a deadline.
    static func dump(family: Int32, protocol number: UInt8) -> [UInt64: SocketDetails]? {
        let fd = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 4 /* NETLINK_SOCK_DIAG */)
        guard fd >= 0 else { return nil }
        defer { close(fd) }

        // struct nlmsghdr, then struct inet_diag_req_v2 with an all-zero inet_diag_sockid.
        var request: [UInt8] = []
        append(UInt32(16 + 56), to: &request)      // nlmsg_len
        append(UInt16(20), to: &request)           // SOCK_DIAG_BY_FAMILY
        append(UInt16(0x1 | 0x300), to: &request)  // NLM_F_REQUEST | NLM_F_DUMP
        append(UInt32(1), to: &request)            // nlmsg_seq
        append(UInt32(0), to: &request)            // nlmsg_pid
        request += [UInt8(family), number, 0, 0]   // sdiag_family, sdiag_protocol, idiag_ext, pad
        append(UInt32.max, to: &request)           // idiag_states: every state
        request += [UInt8](repeating: 0, count: 48)
        var kernel: [UInt8] = []                   // struct sockaddr_nl for the kernel (pid 0)
        append(UInt16(AF_NETLINK), to: &kernel)
        kernel += [UInt8](repeating: 0, count: 10)
        let sent = request.withUnsafeBytes { body in
            kernel.withUnsafeBytes { address in
                sendto(fd, body.baseAddress, body.count, 0, address.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
            }
        }
        guard sent == request.count else { return nil }

        var found: [UInt64: SocketDetails] = [:]
        var unsupported = false
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let deadline = Deadline.after(seconds: 2)
        while true {
            guard (try? waitFor(fd, events: Int16(POLLIN), until: deadline)) == true else { return nil }
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return nil }
            var done = false
            buffer.withUnsafeBytes { raw in
                var offset = 0
                while offset + 16 <= count {
                    let length = Int(raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
                    let type = raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)
                    guard length >= 16, offset + length <= count else { done = true; return }
                    if type == 3 { done = true; return }  // NLMSG_DONE
                    if type == 2 {                        // NLMSG_ERROR: no sock_diag for this protocol
                        unsupported = true
                        done = true
                        return
                    }
                    // struct inet_diag_msg: the interface index sits in the socket id, the inode at its end.
                    let message = offset + 16
                    if length >= 16 + 72 {
                        let device = raw.loadUnaligned(fromByteOffset: message + 40, as: UInt32.self)
                        let inode = UInt64(raw.loadUnaligned(fromByteOffset: message + 68, as: UInt32.self))
                        var details = SocketDetails(v6only: nil, boundDevice: device)
                        var attribute = message + 72
                        while attribute + 4 <= offset + length {
                            let size = Int(raw.loadUnaligned(fromByteOffset: attribute, as: UInt16.self))
                            let kind = raw.loadUnaligned(fromByteOffset: attribute + 2, as: UInt16.self)
                            guard size >= 4 else { break }
                            if kind == 11, size >= 5 { details.v6only = raw[attribute + 4] != 0 }  // INET_DIAG_SKV6ONLY
                            attribute += (size + 3) & ~3
                        }
                        found[inode] = details
                    }
                    offset += (length + 3) & ~3
                }
            }
            if done { return unsupported ? nil : found }
        }
    }

    /// "lo" for an interface index, or "if7" when it has no name here.
    public static func deviceName(_ index: UInt32) -> String {
        var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(index, &name) != nil else { return "if\(index)" }
        return name.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
