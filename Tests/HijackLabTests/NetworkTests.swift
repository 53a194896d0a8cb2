import CHijackLab
import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

/// The netns topology: real namespaces, a real veth, another user. These need root and `ip`.
@Suite("Lab network (netns, as root)", .enabled(if: Topology.netnsMissing() == nil, "needs root and iproute2's ip"))
struct NetworkTests {
    static func netnsSettings() -> LabSettings {
        LabSettings(agentExecutable: TestLab.agentExecutable, topology: .netns(reason: "tests"))
    }

    /// The inode of a process's network namespace, as /proc shows it: "net:[4026532...]".
    static func namespace(of pid: pid_t) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/net")
    }

    /// Pids of every process now in the given network namespace.
    /// Keeps a process's network namespace alive by a descriptor, so that after its processes
    /// are gone its inode number cannot pass to a namespace another test makes meanwhile (the
    /// kernel reuses the numbers of freed namespaces): `processes(in:)` then asks about this
    /// namespace, not a newcomer's. Close the descriptor when done.
    static func hold(namespaceOf pid: pid_t) -> Int32 {
        open("/proc/\(pid)/ns/net", O_RDONLY | O_CLOEXEC)
    }

    static func processes(in namespace: String) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { self.namespace(of: $0) == namespace }
    }

    static func rootNamespaceLinks() -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/class/net")) ?? []
        return entries.sorted()
    }

    @Test("An external client reaches the intruder on the interface address; local clients still reach the victim")
    func externalHijack() throws {
        let runner = Runner(settings: Self.netnsSettings())
        defer { runner.shutdown() }
        let outcome = runner.run(try TestLab.scenario("interface-hijack-external"))
        #expect(outcome.status == .ran, "\(outcome.error ?? "")")
        let external = try #require(outcome.probes.first { $0.id == "external" })
        #expect(external.from == .peer)
        #expect(external.to == "198.51.100.1")
        #expect(external.receivedBy == ["attacker": 8])
        #expect(outcome.probes.first { $0.id == "local" }?.receivedBy == ["victim": 8])
        #expect(outcome.verdict == .hijacked)
        // Everything ran in the lab's namespace, not the machine's own.
        let labNamespace = try #require(runner.labHostPID.flatMap(Self.namespace(of:)))
        #expect(labNamespace != Self.namespace(of: getpid()))
    }

    @Test("SO_REUSEPORT needs the same uid: an agent running as uid 65534 gets EADDRINUSE")
    func otherUser() throws {
        let (outcomes, _) = run(["reuseport-other-user", "reuseaddr-other-user"])
        for outcome in outcomes {
            let attacker = try #require(outcome.sockets.first { $0.id == "attacker" })
            #expect(attacker.uid == 65534, "\(outcome.name)")
            #expect(attacker.bind == "EADDRINUSE", "\(outcome.name)")
            #expect(outcome.probes[0].receivedBy == ["victim": 8], "\(outcome.name)")
        }
    }

    @Test("A device-bound socket takes that device's traffic only; without a reuse option it cannot bind")
    func boundDevice() throws {
        let (outcomes, _) = run(["bindtodevice-shadow", "bindtodevice-plain"])
        let shadow = outcomes[0]
        #expect(shadow.probes.first { $0.id == "local" }?.receivedBy == ["attacker": 8])
        #expect(shadow.probes.first { $0.id == "external" }?.receivedBy == ["victim": 8])
        #expect(shadow.sockets[1].calls.contains(SyscallRecord(call: "setsockopt", arguments: "SO_BINDTODEVICE, \"lo\"", result: "ok")))
        #expect(outcomes[1].sockets[1].bind == "EADDRINUSE")
    }

    @Test("The whole catalog runs in netns and matches; afterwards no agent, namespace or interface is left")
    func wholeCatalogAndTeardown() throws {
        let linksBefore = Self.rootNamespaceLinks()
        let scenarios = try ScenarioFile.loadDirectory(TestLab.scenariosDirectory).scenarios
        var settings = Self.netnsSettings()
        // One lab for the whole catalog, as `all` makes it: audit-ready if a scenario audits.
        settings.scenariosAudit = scenarios.contains { $0.audit }
        let runner = Runner(settings: settings)
        try runner.prepare()
        let labNamespace = try #require(runner.labHostPID.flatMap(Self.namespace(of:)))
        let held = Self.hold(namespaceOf: try #require(runner.labHostPID))
        try #require(held >= 0)
        defer { Glibc.close(held) }
        for scenario in scenarios {
            let outcome = runner.run(scenario)
            #expect(outcome.status == .ran, "\(scenario.name): \(outcome.skipReason ?? outcome.error ?? "")")
            #expect(outcome.matchesExpectation, "\(scenario.name): \(outcome.differences)")
        }
        #expect(!Self.processes(in: labNamespace).isEmpty)
        runner.shutdown()
        for pid in runner.startedProcesses { #expect(TestLab.isGone(pid), "agent \(pid) is still there") }
        #expect(Self.processes(in: labNamespace).isEmpty, "a process is still in the lab namespace")
        #expect(Self.rootNamespaceLinks() == linksBefore)
        #expect(!Self.rootNamespaceLinks().contains("lab0") && !Self.rootNamespaceLinks().contains("peer0"))
    }

    @Test("SIGINT or SIGTERM in the middle of a scenario: exit 128+signal, and no agent, namespace or interface remains",
          arguments: [SIGINT, SIGTERM])
    func interruptedRun(signal: Int32) throws {
        let linksBefore = Self.rootNamespaceLinks()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hijack-lab-interrupted-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Progress goes to stderr, which this pipe carries too.
        let run = try ChildProcess(executable: TestLab.agentExecutable,
                                   arguments: ["run", "slow-probe", "--scenarios", TestLab.fixtures + "/slow", "--verbose", "--topology", "netns",
                                               "--report", folder + "/REPORT.md", "--json", folder + "/out.json"],
                                   mergeStandardError: true)
        defer { run.killAndReap() }
        // Wait until the run is inside the scenario: its sockets are up and the probe has begun.
        let deadline = Deadline.after(seconds: 10)
        var line: String? = ""
        while let current = line, !current.contains("slow-probe: probe nowhere") {
            line = try run.readLine(until: deadline)
        }
        #expect(line != nil, "the run ended before its probe")
        // Its agents, held by pidfds before the signal so that a reused pid cannot fool the check.
        let agents = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid_t($0) }.filter { pid in
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            // After "(comm)" come the state, then the parent's pid.
            let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
            return fields.count > 1 && pid_t(fields[1]) == run.pid
        }
        #expect(agents.count == 4, "two clients and two sockets")
        let namespaces = Set(agents.compactMap(Self.namespace(of:)))
        // One descriptor per namespace keeps its number from passing to another test's lab.
        let held = agents.map(Self.hold(namespaceOf:))
        defer { held.filter { $0 >= 0 }.forEach { Glibc.close($0) } }
        #expect(held.allSatisfy { $0 >= 0 })
        let handles = agents.map { hl_pidfd_open($0) }
        defer { handles.filter { $0 >= 0 }.forEach { Glibc.close($0) } }

        kill(run.pid, signal)
        let status = run.finish(until: .after(seconds: 10))
        #expect((status >> 8) & 0xff == 128 + signal, "exit status \(status)")
        #expect(handles.allSatisfy { $0 >= 0 })
        for (pid, handle) in zip(agents, handles) where handle >= 0 {
            // A pidfd polls readable once its process has exited: a bounded wait, no sleep.
            #expect((try? waitFor(handle, events: Int16(POLLIN), until: .after(seconds: 5))) == true, "agent \(pid) survived signal \(signal)")
        }
        for namespace in namespaces { #expect(Self.processes(in: namespace).isEmpty, "\(namespace) still has processes") }
        #expect(Self.rootNamespaceLinks() == linksBefore)
        // Nothing is published about an interrupted run: no report, no JSON, no temp file.
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).isEmpty)
    }

    @Test("Run as uid 65534, the loopback fallback runs what it can and gives a reason for each skip",
          .enabled(if: geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs root to run as uid 65534 with setpriv"),
          .enabled(if: TestLab.reachableCopyUnavailable == nil, "uid 65534 needs a copy of the built programs it can reach: \(TestLab.reachableCopyUnavailable ?? "")"))
    func unprivilegedFallback() throws {
        // The programs and scenarios from a copy uid 65534 can reach, whatever folder the checkout is in.
        let (output, status, written, scenarios) = try TestLab.withReachableCopy { copy in
            // A directory uid 65534 may write in, as a user's own directory would be.
            let directory = copy.folder + "/nobody"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
            try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: directory)
            let json = directory + "/out.json"
            let run = try ChildProcess(executable: "/usr/bin/setpriv", arguments: [
                "--reuid=65534", "--regid=65534", "--clear-groups", copy.tool,
                "all", "--scenarios", copy.scenarios, "--report", "/dev/null", "--json", json], mergeStandardError: true)
            let output = run.readAll(until: .after(seconds: 60)) ?? ""
            let status = run.finish(until: .after(seconds: 5))
            let report = try? JSONDecoder().decode(LabReport.self, from: Data(contentsOf: URL(fileURLWithPath: json)))
            return (output, status, report, try ScenarioFile.loadDirectory(copy.scenarios).scenarios)
        }
        #expect(status == 0, "\(output)")
        #expect(output.contains("topology: loopback (the host's own loopback, because the netns topology needs root or CAP_SYS_ADMIN"))
        let report = try #require(written, "no JSON report: \(output)")
        #expect(report.environment.uid == 65534)
        #expect(report.environment.topology == .loopback)
        let cannotRun = Set(scenarios.filter { TestLab.needsNetns($0) || TestLab.needsRoot($0) }.map(\.name))
        let skipped = report.scenarios.filter { $0.status == .skipped }
        #expect(Set(skipped.map(\.name)) == cannotRun)
        #expect(skipped.allSatisfy { ($0.skipReason ?? "").count > 20 })
        let rootOnly = Set(scenarios.filter { TestLab.needsRoot($0) && !TestLab.needsNetns($0) }.map(\.name))
        for outcome in skipped where rootOnly.contains(outcome.name) {
            #expect(outcome.skipReason?.contains("only root can start") == true, "\(outcome.name)")
        }
        let ran = report.scenarios.filter { $0.status == .ran }
        #expect(ran.count == scenarios.count - cannotRun.count)
        #expect(ran.allSatisfy { $0.matchesExpectation })
    }

    @Test("localhost resolves on the lab host as Debian's hosts file says, ::1 first, and reaches whoever holds ::1")
    func localhostOrder() throws {
        let (outcomes, _) = run(["ipv4-only-leaves-ipv6-loopback-open"])
        let byName = try #require(outcomes.first?.probes.first { $0.id == "by-name" })
        #expect(byName.resolved == ["::1", "127.0.0.1"])
        #expect(byName.reached == ["::1": 8])
        #expect(byName.receivedBy == ["attacker": 8])
        #expect(outcomes.first?.sockets.first { $0.id == "attacker" }?.uid == 65534)
    }

    @Test("IPV6_V6ONLY leaves IPv4 to any user; v4-mapped and dual-stack behave as IPv4 where they overlap")
    func ipv6Overlaps() throws {
        let (outcomes, _) = run(["v6only-leaves-ipv4-open", "v4mapped-loopback-reuseport", "dualstack-blocks-ipv4", "dualstack-then-loopback4-reuseport"])
        let v6only = outcomes[0]
        #expect(v6only.sockets[0].calls.contains(SyscallRecord(call: "setsockopt", arguments: "IPV6_V6ONLY, 1", result: "ok")))
        #expect(v6only.sockets[1].calls.map(\.call) == ["socket", "bind", "listen"])
        #expect(v6only.probes.map(\.receivedBy) == [["attacker": 8], ["attacker": 8], ["victim": 8]])
        #expect(outcomes[1].sockets[1].calls.first == SyscallRecord(call: "socket", arguments: "AF_INET6, SOCK_STREAM", result: "ok"))
        #expect(outcomes[1].probes[0].receivedBy == ["attacker": 8])
        #expect(outcomes[2].sockets[1].bind == "EADDRINUSE")
        #expect(outcomes[3].probes.map(\.receivedBy) == [["attacker": 8], ["victim": 8]])
        #expect(outcomes.allSatisfy { $0.matchesExpectation })
    }

    @Test("UDP: SO_REUSEADDR crosses users, SO_REUSEPORT does not, and the newer of two SO_REUSEADDR wildcards gets unicast")
    func udpRules() throws {
        let (outcomes, _) = run(["udp-reuseaddr-other-user", "udp-reuseport-other-user", "udp-reuseaddr-same-address"])
        #expect(outcomes[0].sockets[1].uid == 65534)
        #expect(outcomes[0].sockets[1].bind == "ok")
        #expect(outcomes[0].probes.map(\.receivedBy) == [["attacker": 8], ["victim": 8]])
        #expect(outcomes[1].sockets[1].bind == "EADDRINUSE")
        #expect(outcomes[1].sockets.allSatisfy { $0.listen == "not-applicable" })
        #expect(outcomes[2].probes[0].receivedBy == ["attacker": 8])
        #expect(outcomes.allSatisfy { $0.probes.allSatisfy { $0.lost == 0 } })
    }

    @Test("Every address on both families, bound by the defender: twelve attacks fail, every client reaches the defender")
    func dualStackFix() throws {
        let (outcomes, _) = run(["per-interface-fix-dualstack"])
        let outcome = try #require(outcomes.first)
        let attackers = outcome.sockets.filter { $0.role == .attacker }
        #expect(attackers.count == 12)
        #expect(attackers.allSatisfy { $0.bind == "EADDRINUSE" })
        #expect(attackers.filter { $0.uid == 65534 }.count == 6)
        #expect(outcome.probes.map(\.receivedBy) == [["defender-lo4": 8], ["defender-lo6": 8], ["defender-lab4": 8], ["defender-lab6": 8]])
    }

    @Test("An address a step adds is on lab0 during the scenario and gone after it, so the same scenario runs twice in one lab")
    func addedAddressIsRemoved() throws {
        var scenario = try TestLab.scenario("address-added-later")
        scenario.audit = false
        let runner = Runner(settings: Self.netnsSettings())
        defer { runner.shutdown() }
        let first = runner.run(scenario)
        // The same story again in the same lab: the add would fail (EEXIST) had the first left it.
        scenario.name = "address-added-later-again"
        let second = runner.run(scenario)
        for outcome in [first, second] {
            #expect(outcome.status == .ran, "\(outcome.error ?? "")")
            #expect(outcome.probes.first { $0.id == "new-address" }?.receivedBy == ["attacker": 8])
        }
        // Nobody may bind it now: the address is gone from the lab host (EADDRNOTAVAIL).
        var probe = try TestLab.scenario("address-added-later")
        probe.name = "address-added-later-gone"
        probe.steps = probe.steps.filter { $0 != .addAddress(.labInterfaceAdded) }
        let gone = runner.run(probe)
        #expect(gone.sockets.first { $0.id == "attacker" }?.bind == "EADDRNOTAVAIL")
    }

    @Test("Below ip_unprivileged_port_start another user gets EACCES; the same user keeps CAP_NET_BIND_SERVICE and binds")
    func privilegedPort() throws {
        let (outcomes, _) = run(["privileged-port"])
        let outcome = try #require(outcomes.first)
        #expect((outcome.port ?? 0) < 1024)
        #expect(outcome.sockets.first { $0.id == "attacker-other" }?.bind == "EACCES")
        #expect(outcome.sockets.first { $0.id == "victim" }?.bind == "ok")
    }

    func run(_ names: [String]) -> (outcomes: [ScenarioOutcome], pids: [ProcessIdentity]) {
        let runner = Runner(settings: Self.netnsSettings())
        let outcomes = names.map { name in runner.run(try! TestLab.scenario(name)) }
        runner.shutdown()
        return (outcomes, runner.startedProcesses)
    }
}
