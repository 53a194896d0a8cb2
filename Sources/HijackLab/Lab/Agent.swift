import CHijackLab
import Foundation
import Glibc

/// The child role: one process, at most one lab socket, driven over stdin.
///
/// It blocks only in poll(2), on stdin and its sockets. End of stdin means the runner is
/// gone, so an agent never outlives the run that started it, however that run ended.
public final class Agent {
    let id: String
    /// "new" for a fresh network namespace, a /proc/PID/ns/net path to join one, or nil.
    let netns: String?
    /// Drop to uid and gid 65534 with no supplementary groups, after entering the namespace.
    let runAsOther: Bool
    /// Resolve names with the lab host's own /etc/hosts (a private mount namespace).
    let labHosts: Bool
    private var socket: Socket?
    private var transport: Transport = .tcp
    private var serving = false
    private var connections: [Socket] = []
    private let encoder = JSONEncoder()
    private let decoder = JSONDecoder()

    public init(id: String, netns: String? = nil, runAsOther: Bool = false, labHosts: Bool = false) {
        self.id = id
        self.netns = netns
        self.runAsOther = runAsOther
        self.labHosts = labHosts
    }

    /// Enters the namespace and drops privileges before any socket exists. Both act on the
    /// calling thread, and this one thread does all of the agent's socket work.
    private func takePlace() -> String? {
        if netns == "new" {
            if hl_unshare_net() == -1 { return "unshare(CLONE_NEWNET): \(SystemError.name(of: errno))" }
        } else if let netns {
            let fd = open(netns, O_RDONLY | O_CLOEXEC)
            if fd == -1 { return "open(\(netns)): \(SystemError.name(of: errno))" }
            defer { Glibc.close(fd) }
            if hl_setns_net(fd) == -1 { return "setns(\(netns)): \(SystemError.name(of: errno))" }
        }
        if labHosts {
            // The file only has to exist until it is mounted; the mount keeps it alive, and
            // the mount namespace, like the network one, ends with this process.
            var template = Array("/tmp/hijack-lab-hosts-XXXXXX".utf8CString)
            let fd = mkstemp(&template)
            if fd == -1 { return "mkstemp: \(SystemError.name(of: errno))" }
            let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            defer { unlink(path) }
            let content = Array(Topology.Lab.hostsFile.utf8)
            let written = content.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            Glibc.close(fd)
            if written != content.count { return "writing the lab hosts file failed" }
            if hl_private_hosts_file(path) == -1 { return "mounting the lab hosts file: \(SystemError.name(of: errno))" }
        }
        if runAsOther {
            if setgroups(0, nil) == -1 { return "setgroups(0): \(SystemError.name(of: errno))" }
            if setgid(65534) == -1 { return "setgid(65534): \(SystemError.name(of: errno))" }
            if setuid(65534) == -1 { return "setuid(65534): \(SystemError.name(of: errno))" }
            if geteuid() != 65534 || getegid() != 65534 { return "still uid \(geteuid()) gid \(getegid()) after dropping privileges" }
        }
        return nil
    }

    /// The identity written on every accepted connection: "socket-id pid uid".
    var identity: String { "\(id) \(getpid()) \(geteuid())" }

    /// Serves commands until stdin closes or an `exit` command. Returns the process exit status.
    public func run() -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        if let failure = takePlace() {
            emit(AgentMessage(event: "ready", ok: false, error: failure, pid: getpid(), uid: geteuid()))
            return 2
        }
        emit(AgentMessage(event: "ready", ok: true, pid: getpid(), uid: geteuid()))
        var pending: [UInt8] = []
        while true {
            var watched = [pollfd(fd: 0, events: Int16(POLLIN), revents: 0)]
            if serving, let socket { watched.append(pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)) }
            watched += connections.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            if poll(&watched, nfds_t(watched.count), -1) == -1 {
                if errno == EINTR { continue }
                return 3
            }
            if watched[0].revents != 0 {
                var chunk = [UInt8](repeating: 0, count: 4096)
                let count = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
                if count == 0 || (count < 0 && errno != EINTR) { closeAll(); return 0 }
                if count > 0 { pending += chunk[..<count] }
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = Array(pending[..<newline])
                    pending.removeSubrange(...newline)
                    if handle(line) == .exit { return 0 }
                }
                // A command may have closed the sockets this poll set names: poll again.
                continue
            }
            if serving, watched.count > 1, watched[1].revents != 0 {
                if transport == .tcp { acceptPending() } else { answerDatagrams() }
            }
            let offset = serving ? 2 : 1
            // A served connection ends when the client says "S" (the server is to close first,
            // so TIME_WAIT lands here) or when the client's FIN arrives (it closed first).
            for (index, entry) in watched.enumerated().dropFirst(offset).reversed() where entry.revents != 0 {
                var scratch = [UInt8](repeating: 0, count: 256)
                let count = scratch.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 || scratch[..<count].contains(UInt8(ascii: "S")) { try? connections.remove(at: index - offset).close() }
            }
        }
    }

    private enum Next { case carryOn, exit }

    private func handle(_ line: [UInt8]) -> Next {
        guard let command = try? decoder.decode(AgentCommand.self, from: Data(line)) else {
            emit(AgentMessage(ok: false, error: "unreadable command: \(String(decoding: line, as: UTF8.self))"))
            return .carryOn
        }
        switch command.op {
        case .bind: emit(bind(command))
        case .listen: emit(listen())
        case .serve: emit(serve())
        case .close: emit(AgentMessage(ok: true, calls: closeAll(waiting: command.timeoutMilliseconds)))
        case .exit:
            emit(AgentMessage(ok: true, calls: closeAll(waiting: command.timeoutMilliseconds)))
            return .exit
        case .sync: emit(AgentMessage(ok: true))
        case .probe: emit(probe(command))
        case .exec: emit(execute(command))
        case .open:
            var reply = bind(command)
            if command.listen == true, reply.calls?.last?.call == "bind", reply.calls?.last?.result == "ok" {
                if transport == .tcp {
                    let listening = listen()
                    reply.calls = (reply.calls ?? []) + (listening.calls ?? [])
                    if listening.calls?.last?.result == "ok" { _ = serve() }
                } else {
                    _ = serve()
                }
            }
            emit(reply)
        case .sysctl:
            emit(writeSysctl(command))
        case .audit:
            var reply = AgentMessage(ok: true)
            reply.audit = Audit.run(port: command.port)
            emit(reply)
        }
        return .carryOn
    }

    private func bind(_ command: AgentCommand) -> AgentMessage {
        guard socket == nil else { return AgentMessage(ok: false, error: "this agent already has a socket") }
        guard let host = command.address, let port = command.port, let address = SocketAddress(host: host, port: port) else {
            return AgentMessage(ok: false, error: "bind needs a numeric address and a port")
        }
        var options: [SocketOption] = []
        for name in command.options ?? [] {
            guard let option = SocketOption(name: name) else { return AgentMessage(ok: false, error: "unknown option \(name)") }
            options.append(option)
        }
        if let device = command.device { options.append(.bindToDevice(device)) }
        transport = command.transport ?? .tcp
        var calls: [SyscallRecord] = []
        let family = address.family == AF_INET ? "AF_INET" : "AF_INET6"
        let kind = transport == .tcp ? "SOCK_STREAM" : "SOCK_DGRAM"
        do throws(SystemError) {
            let created = try Socket(family: address.family, transport: transport)
            calls.append(SyscallRecord(call: "socket", arguments: "\(family), \(kind)", result: "ok"))
            socket = created
            for option in options {
                do throws(SystemError) {
                    try created.set(option)
                    calls.append(SyscallRecord(call: "setsockopt", arguments: "\(option.name), \(option.valueDescription)", result: "ok"))
                } catch {
                    calls.append(SyscallRecord(call: "setsockopt", arguments: "\(option.name), \(option.valueDescription)", result: error.name))
                    throw error
                }
            }
            do throws(SystemError) {
                try created.bind(to: address)
                calls.append(SyscallRecord(call: "bind", arguments: address.description, result: "ok"))
            } catch {
                calls.append(SyscallRecord(call: "bind", arguments: address.description, result: error.name))
            }
        } catch where error.call == "socket" {
            calls.append(SyscallRecord(call: "socket", arguments: "\(family), \(kind)", result: error.name))
        } catch {
            // A failed setsockopt is already recorded; bind was not attempted.
        }
        return AgentMessage(ok: true, calls: calls)
    }

    private func listen() -> AgentMessage {
        guard let socket else { return AgentMessage(ok: false, error: "listen before a socket exists") }
        do throws(SystemError) {
            try socket.listen()
            return AgentMessage(ok: true, calls: [SyscallRecord(call: "listen", arguments: "128", result: "ok")])
        } catch {
            return AgentMessage(ok: true, calls: [SyscallRecord(call: "listen", arguments: "128", result: error.name)])
        }
    }

    private func serve() -> AgentMessage {
        guard let socket else { return AgentMessage(ok: false, error: "serve before a socket exists") }
        // Non-blocking, so one readiness report lets us drain every queued connection.
        _ = fcntl(socket.fd, F_SETFL, fcntl(socket.fd, F_GETFL) | O_NONBLOCK)
        serving = true
        return AgentMessage(ok: true)
    }

    private func acceptPending() {
        guard let socket else { return }
        while true {
            let accepted: (connection: Socket, peer: SocketAddress?)
            do throws(SystemError) {
                accepted = try socket.accept()
            } catch {
                return
            }
            // The event goes out before the identity, so by the time a client has read the
            // identity, the runner can already find this acceptance in the pipe.
            emit(AgentMessage(event: "accepted", peer: accepted.peer?.description))
            try? accepted.connection.write(identity + "\n")
            connections.append(accepted.connection)
        }
    }

    /// UDP "serving": answer each datagram with this agent's identity, after reporting it.
    private func answerDatagrams() {
        guard let socket else { return }
        while let datagram = try? socket.receiveNow() {
            emit(AgentMessage(event: "received", peer: datagram.from?.description))
            if let sender = datagram.from { try? socket.send(identity + "\n", to: sender) }
        }
    }

    @discardableResult
    private func closeAll(waiting milliseconds: Int? = nil) -> [SyscallRecord] {
        // A client that has its identity closes at once; waiting for its FIN here keeps a
        // client-first connection from turning server-first just because the server exits.
        let deadline = Deadline.after(seconds: Double(milliseconds ?? 2000) / 1000)
        for connection in connections {
            while (try? waitFor(connection.fd, events: Int16(POLLIN), until: deadline)) == true {
                var scratch = [UInt8](repeating: 0, count: 256)
                let count = scratch.withUnsafeMutableBytes { read(connection.fd, $0.baseAddress, $0.count) }
                if count == 0 || (count < 0 && errno != EINTR) || scratch[..<max(count, 0)].contains(UInt8(ascii: "S")) { break }
            }
            try? connection.close()
        }
        connections.removeAll()
        serving = false
        guard let socket else { return [] }
        self.socket = nil
        do throws(SystemError) {
            try socket.close()
            return [SyscallRecord(call: "close", arguments: "", result: "ok")]
        } catch {
            return [SyscallRecord(call: "close", arguments: "", result: error.name)]
        }
    }

    /// The only settings an agent may change: ICMP rate limits, and only inside a namespace the run made.
    static let writableSysctls: Set<String> = ["/proc/sys/net/ipv4/icmp_ratemask", "/proc/sys/net/ipv4/icmp_ratelimit"]

    private func writeSysctl(_ command: AgentCommand) -> AgentMessage {
        guard netns != nil else { return AgentMessage(ok: false, error: "sysctl is refused outside a lab namespace") }
        guard let path = command.address, Self.writableSysctls.contains(path), let value = command.input else {
            return AgentMessage(ok: false, error: "sysctl may set only " + Self.writableSysctls.sorted().joined(separator: ", "))
        }
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return AgentMessage(ok: true, calls: [SyscallRecord(call: "open", arguments: path, result: SystemError.name(of: errno))]) }
        defer { Glibc.close(fd) }
        let bytes = Array(value.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        return AgentMessage(ok: true, calls: [SyscallRecord(call: "write", arguments: "\(path), \(value)", result: written == bytes.count ? "ok" : SystemError.name(of: errno))])
    }

    /// Runs a tool here, in this agent's namespace: children inherit the spawning thread's.
    private func execute(_ command: AgentCommand) -> AgentMessage {
        guard let argv = command.argv, let executable = argv.first else { return AgentMessage(ok: false, error: "exec needs argv") }
        let deadline = Deadline.after(seconds: Double(command.timeoutMilliseconds ?? 5000) / 1000)
        let shown = argv.joined(separator: " ")
        do throws(SystemError) {
            let child = try ChildProcess(executable: executable, arguments: Array(argv.dropFirst()), mergeStandardError: true)
            if let input = command.input {
                for line in input.split(separator: "\n") { try child.send(String(line)) }
            }
            child.closeStdin()
            let output = child.readAll(until: deadline)
            let status = child.finish(until: deadline)
            guard let output else {
                return AgentMessage(ok: true, calls: [SyscallRecord(call: "exec", arguments: shown, result: "ETIMEDOUT")], error: "no answer in time")
            }
            let exited = (status & 0x7f) == 0 ? "exit \((status >> 8) & 0xff)" : "signal \(status & 0x7f)"
            return AgentMessage(ok: true, calls: [SyscallRecord(call: "exec", arguments: shown, result: status == 0 ? "ok" : exited)],
                                error: output.isEmpty ? nil : output)
        } catch {
            return AgentMessage(ok: true, calls: [SyscallRecord(call: "exec", arguments: shown, result: error.name)])
        }
    }

    /// The client role: `count` connections (TCP) or datagrams (UDP), one new socket each,
    /// so that each has its own source port as separate clients would.
    private func probe(_ command: AgentCommand) -> AgentMessage {
        if let addresses = command.addresses, let counts = command.counts, addresses.count == counts.count {
            var combined = AgentMessage(ok: true, connections: [])
            for (address, count) in zip(addresses, counts) {
                var single = command
                single.addresses = nil
                single.address = address
                single.count = count
                let reply = probe(single)
                guard reply.ok == true else { return reply }
                combined.connections! += reply.connections ?? []
            }
            return combined
        }
        guard let target = command.address, let port = command.port else { return AgentMessage(ok: false, error: "probe needs an address and a port") }
        let transport = command.transport ?? .tcp
        let timeout = Double(command.timeoutMilliseconds ?? 2000) / 1000
        // A name is resolved as a client would: getaddrinfo, then its addresses in its order.
        let destinations: [SocketAddress]
        var resolved: [String]?
        if let numeric = SocketAddress(host: target, port: port) {
            destinations = [numeric]
        } else {
            switch Self.resolve(target, port: port, transport: transport) {
            case .failure(let failure): return AgentMessage(ok: false, error: failure.reason)
            case .success(let addresses): destinations = addresses
            }
            resolved = destinations.map(\.host)
        }
        // Never send outside the lab, whatever a name resolved to.
        for destination in destinations {
            if let refusal = LabAddressPolicy.refusal(for: destination.host, labRangesAllowed: command.labRanges ?? false) {
                return AgentMessage(ok: false, error: "refusing to probe \(destination.host) (\(target)): \(refusal)", resolved: resolved)
            }
        }
        var connections: [ProbeConnection] = []
        for sequence in 0..<max(0, command.count ?? 1) {
            if transport == .udp {
                connections.append(Self.datagram(sequence, to: destinations[0], timeout: timeout))
            } else {
                connections.append(Self.connection(to: destinations, closes: command.closes ?? .clientFirst, timeout: timeout))
            }
        }
        return AgentMessage(ok: true, connections: connections, resolved: resolved)
    }

    /// One TCP connection: the first destination that accepts it, in order, as clients do.
    private static func connection(to destinations: [SocketAddress], closes: CloseOrder, timeout: Double) -> ProbeConnection {
        var record = ProbeConnection()
        for destination in destinations {
            record = ProbeConnection(remote: destination.host)
            do throws(SystemError) {
                let client = try Socket(family: destination.family, transport: .tcp)
                let deadline = Deadline.after(seconds: timeout)
                try client.connect(to: destination, until: deadline)
                record.local = try client.localAddress().description
                if closes == .serverFirst { try client.write("S\n") }
                let line = try client.readLine(until: deadline)
                if line.isEmpty { throw SystemError(call: "read", code: ECONNRESET) }
                record.identity = line
                // Close only after the server's FIN, so the server is the side that closed first.
                if closes == .serverFirst, try !client.readLine(until: deadline).isEmpty { throw SystemError(call: "read", code: EPROTO) }
                if closes == .clientReset { try client.set(.linger(seconds: 0)) }
                try client.close()
                return record
            } catch {
                record.error = error.name
                // Only a refused or unreachable address sends a client on to the next one.
                guard [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL, EAFNOSUPPORT].contains(error.code) else { return record }
            }
        }
        return record
    }

    /// One datagram from a fresh socket; the reply names the receiver. No reply is a loss.
    /// The socket is connected, so an ICMP port unreachable comes back as ECONNREFUSED at
    /// once instead of a wait; the lab's servers answer from the address they were sent to.
    private static func datagram(_ sequence: Int, to destination: SocketAddress, timeout: Double) -> ProbeConnection {
        var record = ProbeConnection(remote: destination.host)
        do throws(SystemError) {
            let client = try Socket(family: destination.family, transport: .udp)
            try client.connect(to: destination, until: .after(seconds: timeout))
            try client.send("seq \(sequence)\n", to: destination)
            record.local = try client.localAddress().description
            if let reply = try client.receive(until: .after(seconds: timeout)) {
                record.identity = reply.text.split(separator: "\n").first.map(String.init) ?? reply.text
            } else {
                record.lost = true
            }
            try client.close()
        } catch {
            record.error = error.name
        }
        return record
    }

    /// getaddrinfo with no flags, as Python's create_connection and most clients call it.
    static func resolve(_ name: String, port: UInt16, transport: Transport) -> Result<[SocketAddress], Topology.Unavailable> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = transport.socketType
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(name, nil, &hints, &list)
        guard status == 0 else { return .failure(.init(reason: "getaddrinfo(\(name)): \(String(cString: gai_strerror(status)))")) }
        defer { freeaddrinfo(list) }
        var addresses: [SocketAddress] = []
        var entry = list
        while let current = entry {
            var storage = sockaddr_storage()
            withUnsafeMutableBytes(of: &storage) { raw in
                raw.copyMemory(from: UnsafeRawBufferPointer(start: current.pointee.ai_addr, count: Int(current.pointee.ai_addrlen)))
            }
            if var address = SocketAddress(storage: storage) {
                address.port = port
                if !addresses.contains(address) { addresses.append(address) }
            }
            entry = current.pointee.ai_next
        }
        return addresses.isEmpty ? .failure(.init(reason: "getaddrinfo(\(name)) returned no address")) : .success(addresses)
    }

    private func emit(_ message: AgentMessage) {
        guard var bytes = try? encoder.encode(message) else { return }
        bytes.append(UInt8(ascii: "\n"))
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { write(1, $0.baseAddress! + offset, $0.count - offset) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { exit(4) }
            offset += count
        }
    }
}
