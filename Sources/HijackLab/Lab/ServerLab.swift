import HijackAgent
import HijackAudit
import HijackSystem
import Foundation
import CHijackLab
import Glibc

/// Runs the servers/ catalog (issue 22): each real server as its package's unit starts it,
/// inside a lab of its own (`LabNetwork`: the lab host and the external peer), on its
/// shipped default port; then the lab's agents try to take its traffic, and real clients
/// show who received each connection. The same run starts it again with its fix and
/// repeats the same attacks.
final class ServerLab {
    let settings: LabSettings
    /// Progress, one line per step, for stderr.
    var onProgress: ((String) -> Void)?
    /// How long a server may take to have every listening socket it should.
    var readySeconds: Double = 15
    /// Connections to a destination that a SO_REUSEPORT group shares by hash: enough that the
    /// attacker's share shows (1 in 2^16 to miss it in a group of two).
    static let sharedConnections = 16

    static let twins: [String: [String]] = Audit.Takeover.Destinations(interfaces: [[Topology.Lab.hostV4, Topology.Lab.hostV6]], ipv6: true).twins

    init(settings: LabSettings) {
        self.settings = settings
        // A server's init, orphaned when its launcher is killed, comes to this process to be
        // reaped at once rather than to the host's init, in its own time.
        _ = hl_set_child_subreaper()
    }

    /// Why no server can run here, or nil.
    static func unavailable() -> String? {
        if geteuid() != 0 { return "the servers run only as root: they start as root or as their own accounts, in namespaces this run makes (this is uid \(geteuid()))" }
        if let missing = Topology.netnsMissing() { return "the servers run only in the netns topology, which needs \(missing)" }
        return nil
    }

    /// Why this server cannot run on this machine (its package or program missing), or nil.
    static func missing(_ spec: ServerSpec, status: String?) -> String? {
        guard DpkgStatus.version(of: spec.package, in: status ?? "") != nil else { return "package \(spec.package) is not installed" }
        guard access(spec.program, X_OK) == 0 else { return "\(spec.program) is not there (package \(spec.package))" }
        guard PasswdFile.account(named: spec.account, in: ProcNet.read(PasswdFile.path) ?? "") != nil else {
            return "account \(spec.account) is not in \(PasswdFile.path) (package \(spec.package) makes it)"
        }
        return nil
    }

    /// One attack, as the shipped run planned it: the fix run repeats it (and adds its own).
    struct PlannedAttack {
        var who: ServerAttack.Who
        var user: String
        var uid: UInt32
        var transport: Transport
        var bind: AuditBind
    }

    func run(_ spec: ServerSpec, version: String, folder: String) -> ServerOutcome {
        var shipped = ServerRun(configuration: .shipped)
        var plan: [PlannedAttack] = []
        var portStart: UInt16 = 1024
        do throws(LabError) {
            (shipped, plan, portStart) = try runOnce(spec, configuration: .shipped, plan: nil, folder: folder)
        } catch {
            shipped.error = error.description
        }
        var fixed = ServerRun(configuration: .fix)
        if shipped.error == nil {
            do throws(LabError) {
                (fixed, _, _) = try runOnce(spec, configuration: .fix, plan: plan, folder: folder)
            } catch {
                fixed.error = error.description
            }
        } else {
            fixed.error = "not run: the shipped configuration could not finish"
        }
        return ServerOutcome(spec: spec, version: version, unprivilegedPortStart: portStart, shipped: shipped, fixed: fixed)
    }

    /// The server's files for one run: its folder, owned by its account, and its configuration.
    private func prepareFolder(_ spec: ServerSpec, configuration: ServerRun.Configuration, folder: String, account: PasswdFile.Account) throws(LabError) -> String {
        let directory = folder + "/" + spec.name + "-" + configuration.rawValue
        guard mkdir(directory, 0o750) == 0 else { throw .setup("cannot make \(directory): \(SystemError.last("mkdir"))") }
        guard chown(directory, account.uid, account.gid) == 0 else { throw .setup("cannot give \(directory) to \(spec.account): \(SystemError.last("chown"))") }
        if let file = spec.configFile {
            let text = configuration == .fix ? (spec.fixConfig ?? spec.config ?? "") : (spec.config ?? "")
            let path = directory + "/" + file
            guard FileManager.default.createFile(atPath: path, contents: Data(substitute(text, spec: spec, directory: directory).utf8),
                                                 attributes: [.posixPermissions: 0o644]) else {
                throw .setup("cannot write \(path)")
            }
        }
        return directory
    }

    private func substitute(_ text: String, spec: ServerSpec, directory: String) -> String {
        text.replacingOccurrences(of: "{dir}", with: directory)
            .replacingOccurrences(of: "{port}", with: String(spec.port))
            .replacingOccurrences(of: "{config}", with: directory + "/" + (spec.configFile ?? ""))
    }

    private func runOnce(_ spec: ServerSpec, configuration: ServerRun.Configuration, plan: [PlannedAttack]?,
                         folder: String) throws(LabError) -> (ServerRun, [PlannedAttack], UInt16) {
        var run = ServerRun(configuration: configuration)
        guard let account = PasswdFile.account(named: spec.account, in: ProcNet.read(PasswdFile.path) ?? "") else {
            throw .setup("account \(spec.account) is not in \(PasswdFile.path)")
        }
        let directory = try prepareFolder(spec, configuration: configuration, folder: folder, account: account)
        let log = directory + "/server.log"
        let network = try LabNetwork.make(settings, audits: true) { _ in }
        defer { network.kill() }
        guard let peerClient = network.peerClient else { throw .setup("the servers need the netns topology") }
        let host: LabNamespace
        let peer: LabNamespace
        do throws(SystemError) {
            host = try LabNamespace(path: "/proc/\(network.hostClient.pid)/ns/net")
            peer = try LabNamespace(path: "/proc/\(peerClient.pid)/ns/net")
        } catch {
            throw .setup("cannot hold the lab's namespaces: \(error)")
        }
        let portStart = (try? host.within { () throws(SystemError) in ProcNet.read("/proc/sys/net/ipv4/ip_unprivileged_port_start") })
            .flatMap { $0.flatMap { UInt16($0.trimmingCharacters(in: .whitespacesAndNewlines)) } } ?? 1024

        // The server, as its unit starts it: as root, or as its account.
        let command = (configuration == .fix ? spec.fixCommand ?? spec.command : spec.command).map { substitute($0, spec: spec, directory: directory) }
        var arguments = ["launch", "--netns", "/proc/\(network.hostClient.pid)/ns/net", "--dir", directory, "--log", log]
        if spec.startsAs == .account { arguments += ["--user", spec.account] }
        for variable in ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=\(directory)", "LANG=C.UTF-8"] + spec.environment.map({ substitute($0, spec: spec, directory: directory) }) {
            arguments += ["--env", variable]
        }
        arguments += ["--"] + command
        onProgress?("\(spec.name) (\(configuration.rawValue)): starting \(command.joined(separator: " "))")
        let started = Deadline.now()
        let launcher: ChildProcess
        do throws(SystemError) {
            launcher = try ChildProcess(executable: settings.agentExecutable, arguments: arguments, mergeStandardError: true, dieWithParent: true)
        } catch {
            throw .setup("cannot start the launcher: \(error)")
        }
        defer { stop(launcher, serverPID: run.pid) }
        let first = (try? launcher.readLine(until: .after(seconds: 5))) ?? nil
        guard let first, first.hasPrefix("pid "), let pid = Int32(first.dropFirst(4)) else {
            let rest = launcher.readAll(until: .after(seconds: 1)) ?? ""
            throw .setup("\(spec.name) did not start: \(first ?? "no answer from the launcher") \(rest)".trimmingCharacters(in: .whitespaces))
        }
        run.pid = pid
        run.network = ServerClients.namespace("net", of: pid)
        run.runnerNetwork = ServerClients.namespace("net", of: getpid())
        guard run.network != nil, run.network != run.runnerNetwork else {
            throw .setup("\(spec.name)'s process is not in the lab host's network namespace (\(run.network ?? "gone")); it was stopped")
        }
        guard let pidNamespace = ServerClients.pidNamespace(of: pid) else { throw .setup("\(spec.name) ended at once; its log: \(tail(log))") }

        // Ready: its own listening sockets on the port, seen in the lab host, options read
        // from each socket itself (the audit's code, run by the lab host's client).
        let readyBy = Deadline.after(seconds: readySeconds)
        var sockets: [AuditSocket] = []
        var previous: [UInt64] = []
        while true {
            let report = try network.hostClient.audit(port: spec.port)
            sockets = report.sockets.filter { socket in
                socket.port == spec.port && spec.transports.contains(socket.transport)
                    && socket.owners.contains { ServerClients.pidNamespace(of: $0.pid) == pidNamespace }
            }
            // Ready when there are enough, and the same ones twice in a row: a server binds
            // its sockets one after another, and the audit may come between two of them.
            let inodes = sockets.map(\.inode).sorted()
            if sockets.count >= spec.readySockets, inodes == previous { break }
            previous = inodes
            if ServerClients.pidNamespace(of: pid) == nil {
                run.log = tail(log)
                throw .setup("\(spec.name) exited before it was ready (\(sockets.count) of \(spec.readySockets) listening sockets); its log: \(run.log ?? "")")
            }
            if readyBy.hasPassed {
                run.log = tail(log)
                throw .setup("\(spec.name) was not ready within \(Int(readySeconds)) s: \(sockets.count) of \(spec.readySockets) listening sockets on port \(spec.port); its log: \(run.log ?? "")")
            }
            var pause = timespec(tv_sec: 0, tv_nsec: 10_000_000)
            nanosleep(&pause, nil)
        }
        run.readyMilliseconds = Int((Deadline.now().nanoseconds - started.nanoseconds) / 1_000_000)
        run.sockets = sockets.sorted(by: AuditSocket.inOrder).map { socket in
            ObservedSocket(transport: socket.transport, address: socket.address, port: socket.port, uid: socket.uid, user: socket.user,
                           reuseAddress: socket.options?.reuseAddress, reusePort: socket.options?.reusePort,
                           v6only: socket.options?.v6only ?? socket.v6only, device: socket.options?.device ?? socket.device,
                           owners: socket.owners.map { "\($0.pid) \($0.command)" })
        }
        guard sockets.allSatisfy({ $0.options?.isKnown == true }) else {
            throw .setup("the options of \(spec.name)'s sockets could not be read: " + sockets.compactMap { $0.options?.unknown }.joined(separator: "; "))
        }

        let clients = ServerClients(host: host, peer: peer, kind: spec.request, timeout: settings.connectTimeout, serverPIDNamespace: pidNamespace)
        for transport in spec.transports {
            for (client, destination) in ServerClients.destinations {
                run.baseline.append(clients.deliver(destination, from: client, transport: transport, port: spec.port, attacker: nil))
            }
        }
        // Rule "taken": a destination counts when the server answered it, or its twin (the
        // same name's other family: 127.0.0.1 and ::1, the interface's IPv4 and IPv6).
        var served = Set(run.served)
        for (destination, twins) in Self.twins where twins.contains(where: served.contains) { served.insert(destination) }

        // The attacks: planned from the shipped sockets, repeated on the fixed ones.
        let destinations = Audit.Takeover.Destinations(interfaces: [[Topology.Lab.hostV4, Topology.Lab.hostV6]], ipv6: true)
        // The fix run repeats the shipped run's attacks, then adds what the rules say could take
        // the fixed sockets' traffic: a fix may open a door of its own (a narrower bind).
        var attacks = plan ?? []
        for planned in planAttacks(spec, account: account, sockets: sockets, destinations: destinations, portStart: portStart)
        where !attacks.contains(where: { $0.transport == planned.transport && $0.uid == planned.uid && $0.bind == planned.bind }) {
            attacks.append(planned)
        }
        for (index, planned) in attacks.enumerated() {
            let bounds = Audit.Takeover.bounds(sockets.filter { $0.transport == planned.transport })
            let predicted = Audit.Takeover.attempt(planned.bind, uid: planned.uid, bindsService: planned.uid == 0, beside: bounds, transport: planned.transport,
                                                   port: spec.port, destinations: destinations, unprivilegedPortStart: portStart)
            onProgress?("\(spec.name) (\(configuration.rawValue)): \(planned.user) binds \(planned.transport.rawValue) \(planned.bind.address) \(planned.bind.options.joined(separator: "+"))")
            run.attacks.append(try attack(planned, index: index, predicted: predicted, spec: spec, network: network, clients: clients, served: served))
        }
        return (run, attacks, portStart)
    }

    /// Who attacks: a process of the server's account, of the sockets' owner where that
    /// differs (root, for a server that binds before dropping privileges), and of another
    /// account; each with the binds the rules say could take the traffic, and one they say fails.
    private func planAttacks(_ spec: ServerSpec, account: PasswdFile.Account, sockets: [AuditSocket], destinations: Audit.Takeover.Destinations,
                             portStart: UInt16) -> [PlannedAttack] {
        let passwd = ProcNet.read(PasswdFile.path) ?? ""
        var attackers: [(ServerAttack.Who, String, UInt32)] = [(.serverAccount, account.name, account.uid)]
        for uid in Set(sockets.map(\.uid)).sorted() where uid != account.uid {
            attackers.append((.socketOwner, uid == 0 ? "root" : PasswdFile.accounts(passwd).first { $0.uid == uid }?.name ?? "uid \(uid)", uid))
        }
        // Another account: nobody, or daemon where the server itself is nobody.
        let other = account.uid == Agent.other.uid ? PasswdFile.account(named: "daemon", in: passwd) : Agent.other
        if let other, !attackers.contains(where: { $0.2 == other.uid }) {
            let name = PasswdFile.accounts(passwd).first { $0.uid == other.uid }?.name ?? "uid \(other.uid)"
            attackers.append((.otherAccount, name, other.uid))
        }
        var planned: [PlannedAttack] = []
        for transport in spec.transports {
            let bounds = Audit.Takeover.bounds(sockets.filter { $0.transport == transport })
            for (who, user, uid) in attackers {
                for attempt in Audit.Takeover.plan(uid: uid, bindsService: uid == 0, beside: bounds, transport: transport, port: spec.port,
                                                   destinations: destinations, unprivilegedPortStart: portStart) {
                    planned.append(PlannedAttack(who: who, user: user, uid: uid, transport: transport, bind: attempt.bind))
                }
            }
        }
        return planned
    }

    private func attack(_ planned: PlannedAttack, index: Int, predicted: Audit.Takeover.Attempt, spec: ServerSpec, network: LabNetwork,
                        clients: ServerClients, served: Set<String>) throws(LabError) -> ServerAttack {
        // Root keeps CAP_NET_BIND_SERVICE, as a root process does; an account's agent has none.
        let user = planned.uid == 0 ? ["--bind-service"] : ["--user", planned.uid == Agent.other.uid ? "other" : planned.user]
        let agent = try AgentClient(executable: settings.agentExecutable, id: "attacker-\(index + 1)", extraArguments: network.placement + user, timeout: settings.replyTimeout)
        defer { agent.kill() }
        try agent.awaitReady()
        let request = SocketRequest(transport: planned.transport, address: planned.bind.address, port: spec.port, options: planned.bind.options)
        let calls = try agent.request(.open(request, listen: true)).calls
        let bind = calls.last { $0.call == "bind" }?.result ?? .notAttempted
        let listen: SyscallResult = planned.transport == .udp ? .notApplicable : bind == .ok ? calls.last { $0.call == "listen" }?.result ?? .notAttempted : .notAttempted
        var deliveries: [Delivery] = []
        if SyscallResult.served(bind: bind, listen: listen) {
            let identity = AgentIdentity(id: agent.id, pid: agent.pid, uid: agent.uid ?? planned.uid)
            for (client, destination) in ServerClients.destinations {
                let count = predicted.shared.contains(destination) ? Self.sharedConnections : 1
                for _ in 0..<count {
                    deliveries.append(clients.deliver(destination, from: client, transport: planned.transport, port: spec.port, attacker: identity))
                }
            }
        }
        var taken: [String] = []
        for delivery in deliveries where delivery.receiver == .attacker && served.contains(delivery.destination) && !taken.contains(delivery.destination) {
            taken.append(delivery.destination)
        }
        return ServerAttack(who: planned.who, user: planned.user, uid: planned.uid, transport: planned.transport, address: planned.bind.address,
                            options: planned.bind.options, predictedBind: predicted.binds, predictedTakes: predicted.takes.filter(served.contains),
                            rule: predicted.rule, bind: bind, listen: listen, deliveries: deliveries, taken: taken)
    }

    /// Kills the launcher's group, which takes the server (the init of its PID namespace)
    /// and with it every process it started; then waits until the server is gone.
    private func stop(_ launcher: ChildProcess, serverPID: Int32?) {
        launcher.killAndReap()
        guard let serverPID else { return }
        let gone = Deadline.after(seconds: 5)
        // Gone once it is a zombie (whoever inherits it reaps it in its own time): the init of
        // a PID namespace becomes one only after every other process in it has exited.
        while Self.isRunning(serverPID), !gone.hasPassed {
            var pause = timespec(tv_sec: 0, tv_nsec: 2_000_000)
            nanosleep(&pause, nil)
        }
        // This process is a subreaper (ServerLab.init), so the orphaned init is its to reap.
        var status: Int32 = 0
        while waitpid(serverPID, &status, WNOHANG) == 0, !gone.hasPassed {
            var pause = timespec(tv_sec: 0, tv_nsec: 1_000_000)
            nanosleep(&pause, nil)
        }
    }

    /// Whether the process exists and has not exited (not a zombie).
    static func isRunning(_ pid: Int32) -> Bool {
        guard let stat = ProcNet.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].dropFirst().first
        return state != "Z" && state != "X"
    }

    /// The last lines of the server's log, for a failure.
    private func tail(_ path: String) -> String {
        guard let text = ProcNet.read(path) else { return "(no log)" }
        let lines = text.split(separator: "\n").suffix(5)
        return lines.isEmpty ? "(empty log)" : lines.joined(separator: " | ")
    }
}

/// Installed packages and their versions, from dpkg's own status file (no dpkg-query needed).
enum DpkgStatus {
    static let path = "/var/lib/dpkg/status"

    static func version(of package: String, in status: String) -> String? {
        for stanza in status.components(separatedBy: "\n\n") {
            var name: String?
            var installed = false
            var version: String?
            for line in stanza.split(separator: "\n") {
                if line.hasPrefix("Package: ") { name = String(line.dropFirst(9)) }
                if line.hasPrefix("Status: ") { installed = line.hasSuffix(" installed") }
                if line.hasPrefix("Version: ") { version = String(line.dropFirst(9)) }
            }
            if name == package { return installed ? version : nil }
        }
        return nil
    }
}
