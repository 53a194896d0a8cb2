import HijackAgent
import HijackAudit
import HijackSystem
import CHijackLab
import Glibc

package struct AuditCommand: Command {
    package static let name = "audit"
    package static let synopsis = "audit [options]"
    package static let summary = CommandIndex.summary(of: name)

    package enum Format: String, CaseIterable {
        case table, json, jsonl, prometheus
    }

    package static let options = [
        OptionSpec("--all-netns", nil, "audit every network namespace (/proc/*/ns/net, /run/netns), not only this one"),
        OptionSpec("--format", "FORMAT", "table (default), json, jsonl (one finding per line) or prometheus (textfile collector)"),
        OptionSpec("--output", "FILE", "where --format writes (default -, stdout); a file is replaced atomically"),
        OptionSpec("--json", "FILE", "write the sockets and findings as JSON (- for stdout, instead of the table)"),
        OptionSpec("--min-severity", "LEVEL", "info (default), warning or alarm: what the table, jsonl and watch show"),
        OptionSpec("--port", "N", "only this port"),
        OptionSpec("--no-options", nil, "do not read each socket's own options (pidfd_getfd); predict from families alone"),
        OptionSpec("--watch", nil, "audit again every interval and print only changes, timestamped, until Ctrl-C"),
        OptionSpec("--include-ephemeral", nil, "count every UDP socket in ip_local_port_range as a server's, not only kept or bound ones"),
        OptionSpec("--interval", "S", "seconds between audits with --watch (default 1, 0.05 to 3600)"),
        OptionSpec("--expect", "FILE|LIST", "who should own which ports: a file, or entries like tcp/8080=www-data,udp/53=dnsmasq", repeatable: true),
    ]
    package static let discussion = """
        Reads the current network namespace's TCP listeners and bound UDP sockets through
        NETLINK_SOCK_DIAG, as ss does (/proc/net/{tcp,tcp6,udp,udp6} where the kernel has no
        sock_diag: the JSON's "source" says which), and maps each socket to its process through
        /proc/PID/fd; as another user you see their sockets but not their processes (shown as ?):
        root sees more. Where owners' start times differ, a finding names the later socket as the
        likely intruder. IPV6_V6ONLY and bound devices come from NETLINK_SOCK_DIAG; without it a
        lone [::] is read as dual-stack. Process and user names are printed escaped (\\x1b, \\n):
        they are not this tool's text.
        Options: each socket's own SO_REUSEADDR, SO_REUSEPORT, IPV6_V6ONLY, SO_BINDTODEVICE, SO_TYPE
        and SO_PROTOCOL, read with getsockopt from a copy of its owner's descriptor (pidfd_open +
        pidfd_getfd, Linux 5.6; root, or the owner's uid), closed at once and never used otherwise:
        the OPTIONS column and the JSON's "options". Where the owner cannot be inspected they read
        "unknown (needs root or uid N)" and the port keeps the family rule (exposure); --no-options
        skips them. From them, the audit predicts who could take each destination now (127.0.0.1,
        ::1, "localhost", each interface's addresses) with one rule table, which matrix --audit
        holds to the kernel case by case (MATRIX.md).
        Findings:
          alarm    interception      a more specific socket of another uid takes a wildcard's traffic
                                     (127.0.0.1 before 0.0.0.0, or ::1 before 127.0.0.1 for "localhost")
          warning  shadowing         the same, between different processes of one uid
          warning  takeable          by the sockets' own options, another user could take traffic now
          info     takeable          only the sockets' own uid could (SO_REUSEPORT, the family gap)
          warning  exposure          options unknown: loopback or wildcard on one family only
          info     load-balancing    several sockets on one address and port (SO_REUSEPORT, UDP SO_REUSEADDR)
          alarm    unexpected-owner  a socket on a port --expect names, held by none of the owners it names
        --expect says who should own ports. Its value is a file when a file of that name exists or the
        value holds no "=", otherwise entries separated by commas. An entry is PORT=OWNER|OWNER...:
        PORT is tcp/N, udp/N or N (both); OWNER is uid:N, user:NAME, command:NAME (/proc/PID/comm, at
        most 15 bytes) or unit:NAME.service (the systemd unit /proc/PID/cgroup names; also .scope,
        .socket, .mount, .swap); a bare number is a uid, a bare word a user name. The owners of a port,
        in one entry or several, are alternatives. A file holds entries one or more to a line, with #
        comments and blank lines; --expect may be given several times. Every socket on such a port (a
        listener, a bound or connected UDP socket) owned by anyone else is an alarm. Where its process
        cannot be seen (another user's, when not root), a uid or user still decides, and a command or
        unit that nothing else matched is a warning that it could not be checked, never a pass.
        Under each finding, a fix: line says what to do next and an evidence: line gives a command
        that shows it: `hijack-lab try` of the socket at risk, with its address, port, transport and
        the options read from it (a # comment says what try cannot bind as it is); JSON and jsonl too.
        A UDP socket on a port in ip_local_port_range, where clients' sockets land for a moment (a
        resolver's queries), counts only when it is bound to an address other than 0.0.0.0 or [::],
        when --watch has seen it in two audits in a row, or with --include-ephemeral.
        --all-netns finds every network namespace: those processes and threads hold
        (/proc/*/task/*/ns/net, one per inode) and the named ones under /run/netns. Each is labelled
        with its inode, its names, its lowest-pid holder and the container that holder's cgroup names
        (docker, podman, kubernetes, lxc, machine). The current one is audited in this process; each
        other one by a child of this binary that joins it (setns) and keeps only CAP_DAC_READ_SEARCH
        and CAP_SYS_PTRACE; it reads user names from /etc/passwd. Entering needs root
        (CAP_SYS_ADMIN): a namespace that cannot be entered is reported, on stderr and in the output.
        Formats: table is for people; json is the --json document with "schemaVersion" (with
        --all-netns: {"schemaVersion", "namespaces": [{"netns", "report" or "error"}]}); jsonl is one
        finding per line with timestamp and netns, for log pipelines; prometheus is node_exporter's
        textfile-collector format (hijack_lab_findings{kind,severity,port,netns},
        hijack_lab_listeners{netns}, hijack_lab_netns_info, hijack_lab_audit_duration_seconds,
        hijack_lab_audit_timestamp_seconds), all findings whatever --min-severity says.
        --watch prints a line when a finding appears or clears, and when a listener comes or goes on
        a port that has a finding; the findings present at start are printed first. A socket
        that no process held when /proc was read (one caught starting) gets one "unknown owner"
        line, and its findings wait one audit, so a race never shows as appears-then-clears.
        The exit status is 1 when an interception, shadowing or unexpected-owner alarm exists (in any
        namespace), whatever is shown; 3 when there is none but --all-netns could not read part of the
        host, or an --expect owner could not be checked.
        """
    package static let examples = [
        "hijack-lab audit",
        "hijack-lab audit --min-severity alarm --json findings.json",
        "hijack-lab audit --port 8080 --json -",
        "hijack-lab audit --all-netns --format prometheus --output /var/lib/node_exporter/textfile_collector/hijack_lab.prom",
        "hijack-lab audit --all-netns --format jsonl --min-severity warning",
        "hijack-lab audit --watch --interval 2",
        "hijack-lab audit --expect 'tcp/443=unit:nginx.service|user:www-data,tcp/22=command:sshd'",
        "hijack-lab audit --all-netns --expect /etc/hijack-lab/expect --format jsonl --min-severity warning",
    ]

    package static func run(_ arguments: Arguments, in context: CommandContext) -> ExitStatus {
        let console = context.console
        if let extra = arguments.operands.first {
            return usageFailure(name, "audit takes no operands (got \"\(UntrustedText.terminal(extra))\")", console: console)
        }
        let minimum: AuditFinding.Severity
        let port: UInt16?
        let format: Format?
        let interval: Double
        do throws(UsageError) {
            minimum = try arguments.choice("--min-severity", AuditFinding.Severity.allCases.map { ($0.rawValue, $0) }) ?? .info
            port = try arguments.integer("--port", range: 1...65535).map { UInt16($0) }
            format = try arguments.choice("--format", Format.allCases.map { ($0.rawValue, $0) })
            interval = try arguments.seconds("--interval", default: 1, range: 0.05...3600)
        } catch {
            return usageFailure(name, error.message, console: console)
        }
        let watch = arguments.flag("--watch")
        let allNamespaces = arguments.flag("--all-netns")
        let includeEphemeral = arguments.flag("--include-ephemeral")
        if arguments.value("--json") != nil && (format != nil || arguments.value("--output") != nil) {
            return usageFailure(name, "--json FILE is --format json --output FILE: give one or the other", console: console)
        }
        if watch, let clash = ["--json", "--format", "--output"].first(where: { arguments.value($0) != nil }) {
            return usageFailure(name, "--watch prints changes as text on stdout; it takes no \(clash)", console: console)
        }
        if !watch, arguments.value("--interval") != nil {
            return usageFailure(name, "--interval is the pause of --watch; add --watch", console: console)
        }
        var expectations: AuditExpectations?
        if !arguments.allValues("--expect").isEmpty {
            do throws(ExpectationError) {
                expectations = try AuditExpectations.load(arguments.allValues("--expect"))
            } catch {
                return usageFailure(name, error.description, console: console)
            }
        }
        // A SIGINT or SIGTERM kills the namespace agents and exits 128 + the signal, and never
        // splits the rename of an output.
        InterruptGuard.install()
        // The audit's arrays (tens of MB at 50,000 sockets) give their pages back as each phase ends.
        _ = hl_malloc_fix_mmap_threshold()
        var source = AuditSource(port: port, allNamespaces: allNamespaces, agentExecutable: context.agentExecutable, options: !arguments.flag("--no-options"))
        source.includeEphemeral = includeEphemeral
        source.expectations = expectations
        if watch { return runWatch(source: source, minimum: minimum, interval: interval, console: console) }

        // --json FILE keeps its old meaning: the JSON there, and the table on stdout unless it is "-".
        let legacyJSON = arguments.value("--json").map { OutputFile(option: "--json", path: $0) }
        let output = legacyJSON ?? OutputFile(option: "--output", path: arguments.value("--output") ?? "-")
        if let problem = output.problem() { return usageFailure(name, problem, console: console) }
        let chosen = legacyJSON == nil ? format ?? .table : .json

        let started = Deadline.now()
        let (audits, unreadable) = source.audit()
        let duration = Double(Deadline.now().nanoseconds - started.nanoseconds) / 1e9
        let ended = WallTime.now()
        for audit in audits {
            if let error = audit.error {
                console.err("hijack-lab audit: network namespace \(UntrustedText.terminal(audit.netns.label)) was not audited: \(UntrustedText.terminal(error))")
            }
        }
        if allNamespaces, unreadable > 0 {
            console.err("hijack-lab audit: " + unreadableText(unreadable))
        }
        let status = exitStatus(audits, unreadable: unreadable, allNamespaces: allNamespaces)
        if let legacyJSON, !legacyJSON.isStandardOutput {
            console.out(table(audits, unreadable: unreadable, allNamespaces: allNamespaces, minimum: minimum))
        }

        // The table of one namespace on stdout streams, so 50,000 rows never stand in memory twice.
        if chosen == .table, output.isStandardOutput, !allNamespaces, let report = audits[0].report {
            AuditText.write(report, minimum: minimum, to: console.out)
            return status
        }
        // One namespace in JSON: the audit's own writer, in pieces, straight into the temp file
        // (AuditSpeedTests holds its bytes to JSONEncoder's).
        if chosen == .json, !allNamespaces, let report = audits[0].report {
            var files = OutputSet()
            files.stage(to: output) { write in
                AuditJSON.write(report, schemaVersion: AuditFormats.schemaVersion, to: write)
                [UInt8(ascii: "\n")].withUnsafeBytes(write)
            }
            _ = files.publish(console: console)
            for failure in files.failures { console.err("hijack-lab audit: \(failure)") }
            return files.failures.isEmpty ? status : .usage
        }
        let content: String
        switch chosen {
        case .table: content = table(audits, unreadable: unreadable, allNamespaces: allNamespaces, minimum: minimum) + "\n"
        case .json:
            content = String(decoding: AuditFormats.fleetJSON(audits, unreadableProcesses: unreadable), as: UTF8.self) + "\n"
        case .jsonl: content = AuditFormats.jsonLines(audits, minimum: minimum, timestamp: ended)
        case .prometheus:
            content = AuditFormats.prometheus(audits, unreadableProcesses: unreadable, duration: duration, timestamp: ended)
        }
        if output.isStandardOutput && content.isEmpty { return status }
        var files = OutputSet()
        files.stage(content, to: output)
        _ = files.publish(console: console)
        for failure in files.failures { console.err("hijack-lab audit: \(failure)") }
        return files.failures.isEmpty ? status : .usage
    }

    /// 1 for a finding; else 3 when `--all-netns` left part of the host unread (a namespace
    /// not entered, or processes whose namespace could not be read), or an `--expect` owner
    /// could not be checked, since "nothing found" is then not the whole answer; else 0.
    package static func exitStatus(_ audits: [NamespaceAudit], unreadable: Int, allNamespaces: Bool) -> ExitStatus {
        let status = audits.compactMap(\.report).contains { $0.exitStatus != 0 } ? ExitStatus.differs : .success
        let unchecked = audits.contains { $0.report?.findings.contains(where: AuditExpectations.isUnchecked) == true }
        guard unchecked || (allNamespaces && (unreadable > 0 || audits.contains(where: { $0.error != nil }))) else { return status }
        return status.worst(.incomplete)
    }

    /// Why some processes' namespaces are missing: another user's, unless this is root, whom
    /// only a security module or a user namespace refuses.
    package static func unreadableText(_ count: Int, root: Bool = geteuid() == 0) -> String {
        let what = "the network namespace of \(count) process\(count == 1 ? "" : "es") could not be read"
        return what + (root ? " even as root (EACCES or EPERM: a security module or a user namespace refused)" : " (other users'; root sees them)")
    }

    /// The table of each namespace, under a heading that names it when there are several.
    package static func table(_ audits: [NamespaceAudit], unreadable: Int, allNamespaces: Bool, minimum: AuditFinding.Severity) -> String {
        guard allNamespaces else { return AuditText.render(audits[0].report!, minimum: minimum) }
        var parts: [String] = []
        for audit in audits {
            var part = "== network namespace " + UntrustedText.terminal(audit.netns.label) + "\n"
            if let report = audit.report {
                part += AuditText.render(report, minimum: minimum)
            } else {
                part += "Not audited: " + UntrustedText.terminal(audit.error ?? "no reason given")
            }
            parts.append(part)
        }
        if unreadable > 0 {
            let line = unreadableText(unreadable)
            parts.append(line.prefix(1).uppercased() + line.dropFirst() + ".")
        }
        return parts.joined(separator: "\n\n")
    }

    package static func runWatch(source: AuditSource, minimum: AuditFinding.Severity, interval: Double, console: Console) -> ExitStatus {
        let watcher = AuditWatcher(minimum: minimum, labelled: source.allNamespaces) { seen in source.audit(seen: seen).audits }
        let every = interval == interval.rounded() ? String(Int(interval)) : String(interval)
        console.err("hijack-lab audit: watching every \(every) s; Ctrl-C ends")
        // Runs until SIGINT or SIGTERM (whose handler exits 130 or 143), or until stdout's reader is gone.
        watcher.run(interval: interval, output: console.out) { _ in console.outFailure() != nil }
        return .success
    }
}

/// Where the audits come from: this namespace only, or every one on the host.
package struct AuditSource {
    package let port: UInt16?
    package let allNamespaces: Bool
    package let agentExecutable: String
    /// Whether each socket's own options are read (not with `--no-options`).
    package var options = true
    /// How long an agent may take to enter a namespace, and then to audit it.
    package var timeout: Double = 30
    /// `--include-ephemeral`: every UDP socket in the ephemeral range counts (EphemeralUDP.all).
    package var includeEphemeral = false
    /// `--expect`: applied here, to every namespace's report, once the agents have sent theirs
    /// (the owners' pids are this host's, whose /proc tells their units), so that every format
    /// and --watch see the findings.
    package var expectations: AuditExpectations?

    /// `seen`: by namespace inode, the wildcard UDP sockets the previous audit saw (`--watch`),
    /// which then count on a port in the ephemeral range (EphemeralUDP.seen).
    package func audit(seen: [UInt64: Set<UInt64>] = [:]) -> (audits: [NamespaceAudit], unreadable: Int) {
        let (audits, unreadable) = collect(seen: seen)
        guard let expectations else { return (audits, unreadable) }
        return (expectations.apply(to: audits), unreadable)
    }

    private func collect(seen: [UInt64: Set<UInt64>]) -> (audits: [NamespaceAudit], unreadable: Int) {
        let ephemeral = { (inode: UInt64) -> EphemeralUDP in includeEphemeral ? .all : seen[inode].map { .seen($0) } ?? .bound }
        guard allNamespaces else {
            let netns = Namespaces.current()
            return ([NamespaceAudit(netns: netns, report: Audit.applying(ephemeral(netns.inode), to: Audit.run(port: port, options: options)))], 0)
        }
        let (namespaces, unreadable) = Namespaces.discover()
        return (FleetAudit.audit(namespaces, port: port, options: options, agentExecutable: agentExecutable, timeout: timeout, ephemeral: ephemeral), unreadable)
    }
}

/// Audits of other network namespaces, each by an agent that joined it.
///
/// setns(2) moves only the calling thread, but Audit reads /proc/net, which is /proc/self/net:
/// the namespace of the process's main thread, not of the thread that moved. A child process
/// that joins first and then audits has its whole view in the namespace: /proc/net, the
/// sock_diag netlink socket, the /proc/sys/net ranges and if_indextoname all follow. The agent
/// role does exactly that (`agent --netns PATH --host-client`, command `audit`), drops every
/// capability but the two reading other processes' descriptors takes, and dies with its pipe.
package enum FleetAudit {
    /// Agents at work at once: enough to hide their start-up, few enough for a small host.
    package static let parallel = 8

    package static func audit(_ namespaces: [NetworkNamespace], port: UInt16?, options: Bool = true, agentExecutable: String, timeout: Double,
                              ephemeral: (UInt64) -> EphemeralUDP = { _ in .bound }) -> [NamespaceAudit] {
        var audits: [NamespaceAudit] = []
        var others: [NetworkNamespace] = []
        for namespace in namespaces {
            if namespace.current {
                audits.append(NamespaceAudit(netns: namespace, report: Audit.applying(ephemeral(namespace.inode), to: Audit.run(port: port, options: options))))
            } else {
                others.append(namespace)
            }
        }
        audits += inAgents(others, port: port, options: options, agentExecutable: agentExecutable, timeout: timeout, ephemeral: ephemeral)
        // A holder that exited between the listing and setns leaves ENOENT. If its namespace
        // lives on (another process, a name), that one is tried once; if not, the namespace
        // is gone and is no longer the host's to report.
        let vanished = audits.filter { $0.error?.contains("ENOENT") == true && $0.netns.path.hasPrefix("/proc/") }
        guard !vanished.isEmpty else { return audits }
        let now = Dictionary(Namespaces.discover().namespaces.map { ($0.inode, $0) }, uniquingKeysWith: { first, _ in first })
        let retry = vanished.compactMap { now[$0.netns.inode] }.filter { !$0.current }
        let gone = Set(vanished.map(\.netns.inode))
        audits = audits.filter { !gone.contains($0.netns.inode) } + inAgents(retry, port: port, options: options, agentExecutable: agentExecutable, timeout: timeout, ephemeral: ephemeral)
        return audits.sorted { ($0.netns.current ? 0 : 1, $0.netns.inode) < ($1.netns.current ? 0 : 1, $1.netns.inode) }
    }

    private static func inAgents(_ others: [NetworkNamespace], port: UInt16?, options: Bool, agentExecutable: String, timeout: Double,
                                 ephemeral: (UInt64) -> EphemeralUDP) -> [NamespaceAudit] {
        var audits: [NamespaceAudit] = []
        var index = 0
        while index < others.count {
            let batch = others[index..<min(index + parallel, others.count)]
            index += batch.count
            // Every agent of the batch starts before the first is waited for: their start-ups overlap.
            let started = batch.map { namespace -> (NetworkNamespace, Result<AgentClient, LabError>) in
                do throws(LabError) {
                    let agent = try AgentClient(executable: agentExecutable, id: "audit-netns-\(namespace.inode)",
                                                extraArguments: ["--netns", namespace.path, "--host-client"], timeout: timeout)
                    return (namespace, .success(agent))
                } catch {
                    return (namespace, .failure(error))
                }
            }
            for (namespace, agent) in started {
                audits.append(collect(namespace, agent: agent, port: port, options: options, ephemeral: ephemeral(namespace.inode)))
            }
        }
        return audits
    }

    private static func collect(_ namespace: NetworkNamespace, agent started: Result<AgentClient, LabError>, port: UInt16?, options: Bool,
                                ephemeral: EphemeralUDP) -> NamespaceAudit {
        let agent: AgentClient
        switch started {
        case .success(let client): agent = client
        case .failure(let error): return NamespaceAudit(netns: namespace, error: error.description)
        }
        defer { agent.finish() }
        do throws(LabError) {
            try agent.awaitReady()
            let report = try agent.audit(port: port, options: options, ephemeral: ephemeral)
            // A namespace whose last process ended between discovery and setns has gone; a
            // path that came to name another namespace must not pass for it.
            guard report.namespace == "net:[\(namespace.inode)]" else {
                return NamespaceAudit(netns: namespace, error: "\(namespace.path) named \(report.namespace) when it was entered, no longer this namespace")
            }
            return NamespaceAudit(netns: namespace, report: report)
        } catch {
            switch error {
            case .agentRefused(_, "start", let reason): return NamespaceAudit(netns: namespace, error: "could not enter it: \(reason)")
            default: return NamespaceAudit(netns: namespace, error: error.description)
            }
        }
    }
}

/// `audit --watch`: audits again and again, and tells only what changed.
package final class AuditWatcher {
    private let minimum: AuditFinding.Severity
    /// Whether lines name the namespace (with --all-netns).
    private let labelled: Bool
    private let audit: (_ seen: [UInt64: Set<UInt64>]) -> [NamespaceAudit]
    private var findings: [String: String]?
    private var listeners: [String: (port: String, text: String)] = [:]
    private var failures: [UInt64: String] = [:]
    /// Sockets (namespace inode, socket inode) seen without an owner last step, where every
    /// process could be read: a process caught between the sock_diag dump and the /proc scan.
    private var ownerless: Set<String> = []
    /// By namespace inode, the wildcard UDP sockets of the last step, handed to the next audit:
    /// on a port in the ephemeral range, one seen twice in a row counts (EphemeralUDP.seen).
    private var seen: [UInt64: Set<UInt64>] = [:]

    /// `audit` is given the sockets seen by the last step (`seen`), for the ephemeral range's rule.
    package init(minimum: AuditFinding.Severity = .info, labelled: Bool = false, audit: @escaping (_ seen: [UInt64: Set<UInt64>]) -> [NamespaceAudit]) {
        self.minimum = minimum
        self.labelled = labelled
        self.audit = audit
    }

    package convenience init(minimum: AuditFinding.Severity = .info, labelled: Bool = false, audit: @escaping () -> [NamespaceAudit]) {
        self.init(minimum: minimum, labelled: labelled) { _ in audit() }
    }

    /// Audits once and returns the changes since the last step, each line timestamped and
    /// escaped for the terminal. The first step returns the findings present now.
    package func step(at now: WallTime = .now()) -> [String] {
        let audits = audit(seen)
        let time = now.rfc3339
        var currentFindings: [String: String] = [:]
        var findingPorts: Set<String> = []
        var currentListeners: [String: (port: String, text: String)] = [:]
        var currentFailures: [UInt64: String] = [:]
        var currentOwnerless: Set<String> = []
        var currentSeen: [UInt64: Set<UInt64>] = [:]
        var unknownOwners: [String] = []
        let previous = findings ?? [:]
        for audit in audits {
            let inode = audit.netns.inode
            let prefix = labelled ? "netns \(audit.netns.label): " : ""
            guard let report = audit.report else {
                currentFailures[inode] = prefix + "not audited: " + (audit.error ?? "no reason given")
                continue
            }
            currentSeen[inode] = Set(report.sockets.lazy.filter { $0.transport == .udp && $0.remote == nil && $0.isWildcard }.map(\.inode))
            // An owner missing where every process was readable is most likely a race: the
            // process started, or passed the socket on, between the dump and the /proc scan.
            // It is told once as "unknown owner"; its findings wait a step, and a finding
            // already told stays, so a race never shows as a finding that appears and clears.
            // An owner still missing on the next step is no race (a kernel's own socket, say:
            // nfsd, WireGuard): the findings stand then. The first audit shows what is there,
            // races and all, since nothing told before could flap.
            var racing: Set<UInt64> = []
            if report.ownersComplete {
                for socket in report.sockets where socket.owners.isEmpty {
                    let key = "\(inode) \(socket.inode)"
                    currentOwnerless.insert(key)
                    guard findings != nil, !ownerless.contains(key) else { continue }
                    racing.insert(socket.inode)
                    unknownOwners.append(prefix + "owner of \(socket.transport.rawValue) \(socket.label) (uid \(socket.uid) (\(socket.user))): "
                                         + "no process held it when /proc was read; its findings wait for the next audit")
                }
            }
            for finding in report.findings where finding.severity >= minimum {
                let key = "\(inode) \(finding.kind.rawValue) \(finding.severity.rawValue) \(finding.transport.rawValue) \(finding.port) \(finding.inodes)"
                if finding.inodes.contains(where: racing.contains) {
                    if let told = previous[key] { currentFindings[key] = told }
                    // Still a port of interest: a listener that comes or goes there is told.
                    findingPorts.insert("\(inode) \(finding.transport.rawValue) \(finding.port)")
                    continue
                }
                currentFindings[key] = prefix + "[\(finding.severity.rawValue)] \(finding.kind.rawValue) \(finding.transport.rawValue)/\(finding.port): \(finding.explanation)"
                findingPorts.insert("\(inode) \(finding.transport.rawValue) \(finding.port)")
            }
            for socket in report.sockets {
                currentListeners["\(inode) \(socket.inode)"] = (port: "\(inode) \(socket.transport.rawValue) \(socket.port)",
                                                               text: prefix + "\(socket.transport.rawValue) \(socket.label)"
                                                                   + (socket.remote.map { " -> \($0)" } ?? "") + " \(socket.who)")
            }
        }
        var lines: [String] = []
        func emit(_ verb: String, _ texts: [String]) {
            lines += texts.sorted().map { UntrustedText.terminal("\(time) \(verb) \($0)") }
        }
        if findings != nil {
            // Listener changes only where a finding is or was: a port of interest.
            for (key, _) in previous { findingPorts.insert(Self.portKey(ofFinding: key)) }
            emit("stops  ", listeners.filter { currentListeners[$0.key] == nil && findingPorts.contains($0.value.port) }.map(\.value.text))
            emit("listens", currentListeners.filter { listeners[$0.key] == nil && findingPorts.contains($0.value.port) }.map(\.value.text))
            emit("clears ", previous.filter { currentFindings[$0.key] == nil }.map(\.value))
        }
        // A namespace that cannot be audited is told once, and again only when the reason changes.
        emit("fails  ", currentFailures.filter { failures[$0.key] != $0.value }.map(\.value))
        emit("unknown", unknownOwners)
        emit("appears", currentFindings.filter { previous[$0.key] == nil }.map(\.value))
        ownerless = currentOwnerless
        seen = currentSeen
        findings = currentFindings
        listeners = currentListeners
        failures = currentFailures
        return lines
    }

    /// "inode kind severity transport port [inodes]" → "inode transport port".
    private static func portKey(ofFinding key: String) -> String {
        let parts = key.split(separator: " ")
        return "\(parts[0]) \(parts[3]) \(parts[4])"
    }

    /// Steps every `interval` seconds, on a fixed schedule, until `stop` (given the number of
    /// steps so far) says so. An audit slower than the interval is followed by the next at once,
    /// without a backlog. Between steps the process sleeps: no work when nothing runs.
    package func run(interval: Double, output: (String) -> Void, stop: (Int) -> Bool) {
        var steps = 0
        var next = Deadline.now()
        while !stop(steps) {
            for line in step() { output(line) }
            steps += 1
            if stop(steps) { return }
            next = Deadline(nanoseconds: next.nanoseconds + UInt64(interval * 1e9))
            if next.hasPassed { next = .now() }
            var wake = timespec(tv_sec: Int(next.nanoseconds / 1_000_000_000), tv_nsec: Int(next.nanoseconds % 1_000_000_000))
            while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, nil) == EINTR {}
        }
    }
}
