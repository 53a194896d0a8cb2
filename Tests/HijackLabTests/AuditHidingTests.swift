import CHijackLab
import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit

/// Whether python3 is there to play the hiding programs.
private let python3Installed = access("/usr/bin/python3", X_OK) == 0

/// Processes that try to hide from `audit --all-netns`, or to pass as the service they sit
/// beside. Each runs for real, in namespaces of its own made with util-linux's unshare.
@Suite("Audit: no process hides (root, unshare, python3)",
       .enabled(if: geteuid() == 0 && Topology.netnsMissing() == nil && python3Installed, "needs root, iproute2's ip and python3"))
struct AuditHidingTests {
    /// A program started under `unshare`, its stdin held open by the test (closing it ends the
    /// program) and its stdout read for the line that says it is ready.
    final class Hider {
        let process = Process()
        let stdin = Pipe()
        let stdout = Pipe()

        init(_ arguments: [String], executable: String = "/usr/bin/unshare") throws {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            process.standardInput = stdin
            process.standardOutput = stdout
            process.standardError = FileHandle.nullDevice
            try process.run()
        }

        /// The line the program prints once its sockets are bound, within a deadline.
        func awaitLine() throws -> String {
            let deadline = Deadline.after(seconds: 20)
            var text = ""
            var buffer = [UInt8](repeating: 0, count: 512)
            let fd = stdout.fileHandleForReading.fileDescriptor
            while !text.contains("\n"), try waitFor(fd, events: Int16(POLLIN), until: deadline) {
                let count = read(fd, &buffer, buffer.count)
                if count <= 0 { break }
                text += String(decoding: buffer[0..<count], as: UTF8.self)
            }
            try #require(text.contains("\n"), "the program never said it was ready: \(text)")
            return String(text.prefix { $0 != "\n" })
        }

        /// Ends it: EOF on stdin, then SIGKILL to the unshare process if it lingers.
        func end() {
            try? stdin.fileHandleForWriting.close()
            let deadline = Deadline.after(seconds: 10)
            while process.isRunning && !deadline.hasPassed { _ = poll(nil, 0, 10) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
    }

    static func audit() throws -> AuditFormats.FleetDocument {
        let captured = TestLab.Captured()
        let status = CLI.run(["audit", "--all-netns", "--json", "-"], console: captured.console, agentExecutable: TestLab.agentExecutable)
        // 3 where some process is unreadable even to root (a sandbox's own init, say).
        #expect([0, 1, 3].contains(status), "\(captured.err)")
        return try JSONDecoder().decode(AuditFormats.FleetDocument.self, from: Data(captured.out.utf8))
    }

    /// python3 that listens on 127.0.0.1:argv[1], then leaves its main thread by pthread_exit
    /// (ctypes lets go of the GIL for the call); a second thread, which prints its tid, keeps
    /// the process, its namespace and its socket alive until stdin ends.
    static let leaderless = """
        import ctypes, os, socket, sys, threading
        s = socket.socket()
        s.bind(("127.0.0.1", int(sys.argv[1])))
        s.listen()
        def hold():
            print(threading.get_native_id(), flush=True)
            sys.stdin.read()
            os._exit(0)
        threading.Thread(target=hold).start()
        ctypes.CDLL(None).pthread_exit(None)
        """

    /// The leaderless program's pid and live thread, once its leader is a zombie (state Z),
    /// which no event announces: /proc is read until then, within a deadline.
    static func awaitLeaderless(_ hider: Hider) throws -> (pid: Int32, tid: Int32) {
        let tid = try #require(Int32(try hider.awaitLine()))
        let pid = hider.process.processIdentifier
        let deadline = Deadline.after(seconds: 10)
        while state(pid) != "Z" && !deadline.hasPassed { _ = poll(nil, 0, 5) }
        try #require(state(pid) == "Z", "the leader did not exit: state \(String(describing: state(pid)))")
        return (pid, tid)
    }

    static func state(_ pid: Int32) -> Character? {
        guard let text = ProcNet.read("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].dropFirst().first
    }

    @Test("A namespace held only by a process whose main thread exited is audited, with that process as its sockets' owner")
    func zombieLeader() throws {
        let hider = try Hider(["-n", "sh", "-c", "ip link set lo up && exec python3 -c \"$0\" \"$1\"", Self.leaderless, "46001"])
        defer { hider.end() }
        let (pid, tid) = try Self.awaitLeaderless(hider)
        var leaderNamespace = stat()
        #expect(stat("/proc/\(pid)/ns/net", &leaderNamespace) != 0, "the leader's namespace is still readable: the case is not made")
        var namespace = stat()
        try #require(stat("/proc/\(pid)/task/\(tid)/ns/net", &namespace) == 0)

        let document = try Self.audit()
        let audit = try #require(document.namespaces.first { $0.netns.inode == UInt64(namespace.st_ino) }, "the namespace is missing")
        #expect(audit.netns.pid == pid)
        let report = try #require(audit.report, "\(audit.error ?? "")")
        let socket = try #require(report.sockets.first { $0.endpoint == "127.0.0.1:46001" })
        #expect(socket.owners.map(\.pid) == [pid])
    }

    @Test("A pid namespace's init holding 0.0.0.0 does not make every program it started the same service: shadowing is found")
    func initIsNotEveryone() throws {
        // pid 1 of a new pid namespace binds the wildcard; a separate program it started binds
        // 127.0.0.1 on the port with SO_REUSEPORT and holds nothing of its parent's.
        let script = """
            import socket, subprocess, sys
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("0.0.0.0", 46000))
            s.listen()
            child = "import os, socket, sys\\nt = socket.socket()\\nt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)\\nt.bind(('127.0.0.1', 46000))\\nt.listen()\\nprint(os.getpid(), os.getppid(), flush=True)\\nsys.stdin.read()"
            subprocess.run([sys.executable, "-c", child])
            """
        let hider = try Hider(["-n", "-p", "-f", "--kill-child", "sh", "-c", "ip link set lo up && exec python3 -c \"$0\"", script])
        defer { hider.end() }
        let line = try hider.awaitLine()
        #expect(line.split(separator: " ").last == "1", "the wildcard's holder is not pid 1 in its namespace: \(line)")

        let document = try Self.audit()
        let audit = try #require(document.namespaces.first { $0.report?.sockets.contains { $0.endpoint == "127.0.0.1:46000" } == true },
                                 "the namespace is missing")
        let report = try #require(audit.report)
        let wildcard = try #require(report.sockets.first { $0.endpoint == "0.0.0.0:46000" })
        let loopback = try #require(report.sockets.first { $0.endpoint == "127.0.0.1:46000" })
        try #require(!wildcard.owners.isEmpty && !loopback.owners.isEmpty)
        // The init is the program's parent, and yet this is another program on the port.
        #expect(SocketOwners.ancestors(of: loopback.owners[0].pid).first == wildcard.owners[0].pid)
        let shadowing = report.findings.filter { $0.kind == .shadowing && $0.port == 46000 }
        #expect(shadowing.count == 1, "\(report.findings.map(\.explanation))")
        #expect(shadowing.first?.inodes == [loopback.inode, wildcard.inode])
    }
}

/// The rules behind "the same service", on /proc as a table.
@Suite("Audit: who counts as the same service")
struct SameServiceTests {
    /// /proc/PID/status files: pid → (parent, NSpid line).
    static func reader(_ table: [Int32: (parent: Int32, nspid: String)]) -> (String) -> String? {
        { path in
            let parts = path.split(separator: "/")
            guard parts.count == 3, let pid = Int32(parts[1]), let entry = table[pid] else { return nil }
            return "Name:\tx\nPPid:\t\(entry.parent)\nNSpid:\t\(entry.nspid)\n"
        }
    }

    @Test("A container whose init is the service's master: its workers are related (one parent), as on a host; the host's pid 1 is nobody's")
    func containerMaster() {
        // 500 is nginx's master as a container's init (1 inside), 601 and 602 its workers;
        // 401 and 402 are two programs the host's pid 1 started.
        let read = Self.reader([601: (500, "601\t2"), 602: (500, "602\t3"), 500: (400, "500\t1"), 400: (1, "400"),
                                401: (1, "401"), 402: (1, "402"), 1: (0, "1")])
        let ancestors = { (pid: Int32) in SocketOwners.ancestors(of: pid, reading: read) }
        #expect(ancestors(601) == [500, 400, 1])
        #expect(SocketOwners.related(601, 602, ancestors: ancestors))
        #expect(SocketOwners.related(500, 601, ancestors: ancestors))
        #expect(!SocketOwners.related(401, 402, ancestors: ancestors))
    }

    @Test("Only a process holding both sockets makes them one service's; being its parent or child is not enough")
    func holdingBoth() {
        func socket(_ address: String, inode: UInt64, pids: [Int32]) -> AuditSocket {
            AuditSocket(transport: .tcp, address: address, port: 46000, uid: 0, user: "root", inode: inode,
                        owners: pids.map { SocketOwner(pid: $0, command: "p\($0)") })
        }
        let family = Audit.Context(ipv6: false, related: { _, _ in true })
        // The parent's wildcard, and the child's own loopback socket: two programs.
        #expect(Audit.findings([socket("0.0.0.0", inode: 1, pids: [10]), socket("127.0.0.1", inode: 2, pids: [11])], context: family).map(\.kind) == [.shadowing])
        // A master that bound both, and a worker that inherited both: the per-address fix.
        #expect(Audit.findings([socket("0.0.0.0", inode: 1, pids: [10, 11]), socket("127.0.0.1", inode: 2, pids: [10, 11])], context: family).isEmpty)
        #expect(Audit.findings([socket("0.0.0.0", inode: 1, pids: [10]), socket("127.0.0.1", inode: 2, pids: [10])], context: family).isEmpty)
    }
}

/// The same leaderless process, audited by its own user, root or not.
@Suite("Audit: a leaderless process's sockets keep their owner, for any user", .enabled(if: python3Installed, "needs python3"))
struct LeaderlessOwnerTests {
    @Test("Its own user sees the owner of a socket whose process's main thread exited (the kernel gives that fd folder to root)")
    func ownUserSeesOwner() throws {
        let port = try Topology.freeHostPort(for: .tcp)
        let hider = try AuditHidingTests.Hider(["-c", AuditHidingTests.leaderless, String(port)], executable: "/usr/bin/python3")
        defer { hider.end() }
        let (pid, _) = try AuditHidingTests.awaitLeaderless(hider)
        let report = Audit.run(port: port)
        let socket = try #require(report.sockets.first { $0.endpoint == "127.0.0.1:\(port)" })
        #expect(socket.owners.map(\.pid) == [pid], "owners \(socket.owners)")
    }
}

@Suite("Programs the lab runs are found by exact names")
struct SearchPathTests {
    @Test("PATH entries that are not UTF-8, or not absolute, are skipped, never decoded")
    func exactFolders() {
        let path = Array("/opt/a:".utf8) + Array("/opt/hl-".utf8) + [0xff] + Array("bin::relative:/opt/b".utf8)
        #expect(SearchPath.folders(path: path) == ["/opt/a", "/opt/b"] + SearchPath.systemFolders)
        #expect(SearchPath.folders(path: nil) == SearchPath.systemFolders)
        #expect(SearchPath.find("sh", path: Array("/nonexistent".utf8)).map { SearchPath.systemFolders.map { $0 + "/sh" }.contains($0) } == true)
    }
}
