import HijackAgent
import HijackAudit
import HijackSystem
import CHijackLab
import Glibc

/// A network namespace of the lab, held open by descriptor. The runner's own thread enters
/// it for one step (a client socket made there, a sock_diag dump of it) and comes straight
/// back: a socket keeps the namespace it was made in, whichever namespace its thread is in later.
final class LabNamespace {
    let fd: Int32

    init(path: String) throws(SystemError) {
        fd = try Syscall.open(path, O_RDONLY | O_CLOEXEC)
    }

    deinit { Glibc.close(fd) }

    func within<T>(_ body: () throws(SystemError) -> T) throws(SystemError) -> T {
        let own = try Syscall.open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        defer { Glibc.close(own) }
        guard hl_setns_net(fd) == 0 else { throw SystemError.last("setns(lab namespace)") }
        // Coming back cannot fail for a namespace this thread was just in; if it ever did, the
        // rest of the run would make its sockets in the lab, so the run ends instead.
        defer { if hl_setns_net(own) != 0 { fatalError("hijack-lab: could not return to the runner's own network namespace: \(SystemError.last("setns"))") } }
        return try body()
    }
}

/// The request each kind of server answers, and how its reply is told from an agent's identity line.
enum ServerProtocol {
    /// The DNS query's id, fixed so that a reply can be matched to it.
    static let dnsID: [UInt8] = [0x4c, 0x61]

    static func request(_ kind: ServerSpec.Request, transport: Transport) -> [UInt8] {
        switch kind {
        case .http: return Array("GET / HTTP/1.0\r\nHost: localhost\r\nUser-Agent: hijack-lab\r\n\r\n".utf8)
        case .redis: return Array("PING\r\n".utf8)
        case .memcached: return Array("version\r\n".utf8)
        case .dns:
            // localhost. IN A, recursion desired.
            let query = dnsID + [0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00] + [9] + Array("localhost".utf8) + [0, 0x00, 0x01, 0x00, 0x01]
            return transport == .tcp ? [UInt8(query.count >> 8), UInt8(query.count & 0xff)] + query : query
        }
    }

    /// Whether `reply` is the server's own answer to the request.
    static func isServerReply(_ reply: [UInt8], kind: ServerSpec.Request, transport: Transport) -> Bool {
        let starts = { (prefix: String) in reply.starts(with: Array(prefix.utf8)) }
        switch kind {
        case .http: return starts("HTTP/")
        case .redis: return starts("+PONG")
        case .memcached: return starts("VERSION ")
        case .dns:
            let message = transport == .tcp ? Array(reply.dropFirst(2)) : reply
            return message.count >= 12 && Array(message[0..<2]) == dnsID && message[2] & 0x80 != 0
        }
    }

    /// The reply's first line, as text to show (escaped where it is shown); a DNS reply as its rcode.
    static func firstLine(_ reply: [UInt8], kind: ServerSpec.Request, transport: Transport) -> String {
        if kind == .dns, isServerReply(reply, kind: kind, transport: transport) {
            let message = transport == .tcp ? Array(reply.dropFirst(2)) : reply
            let codes = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"]
            let code = Int(message[3] & 0x0f)
            return "DNS response " + (code < codes.count ? codes[code] : "rcode \(code)") + ", \(Int(message[6]) << 8 | Int(message[7])) answers"
        }
        let line = reply.prefix { $0 != UInt8(ascii: "\n") && $0 != UInt8(ascii: "\r") }
        return String(decoding: line.prefix(200), as: UTF8.self)
    }
}

/// The clients of a server run: real sockets made in the lab host (127.0.0.1, ::1, localhost)
/// and in the external peer (the lab host's interface addresses), each one connection or
/// datagram. For TCP the receiver is the process that holds the accepted socket, found
/// through sock_diag's record of the established connection in the lab host while the
/// client still holds it open, and its owner in /proc; the reply must agree. For UDP it is
/// whoever answered.
struct ServerClients {
    let host: LabNamespace
    let peer: LabNamespace
    let kind: ServerSpec.Request
    let timeout: Double
    /// The server's PID namespace, "pid:[N]": its processes are the ones in it.
    let serverPIDNamespace: String

    /// The destinations, and where each client runs.
    static let destinations: [(client: ProbeClient, destination: String)] = [
        (.host, "127.0.0.1"), (.host, "::1"), (.host, "localhost"), (.peer, Topology.Lab.hostV4), (.peer, Topology.Lab.hostV6),
    ]

    /// One delivery to `destination`. `attacker`: the agent bound beside the server, if any.
    func deliver(_ destination: String, from client: ProbeClient, transport: Transport, port: UInt16, attacker: AgentIdentity?) -> Delivery {
        var delivery = Delivery(client: client, destination: destination, transport: transport)
        let addresses: [SocketAddress]
        if let numeric = SocketAddress(host: destination, port: port) {
            addresses = [numeric]
        } else {
            addresses = LabHosts.lab.addresses(for: destination, port: port)
        }
        guard !addresses.isEmpty else {
            delivery.error = "not in the lab's hosts file"
            delivery.agrees = false
            return delivery
        }
        for address in addresses {
            if let refusal = LabAddressPolicy.refusal(for: address, labRangesAllowed: true) {
                delivery.error = "refused to send to \(address.host): \(refusal)"
                delivery.agrees = false
                return delivery
            }
        }
        for (index, address) in addresses.enumerated() {
            delivery = attempt(address, delivery: Delivery(client: client, destination: destination, transport: transport, remote: address.host),
                               transport: transport, attacker: attacker)
            // A client of a name goes on to its next address only when this one refused at once.
            let refused = delivery.error.map { ProbeConnection.fallbackErrors.contains($0) } ?? false
            if !(refused && index + 1 < addresses.count) { break }
        }
        return delivery
    }

    private func attempt(_ address: SocketAddress, delivery start: Delivery, transport: Transport, attacker: AgentIdentity?) -> Delivery {
        var delivery = start
        let deadline = Deadline.after(seconds: timeout)
        let namespace = delivery.client == .host ? host : peer
        let socket: Socket
        do throws(SystemError) {
            socket = try namespace.within { () throws(SystemError) in try Socket(family: address.family, transport: transport, nonBlocking: true) }
        } catch {
            delivery.error = error.name
            delivery.agrees = false
            return delivery
        }
        defer { try? socket.close() }
        let request = ServerProtocol.request(kind, transport: transport)
        var reply: [UInt8] = []
        do throws(SystemError) {
            try socket.connect(to: address, until: deadline)
            let local = try socket.localAddress()
            delivery.local = local.description
            if transport == .tcp {
                // Who holds the accepted socket, while this client holds the connection open.
                if let owner = try acceptedBy(server: address, client: local, until: deadline) {
                    delivery.pid = owner.pid
                    delivery.uid = owner.uid
                    delivery.command = owner.command
                }
                try send(request, on: socket)
                reply = try readReply(socket, until: deadline)
            } else {
                reply = try exchange(request, on: socket, until: deadline)
                if reply.isEmpty {
                    delivery.lost = true
                    return delivery
                }
            }
        } catch {
            delivery.error = error.name
            // A TCP connection that was accepted and then failed still has its receiver.
            if delivery.pid == nil { return delivery }
        }
        classify(reply, into: &delivery, transport: transport, attacker: attacker)
        return delivery
    }

    /// Names the receiver from the reply and, for TCP, checks it against the kernel's owner.
    private func classify(_ reply: [UInt8], into delivery: inout Delivery, transport: Transport, attacker: AgentIdentity?) {
        delivery.reply = reply.isEmpty ? nil : ServerProtocol.firstLine(reply, kind: kind, transport: transport)
        let byReply: Receiver?
        var identityPID: Int32?
        if ServerProtocol.isServerReply(reply, kind: kind, transport: transport) {
            byReply = .server
        } else if let line = delivery.reply, let identity = AgentIdentity(line: line) {
            byReply = attacker.map { $0.id == identity.id && $0.pid == identity.pid } == true ? .attacker : .other
            identityPID = identity.pid
        } else {
            byReply = nil
        }
        if transport == .udp {
            delivery.receiver = byReply ?? .other
            delivery.agrees = byReply != nil && byReply != .other
            delivery.confirmedBy = "the reply"
            return
        }
        guard let pid = delivery.pid else {
            // No established socket was found for this client: its receiver is not known.
            delivery.receiver = .nobody
            delivery.agrees = delivery.error != nil && delivery.reply == nil
            return
        }
        let byKernel: Receiver
        if Self.pidNamespace(of: pid) == serverPIDNamespace {
            byKernel = .server
        } else if let attacker, attacker.pid == pid {
            byKernel = .attacker
        } else {
            byKernel = .other
        }
        delivery.receiver = byKernel
        delivery.confirmedBy = "sock_diag + /proc" + (byReply == nil ? "" : " and the reply")
        // The reply may be missing (a server that closed without one), but never name another.
        delivery.agrees = byKernel != .other && (byReply == nil ? delivery.error != nil || reply.isEmpty : byReply == byKernel)
            && (identityPID == nil || identityPID == pid)
    }

    /// The holder of the server side of the connection `client` → `server`, in the lab host.
    /// The connection is established before the server accepts it; until then its socket has
    /// no descriptor, so the lookup is repeated until a process holds it or the deadline passes.
    private func acceptedBy(server: SocketAddress, client: SocketAddress, until deadline: Deadline) throws(SystemError) -> (pid: Int32, uid: UInt32, command: String)? {
        let wantLocal = Self.plain(server.host)
        let wantRemote = Self.plain(client.host)
        while true {
            let sockets = try host.within { () throws(SystemError) in SockDiag.sockets(.tcp, states: 1 << 1) ?? [] }  // TCP_ESTABLISHED
            let match = sockets.first {
                $0.local_port == server.port && $0.remote_port == client.port && Self.plain($0.localHost) == wantLocal && Self.plain($0.remoteHost) == wantRemote
            }
            if let match, match.inode != 0, let owner = SocketOwners.find(sorted: [match.inode]).owners.first?.first {
                // The process's own uid (a worker's, not the listener's that the socket inherited).
                var status = stat()
                let uid = stat("/proc/\(owner.pid)", &status) == 0 ? status.st_uid : match.uid
                return (owner.pid, uid, owner.command)
            }
            if deadline.hasPassed { return nil }
            var pause = timespec(tv_sec: 0, tv_nsec: 2_000_000)
            nanosleep(&pause, nil)
        }
    }

    private func send(_ bytes: [UInt8], on socket: Socket) throws(SystemError) {
        try socket.write(String(decoding: bytes, as: UTF8.self))
    }

    /// What the receiver writes, up to its first line (or a DNS message), the end of the
    /// stream, or the deadline.
    private func readReply(_ socket: Socket, until deadline: Deadline) throws(SystemError) -> [UInt8] {
        var received: [UInt8] = []
        while received.count < 4096 {
            guard try waitFor(socket.fd, events: Int16(POLLIN), until: deadline) else {
                if received.isEmpty { throw SystemError(call: "read", code: ETIMEDOUT) }
                break
            }
            guard let bytes = try socket.readNow(limit: 4096 - received.count) else { continue }
            if bytes.isEmpty { break }
            received += bytes
            if kind != .dns, received.contains(UInt8(ascii: "\n")) { break }
            if kind == .dns, received.count >= 2, received.count >= 2 + (Int(received[0]) << 8 | Int(received[1])) { break }
            if kind == .dns, received.contains(UInt8(ascii: "\n")), AgentIdentity(line: ServerProtocol.firstLine(received, kind: kind, transport: .tcp)) != nil { break }
        }
        return received
    }

    /// A datagram and its answer: sent up to three times over the deadline, as a DNS client
    /// does. Empty when nothing answered.
    private func exchange(_ bytes: [UInt8], on socket: Socket, until deadline: Deadline) throws(SystemError) -> [UInt8] {
        let tries = 3
        for attempt in 0..<tries {
            let sent = bytes.withUnsafeBytes { raw in Glibc.send(socket.fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL)) }
            if sent < 0 { throw SystemError.last("send") }
            let slice = Deadline.after(seconds: timeout / Double(tries))
            let until = attempt == tries - 1 ? deadline : min(slice, deadline)
            if try waitFor(socket.fd, events: Int16(POLLIN), until: until) {
                var buffer = [UInt8](repeating: 0, count: 4096)
                let count = buffer.withUnsafeMutableBytes { raw in Glibc.recv(socket.fd, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT)) }
                if count < 0 { throw SystemError.last("recv") }
                return Array(buffer[..<count])
            }
        }
        return []
    }

    /// An address without its v4-mapped prefix: a dual-stack socket's record of an IPv4 peer.
    static func plain(_ host: String) -> String {
        host.hasPrefix("::ffff:") && host.contains(".") ? String(host.dropFirst(7)) : host
    }

    /// "pid:[4026532...]", the process's PID namespace; nil once it is gone.
    static func pidNamespace(of pid: Int32) -> String? { namespace("pid", of: pid) }

    /// The process's namespace of one kind ("net", "pid"), as /proc/PID/ns names it.
    static func namespace(_ kind: String, of pid: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: 64)
        let count = readlink("/proc/\(pid)/ns/\(kind)", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
