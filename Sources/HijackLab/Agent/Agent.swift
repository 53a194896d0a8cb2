import HijackAudit
import HijackSystem
import CHijackLab
import Foundation
import Glibc

/// The child role: one process, at most one lab socket, driven over stdin.
///
/// It blocks only in poll(2), on stdin and its sockets. End of stdin means the runner is
/// gone, so an agent never outlives the run that started it, however that run ended.
public final class Agent {
    package let id: String
    /// "new" for a fresh network namespace, a /proc/PID/ns/net path to join one, or nil.
    package let netns: String?
    /// Drop to uid and gid 65534 with no supplementary groups, after entering the namespace.
    package let runAsOther: Bool
    /// The lab host's own client: it audits the lab host, so it keeps what reading other
    /// processes' descriptors takes (`AgentPrivileges`).
    package let hostClient: Bool
    private var socket: Socket?
    private var transport: Transport = .tcp
    private var serving = false
    private var connections: [Socket] = []
    private let encoder = JSONEncoder()
    private let decoder = JSONDecoder()

    /// Keep CAP_NET_BIND_SERVICE: the scenario's port is below ip_unprivileged_port_start.
    package let bindService: Bool

    public init(id: String, netns: String? = nil, runAsOther: Bool = false, hostClient: Bool = false, bindService: Bool = false) {
        self.id = id
        self.netns = netns
        self.runAsOther = runAsOther
        self.hostClient = hostClient
        self.bindService = bindService && !runAsOther
    }

    /// Enters the namespace, then gives up every privilege the agent's role does not need,
    /// all before any socket exists. Both act on the calling thread, and this one thread
    /// does all of the agent's socket work.
    private func takePlace() -> String? {
        do throws(SystemError) {
            if netns == "new" {
                try check("unshare(CLONE_NEWNET)", hl_unshare_net())
            } else if let netns {
                let fd = open(netns, O_RDONLY | O_CLOEXEC)
                if fd == -1 { throw SystemError.last("open(\(netns))") }
                defer { Glibc.close(fd) }
                try check("setns(\(netns))", hl_setns_net(fd))
            }
            let keep = AgentPrivileges(netns: netns, hostClient: hostClient, bindService: bindService)
            try Capabilities.limitBoundingSet(to: keep.bounding)
            if runAsOther {
                // After the bounding set, which needs CAP_SETPCAP; setuid from root clears
                // the permitted and effective sets itself.
                try check("setgroups(0)", setgroups(0, nil))
                try check("setgid(65534)", setgid(65534))
                try check("setuid(65534)", setuid(65534))
                if geteuid() != 65534 || getegid() != 65534 { return "still uid \(geteuid()) gid \(getegid()) after dropping privileges" }
            }
            try Capabilities.limit(effective: keep.effective, permitted: keep.permitted)
            try check("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", hl_cap_ambient_clear_all())
            // Root hands capabilities to what it execs through the bounding set; any other uid
            // (a runner given CAP_SYS_ADMIN and CAP_NET_ADMIN as ambient capabilities) only
            // through the ambient set, so there the tool's capability goes back in alone.
            if geteuid() != 0 { try Capabilities.handOn(keep.bounding) }
            // Also where there was nothing to drop: no setuid program or file capability this
            // agent might exec can raise it afterwards.
            try check("prctl(PR_SET_NO_NEW_PRIVS)", hl_set_no_new_privs())
            let held = try Capabilities.current()
            if held.permitted & ~keep.permitted != 0 || held.effective & ~keep.effective != 0 {
                return "still holds capabilities \(String(held.permitted, radix: 16)) after dropping privileges"
            }
        } catch {
            return error.description
        }
        return nil
    }

    /// The identity written on every accepted connection: "socket-id pid uid".
    package var identity: String { "\(id) \(getpid()) \(geteuid())" }

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
            reply.audit = Audit.run(port: command.port, userNames: .passwdFile)
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
    package static let writableSysctls: Set<String> = ["/proc/sys/net/ipv4/icmp_ratemask", "/proc/sys/net/ipv4/icmp_ratelimit"]

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
        // A name comes from the lab's own hosts file alone, in the order a client's
        // getaddrinfo would try its addresses; nothing outside the lab (nscd, DNS, the
        // machine's /etc/hosts) ever sees it.
        let destinations: [SocketAddress]
        var resolved: [String]?
        if let numeric = SocketAddress(host: target, port: port) {
            destinations = [numeric]
        } else {
            destinations = LabHosts.lab.addresses(for: target, port: port)
            guard !destinations.isEmpty else { return AgentMessage(ok: false, error: "\(target) is not in the lab's hosts file") }
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

/// A call that returns -1 with errno on failure, as a thrown error naming it.
private func check(_ call: String, _ result: Int32) throws(SystemError) {
    if result == -1 { throw SystemError.last(call) }
}

/// Linux capability numbers (<linux/capability.h>) that an agent may keep.
package enum Capability: Int32, CaseIterable {
    case dacReadSearch = 2
    case setpcap = 8
    case netBindService = 10
    case netAdmin = 12
    case sysPtrace = 19

    package var mask: UInt64 { 1 << UInt64(rawValue) }
}

/// The capabilities an agent keeps once its namespace is set up, by what it is for; as
/// masks, bit n for capability n. Anything not named here is gone before its first socket.
package struct AgentPrivileges: Equatable {
    /// What the agent itself still uses.
    package var effective: UInt64 = 0
    /// `effective`, and what it only hands on to a tool it execs.
    package var permitted: UInt64 = 0
    /// The most that any program it execs may have.
    package var bounding: UInt64 = 0

    /// A socket agent keeps nothing: it binds ports from 10000 up (no CAP_NET_BIND_SERVICE),
    /// its reuse, V6ONLY and linger options need none, and SO_BINDTODEVICE on a socket not yet
    /// bound to a device is unprivileged since Linux 5.7. Entering its namespace came first.
    package init(netns: String?, hostClient: Bool, bindService: Bool = false) {
        if bindService {
            // A socket agent of a privileged-port scenario binds a port below
            // ip_unprivileged_port_start; it uses nothing else.
            effective |= Capability.netBindService.mask
            permitted |= Capability.netBindService.mask
        }
        if netns == "new" {
            // A client that made its namespace execs `ip -batch` there, to bring up lo and the
            // veth: CAP_NET_ADMIN in that child. As uid 0 under NO_NEW_PRIVS, execve gives the
            // tool the bounding set intersected with this agent's permitted set, so it stays in
            // both; the agent itself never uses it, so it is not effective here.
            permitted |= Capability.netAdmin.mask
            bounding |= Capability.netAdmin.mask
        }
        if hostClient {
            // The audit finds each socket's processes through /proc/PID/fd of every process:
            // listing another user's needs CAP_DAC_READ_SEARCH, and reading its links passes a
            // ptrace access check that a process of another uid, or one with capabilities this
            // agent lacks (the runner), fails without CAP_SYS_PTRACE. Writing the ICMP rate
            // sysctls of the lab's own namespace needs none: they are root's files, mode 0644.
            let audit = Capability.dacReadSearch.mask | Capability.sysPtrace.mask
            effective |= audit
            permitted |= audit
        }
    }
}

/// Raw capget/capset and the bounding set (no libcap), each call checked.
package enum Capabilities {
    package static func current() throws(SystemError) -> (effective: UInt64, permitted: UInt64) {
        var effective: UInt64 = 0, permitted: UInt64 = 0, inheritable: UInt64 = 0
        try check("capget", hl_capget(&effective, &permitted, &inheritable))
        return (effective, permitted)
    }

    /// Removes from the bounding set every capability outside `keep`, so that no program the
    /// agent execs, as uid 0 or through file capabilities, can come back with one. Dropping
    /// takes CAP_SETPCAP; a process without it (not root) has nothing the bounding set could
    /// hand out, since under NO_NEW_PRIVS an exec never gets more than the permitted set.
    package static func limitBoundingSet(to keep: UInt64) throws(SystemError) {
        guard try current().permitted & Capability.setpcap.mask != 0 else { return }
        var capability: Int32 = 0
        while true {
            let held = hl_capbset_read(capability)
            // The kernel answers EINVAL past its last capability.
            if held == -1 && errno == EINVAL && capability > 0 { return }
            try check("prctl(PR_CAPBSET_READ, \(capability))", held)
            if held == 1 && (capability >= 64 || keep & (1 << UInt64(capability)) == 0) {
                try check("prctl(PR_CAPBSET_DROP, \(capability))", hl_capbset_drop(capability))
            }
            capability += 1
        }
    }

    /// Puts those of `capabilities` still permitted into the inheritable and ambient sets,
    /// so that a program exec'd by a uid other than 0 gets them.
    package static func handOn(_ capabilities: UInt64) throws(SystemError) {
        var effective: UInt64 = 0, permitted: UInt64 = 0, inheritable: UInt64 = 0
        try check("capget", hl_capget(&effective, &permitted, &inheritable))
        let given = capabilities & permitted
        guard given != 0 else { return }
        try check("capset", hl_capset(effective, permitted, inheritable | given))
        for capability in Capability.allCases where given & capability.mask != 0 {
            try check("prctl(PR_CAP_AMBIENT_RAISE, \(capability.rawValue))", hl_cap_ambient_raise(capability.rawValue))
        }
    }

    /// Keeps only the given capabilities of those held, and none inheritable. capset can
    /// only lower a set, so what is not held now stays absent.
    package static func limit(effective: UInt64, permitted: UInt64) throws(SystemError) {
        let held = try current().permitted
        try check("capset", hl_capset(effective & permitted & held, permitted & held, 0))
    }
}
