import HijackAudit
import HijackSystem
import Glibc

/// The child role: one process, at most one lab socket, driven over stdin.
///
/// It blocks only in poll(2), on stdin and its sockets. End of stdin means the runner is
/// gone, so an agent never outlives the run that started it, however that run ended.
/// Set-up is in AgentSetup, the server role in AgentServer, the client role in AgentProbe,
/// and the namespace tools in AgentTools.
public final class Agent {
    package let id: String
    /// "new" for a fresh network namespace, a /proc/PID/ns/net path to join one, or nil.
    package let netns: String?
    /// The account to drop to, with no supplementary groups, after entering the namespace:
    /// uid and gid 65534 for `--user other`, or a named account of /etc/passwd; nil stays as started.
    package let account: PasswdFile.Account?
    package var runAsOther: Bool { account != nil }
    /// The lab host's own client: it audits the lab host, so it keeps what reading other
    /// processes' descriptors takes (`AgentPrivileges`).
    package let hostClient: Bool
    /// Keep CAP_NET_BIND_SERVICE: the scenario's port is below ip_unprivileged_port_start.
    package let bindService: Bool
    var socket: Socket?
    var transport: Transport = .tcp
    var serving = false
    var connections: [Socket] = []

    public convenience init(id: String, netns: String? = nil, runAsOther: Bool = false, hostClient: Bool = false, bindService: Bool = false) {
        self.init(id: id, netns: netns, account: runAsOther ? Agent.other : nil, hostClient: hostClient, bindService: bindService)
    }

    package init(id: String, netns: String?, account: PasswdFile.Account?, hostClient: Bool, bindService: Bool) {
        self.id = id
        self.netns = netns
        self.account = account
        self.hostClient = hostClient
        // Another account's agent never keeps CAP_NET_BIND_SERVICE: below the unprivileged
        // ports it gets what that account would get.
        self.bindService = bindService && account == nil
    }

    /// `--user other`: uid and gid 65534, whatever /etc/passwd calls them.
    package static let other = PasswdFile.Account(name: "other", uid: 65534, gid: 65534)

    /// The identity written on every accepted connection.
    package var identity: AgentIdentity { AgentIdentity(id: id, pid: getpid(), uid: geteuid()) }

    /// Serves commands until stdin closes or an `exit` command. Returns the process exit status.
    public func run() -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        if let failure = takePlace() {
            emit(.event(.ready(pid: getpid(), uid: geteuid(), failure: failure)))
            return 2
        }
        emit(.event(.ready(pid: getpid(), uid: geteuid(), failure: nil)))
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            var watched = [pollfd(fd: 0, events: Int16(POLLIN), revents: 0)]
            if serving, let socket { watched.append(pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)) }
            watched += connections.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            do throws(SystemError) {
                _ = try Syscall.poll(&watched, timeoutMilliseconds: -1)
            } catch {
                return 3
            }
            if watched[0].revents != 0 {
                let count: Int
                do throws(SystemError) {
                    count = try Syscall.read(0, into: &chunk)
                } catch {
                    closeAll()
                    return 0
                }
                if count == 0 {
                    closeAll()
                    return 0
                }
                pending += chunk[..<count]
                var start = 0
                while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                    let line = Array(pending[start..<newline])
                    start = newline + 1
                    if handle(line) == .exit { return 0 }
                }
                pending.removeSubrange(..<start)
                // A command may have closed the sockets this poll set names: poll again.
                continue
            }
            if serving, watched.count > 1, watched[1].revents != 0 {
                if transport == .tcp { acceptPending() } else { answerDatagrams() }
            }
            let offset = serving ? 2 : 1
            for (index, entry) in watched.enumerated().dropFirst(offset).reversed() where entry.revents != 0 {
                if servedConnectionEnded(entry.fd) { try? connections.remove(at: index - offset).close() }
            }
        }
    }

    private enum Next { case carryOn, exit }

    private func handle(_ line: [UInt8]) -> Next {
        let command: AgentCommand
        do throws(AgentWire.Unreadable) {
            command = try AgentWire.decodeCommand(line)
        } catch {
            emit(.reply(.refused(reason: "unreadable command (\(error.reason)): \(String(decoding: line, as: UTF8.self))")))
            return .carryOn
        }
        switch command {
        case .bind(let request): emit(.reply(bind(request)))
        case .listen: emit(.reply(listen()))
        case .serve: emit(.reply(serve()))
        case .close(let wait): emit(.reply(.done(calls: closeAll(waiting: wait))))
        case .exit(let wait):
            emit(.reply(.done(calls: closeAll(waiting: wait))))
            return .exit
        case .sync: emit(.reply(.done(calls: [])))
        case .probe(let request): emit(.reply(probe(request)))
        case .exec(let argv, let input, let timeout): emit(.reply(execute(argv, input: input, timeoutMilliseconds: timeout)))
        case .open(let request, let listen): emit(.reply(open(request, listen: listen)))
        case .sysctl(let sysctl, let value): emit(.reply(write(sysctl, value)))
        case .audit(let port, let options, let ephemeral):
            emit(.reply(.audited(Audit.applying(ephemeral, to: Audit.run(port: port, userNames: .passwdFile, options: options)))))
        }
        return .carryOn
    }

    /// One line on stdout, written whole: the runner reads nothing that waits in a buffer.
    /// A runner that can no longer read ends the agent.
    func emit(_ message: AgentMessage) {
        var bytes = AgentWire.encode(message)
        bytes.append(UInt8(ascii: "\n"))
        do throws(SystemError) {
            try writeAll(1, bytes: bytes)
        } catch {
            exit(4)
        }
    }
}
