import CHijackLab
import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

/// What the kernel tests need from this machine: qemu, a kernel package, root.
enum KernelsTestEnvironment {
    static var qemu: String? { HostTools.find("qemu-system-x86_64") }

    /// A Debian kernel package named by HIJACK_LAB_TEST_KERNEL (CI downloads one there).
    static var kernelPackage: String? {
        guard let path = ProcessInfo.processInfo.environment["HIJACK_LAB_TEST_KERNEL"], !path.isEmpty,
              FileManager.default.isReadableFile(atPath: path) else { return nil }
        return path
    }

    static var canBootGuest: Bool { qemu != nil && kernelPackage != nil && geteuid() == 0 }

    static var skipReason: Comment {
        if qemu == nil { return "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)" }
        if kernelPackage == nil { return "HIJACK_LAB_TEST_KERNEL does not name a readable Debian kernel package (.deb)" }
        return "needs root: the host's column runs the netns topology"
    }
}

@Suite("Kernels", .serialized)
struct KernelsTests {
    func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("hijack-lab-test-\(UUID().uuidString)-\(name)").path
    }

    func writeArchive(_ build: (inout CpioWriter) -> Void) throws -> [UInt8] {
        let path = temporaryPath("initramfs.cpio")
        defer { unlink(path) }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        var writer = CpioWriter(fd: fd)
        build(&writer)
        let failure = writer.finish()
        close(fd)
        #expect(failure == nil)
        return try Array(Data(contentsOf: URL(fileURLWithPath: path)))
    }

    @Test("the cpio writer: newc entries read back with their names, types, modes and bytes, parents first, 4-byte aligned")
    func cpioRoundTrip() throws {
        let payload = Array("hello, initramfs\n".utf8)
        let odd = [UInt8](repeating: 0xAB, count: 4097)
        let bytes = try writeArchive { writer in
            writer.add("/opt/hijack-lab/hijack-lab", kind: .file, permissions: 0o755, data: payload)
            writer.add("/dev/console", kind: .characterDevice(major: 5, minor: 1), permissions: 0o600)
            writer.addFolder("/opt")
            writer.add("kernels/modules/veth.ko", kind: .file, permissions: 0o644, data: odd)
            writer.add("/lib64/ld-linux-x86-64.so.2", kind: .symlink, permissions: 0o777, data: Array("/lib/x86_64-linux-gnu/ld.so".utf8))
        }
        #expect(bytes.count % 4 == 0)
        let entries = try CpioReader.entries(bytes)
        #expect(entries.map(\.name) == ["opt", "opt/hijack-lab", "opt/hijack-lab/hijack-lab", "dev", "dev/console", "kernels", "kernels/modules",
                                        "kernels/modules/veth.ko", "lib64", "lib64/ld-linux-x86-64.so.2"])
        let binary = try #require(entries.first { $0.name == "opt/hijack-lab/hijack-lab" })
        #expect(binary.mode == 0o100755)
        #expect(binary.data == payload)
        let console = try #require(entries.first { $0.name == "dev/console" })
        #expect(console.mode == 0o020600)
        #expect(console.rdevMajor == 5 && console.rdevMinor == 1)
        #expect(entries.first { $0.name == "kernels/modules/veth.ko" }?.data == odd)
        #expect(entries.first { $0.name == "opt" }?.mode == 0o040755)
        #expect(entries.first { $0.name.hasPrefix("lib64/") }?.mode == 0o120777)
    }

    @Test("the cpio writer agrees with GNU cpio's reader", .enabled(if: HostTools.find("cpio") != nil, "GNU cpio is not installed"))
    func cpioAgreesWithGNUCpio() throws {
        let bytes = try writeArchive { writer in
            writer.add("/etc/passwd", kind: .file, permissions: 0o644, data: Array("root:x:0:0::/root:/bin/sh\n".utf8))
            writer.add("/tmp", kind: .directory, permissions: 0o1777)
        }
        let path = temporaryPath("check.cpio")
        defer { unlink(path) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let listing = HostTools.run(try #require(HostTools.find("cpio")), ["-t", "-v", "-F", path])
        #expect(listing.status == 0, "\(listing.output)")
        #expect(listing.output.contains("etc/passwd"))
        #expect(listing.output.contains("drwxrwxrwt"))
        #expect(!listing.output.contains("TRAILER"), "the trailer ends the archive and is no entry")
    }

    @Test("a malformed archive is refused by the reader, with where")
    func cpioReaderRefusesGarbage() {
        #expect(throws: CpioReader.Malformed.self) { try CpioReader.entries(Array("070702".utf8) + [UInt8](repeating: 48, count: 200)) }
        #expect(throws: CpioReader.Malformed.self) { try CpioReader.entries([1, 2, 3]) }
    }

    @Test(".deb unpacking says what is wrong: no file, not a package, a package without a kernel")
    func debErrors() throws {
        let folder = temporaryPath("unpack")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let missing = KernelSource.unpack(package: "/nonexistent/linux-image.deb", into: folder)
        #expect(failureMessage(missing)?.contains("no such file") == true)

        let text = temporaryPath("not-a.deb")
        defer { unlink(text) }
        try Data("just text\n".utf8).write(to: URL(fileURLWithPath: text))
        let notPackage = KernelSource.unpack(package: text, into: folder)
        #expect(failureMessage(notPackage)?.contains("not a Debian package") == true)
        #expect(failureMessage(KernelSource.unpack(package: "/tmp", into: folder))?.contains("not a regular file") == true)
    }

    @Test("a Debian package without boot/vmlinuz-* is named as such", .enabled(if: HostTools.find("dpkg-deb") != nil, "dpkg-deb is not installed"))
    func debWithoutKernel() throws {
        let source = temporaryPath("package")
        let package = temporaryPath("empty.deb")
        let folder = temporaryPath("unpack")
        defer { [source, package, folder].forEach { try? FileManager.default.removeItem(atPath: $0) } }
        try FileManager.default.createDirectory(atPath: source + "/DEBIAN", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: source + "/usr/share/doc/empty", withIntermediateDirectories: true)
        try Data("Package: empty\nVersion: 1.0\nArchitecture: amd64\nMaintainer: test <t@example.org>\nDescription: nothing\n".utf8)
            .write(to: URL(fileURLWithPath: source + "/DEBIAN/control"))
        let built = HostTools.run(try #require(HostTools.find("dpkg-deb")), ["-b", source, package])
        try #require(built.status == 0, "\(built.output)")
        let message = failureMessage(KernelSource.unpack(package: package, into: folder))
        #expect(message?.contains("holds no boot/vmlinuz-*") == true, "\(message ?? "it unpacked")")
    }

    @Test("a huge file that starts like an ar archive is refused from its headers, never read whole")
    func hugeArchiveHeaderOnly() throws {
        let huge = temporaryPath("huge.deb")
        let folder = temporaryPath("unpack")
        defer { unlink(huge); try? FileManager.default.removeItem(atPath: folder) }
        // 4 GB, sparse: the magic, then zeros, which no member header is.
        try Data("!<arch>\n".utf8).write(to: URL(fileURLWithPath: huge))
        try #require(truncate(huge, 4 << 30) == 0)
        let peakBefore = Self.resetPeakResidentKiB()
        let message = failureMessage(KernelSource.unpack(package: huge, into: folder))
        #expect(message?.contains("not a Debian package (the ar member header at byte 8 is malformed") == true, "\(message ?? "it unpacked")")
        if let before = peakBefore, let after = Self.peakResidentKiB() { #expect(after - before < 64 * 1024, "peak RSS grew by \(after - before) KiB") }

        // A member that claims gigabytes is stepped over, not read.
        var header = Array("debian-binary/  ".utf8) + Array(repeating: UInt8(ascii: " "), count: 32)
        header += Array("3221225472".utf8) + Array("`\n".utf8)
        let fd = open(huge, O_WRONLY | O_TRUNC | O_CLOEXEC)
        try #require(fd >= 0)
        _ = (ArMember.magic + header).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        try #require(truncate(huge, 8 + 60 + 3_221_225_472) == 0)
        #expect((try? ArMember.list(huge).get()) == [ArMember(name: "debian-binary", offset: 68, size: 3_221_225_472)])
        let second = failureMessage(KernelSource.unpack(package: huge, into: folder))
        #expect(second?.contains("its ar members are debian-binary, not") == true, "\(second ?? "it unpacked")")
    }

    func failureMessage(_ result: Result<KernelSource, KernelsError>) -> String? {
        if case .failure(let error) = result { return error.message }
        return nil
    }

    @Test("the initramfs takes the running hijack-lab and its hijack-lab-* siblings, never the test bundle; init is the front")
    func executablesToCopy() {
        let running = TestLab.agentExecutable
        let copies = Initramfs.labExecutables(running: running)
        #expect(copies.contains(running))
        #expect(copies.allSatisfy { path in
            let name = path.split(separator: "/").last.map(String.init) ?? ""
            return (name == "hijack-lab" || name.hasPrefix("hijack-lab-")) && !name.contains(".")
        }, "\(copies)")
        #expect(Initramfs.initPath(running: running) == Initramfs.binFolder + "/hijack-lab")
    }

    @Test("module dependencies come from the module's own depends= field")
    func moduleDependencies() {
        let module = Array("\u{7f}ELF....\0license=GPL\0depends=virtio,virtio_ring\0retpoline=Y\0".utf8)
        #expect(KernelSource.dependencies(of: module) == ["virtio", "virtio_ring"])
        #expect(KernelSource.dependencies(of: Array("\0depends=\0".utf8)) == [])
        #expect(KernelSource.dependencies(of: Array("nothing here".utf8)) == [])
        #expect(KernelSource.moduleName("kernel/drivers/net/veth.ko.xz") == "veth")
        #expect(KernelSource.moduleName("kernel/drivers/virtio/virtio-pci.ko") == "virtio_pci")
    }

    @Test("frames from the guest: split anywhere, a result's bytes may hold newlines")
    func frames() {
        let stream = Array("hello 6.1.0-56-cloud-amd64\nnote module x: errno 2\nstart catalog\nprogress catalog [ 1/34] a b\nresult catalog 1 7\n{\n\"a\"}\n\ndone\n".utf8)
        for cut in [1, 5, 40, 83, stream.count - 1] {
            var reader = FrameReader()
            let events = reader.feed(Array(stream[..<cut])) + reader.feed(Array(stream[cut...]))
            #expect(events == [.hello("6.1.0-56-cloud-amd64"), .note("module x: errno 2"), .start("catalog"),
                               .progress(job: "catalog", text: "[ 1/34] a b"), .result(job: "catalog", status: 1, output: Array("{\n\"a\"}\n".utf8)), .done],
                    "cut at \(cut)")
        }
    }

    @Test("a matrix key turns back into the filter that runs its case again")
    func matrixKeys() {
        let endpoints = MatrixEndpoint.standard
        let mapped = endpoints.first { $0.label == "::ffff:127.0.0.1" }!
        let loopback = endpoints.first { $0.label == "127.0.0.1" }!
        let matrixCase = MatrixCase(transport: .tcp, first: mapped, firstOptions: .reuseAddress, second: loopback, secondOptions: .reuseAddress, secondUser: .other)
        let key = OutcomeKeys.key(matrixCase)
        #expect(key == "matrix tcp other ::ffff:127.0.0.1 SO_REUSEADDR / 127.0.0.1 SO_REUSEADDR")
        #expect(OutcomeKeys.matrixArguments(forKey: key) == ["--transport", "tcp", "--addresses", "::ffff:127.0.0.1,127.0.0.1", "--options", "SO_REUSEADDR",
                                                             "--users", "other"])
        var filter = MatrixFilter()
        filter.transports = [.tcp]
        filter.addresses = [mapped, loopback]
        filter.options = [.reuseAddress]
        filter.users = [.other]
        #expect(filter.cases.map(OutcomeKeys.key).contains(key), "the filter runs the very case again")
        let alone = OutcomeKeys.key(MatrixCase(transport: .udp, first: loopback, firstOptions: .none, second: nil))
        #expect(OutcomeKeys.matrixArguments(forKey: alone) == ["--transport", "udp", "--addresses", "127.0.0.1", "--options", "none", "--users", "same"])
    }

    @Test("a difference is confirmed only when every kernel held its outcome every time")
    func classification() {
        var host = KernelColumn(label: "6.18.44 (host)", release: "6.18.44", isHost: true, how: "host")
        var old = KernelColumn(label: "6.1.192", release: "6.1.0-56-cloud-amd64", isHost: false, how: "qemu")
        host.outcomes = ["a": "V", "b": "V", "c": "V"]
        old.outcomes = ["a": "-", "b": "-", "c": "V"]
        host.reruns = ["a": ["V", "V"], "b": ["V", "V"]]
        old.reruns = ["a": ["-", "-"], "b": ["V", "-"]]
        #expect(KernelComparison.differingKeys([host, old]) == ["a", "b"])
        #expect(KernelComparison.sameKeys([host, old]) == ["c"])
        let verdicts = KernelComparison.classify([host, old], keys: ["a", "b"])
        #expect(verdicts.map(\.kind) == [.confirmed, .unstable])
        #expect(verdicts[1].outcomes["6.1.192"] == ["-": 2, "V": 1])
        host.reruns["c"] = ["V", "V"]
        old.reruns["c"] = ["V", "V"]
        #expect(KernelComparison.classify([host, old], keys: ["c"]).map(\.kind) == [.same], "a watched case that agrees every time")
        let markdown = KernelsReport.render(KernelsResult(date: "d", toolVersion: "t", repeats: 2, matrix: false, columns: [host, old], compared: 3,
                                                          differences: verdicts, notRerun: [], failures: [:]))
        #expect(markdown.contains("Same on 2 kernels:** 1 of 3"))
        #expect(markdown.contains("| a | V (3/3) | \\- (3/3) |"))
        #expect(markdown.contains("\\- ×2<br>V ×1"))

        // --from-json renders the same report from a saved run, booting nothing.
        let saved = temporaryPath("kernels.json")
        let rendered = temporaryPath("KERNELS.md")
        defer { unlink(saved); unlink(rendered) }
        let result = KernelsResult(date: "d", toolVersion: "t", repeats: 2, matrix: false, columns: [host, old], compared: 3,
                                   differences: Array(verdicts), notRerun: [], failures: [:])
        #expect(FileManager.default.createFile(atPath: saved, contents: JSONFormat.encode(result)))
        let captured = TestLab.Captured()
        #expect(CLI.run(["kernels", "--from-json", saved, "--report", rendered], console: captured.console) == 0, "\(captured.err)")
        #expect((try? String(contentsOfFile: rendered, encoding: .utf8)) == KernelsReport.render(result))
        #expect(CLI.run(["kernels", "--from-json", saved, "--matrix"], console: captured.console) == 2)
    }

    @Test("known changes are matched to kernels by version only")
    func knownChanges() {
        let cve = KnownKernelChange.all[2]
        #expect(cve.included(in: "6.1.192") == "yes")
        #expect(cve.included(in: "6.1.100") == "no")
        #expect(cve.included(in: "6.12.79") == "no")
        #expect(cve.included(in: "6.18.44 (host)") == "yes")
        #expect(cve.included(in: "6.19.1") == "yes (newer line)")
        #expect(cve.included(in: "5.15.0") == "unknown")
        #expect(KernelColumn.upstreamVersion(procVersion: "Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)",
                                             release: "6.1.0-56-cloud-amd64") == "6.1.192")
        #expect(KernelColumn.upstreamVersion(procVersion: nil, release: "6.18.44-fc-v782") == "6.18.44")
    }

    @Test("kernels: a repeatable option, and usage errors that exit 2 before anything starts")
    func usage() throws {
        let arguments = try Arguments(["--kernel-package", "a.deb", "--kernel-package=b.deb"], command: "kernels", options: KernelsCommand.options)
        #expect(arguments.allValues("--kernel-package") == ["a.deb", "b.deb"])
        #expect(throws: UsageError.self) { try Arguments(["--report", "a", "--report", "b"], command: "kernels", options: KernelsCommand.options) }
        for (words, message) in [([String](), "name at least one kernel"), (["--kernel", "/boot/x"], "each --kernel needs its own --modules"),
                                 (["--kernel-package", "x.deb", "--repeat", "0"], "--repeat expects a whole number")] {
            let captured = TestLab.Captured()
            let status = CLI.run(["kernels"] + words, console: captured.console, agentExecutable: TestLab.agentExecutable)
            #expect(status == 2)
            #expect(captured.err.contains(message), "\(captured.err)")
        }
        let help = TestLab.Captured()
        #expect(CLI.run(["help", "kernels"], console: help.console) == 0)
        #expect(help.out.contains("apt-get download"))
    }

    @Test("the guest and the host agree on the catalog, except confirmed differences KERNELS.md lists; nothing is left behind",
          .enabled(if: KernelsTestEnvironment.canBootGuest, KernelsTestEnvironment.skipReason), .timeLimit(.minutes(20)))
    func guestMatchesHost() throws {
        let package = try #require(KernelsTestEnvironment.kernelPackage)
        let json = temporaryPath("kernels.json")
        let report = temporaryPath("KERNELS.md")
        defer { unlink(json); unlink(report) }
        let before = leftovers()
        let captured = TestLab.Captured()
        let status = CLI.run(["kernels", "--kernel-package", package, "--scenarios", TestLab.scenariosDirectory, "--repeat", "2",
                              "--json", json, "--report", report], console: captured.console, agentExecutable: TestLab.agentExecutable)
        #expect(status == 0, "\(captured.err.suffix(3000))")
        let result = try JSONDecoder().decode(KernelsResult.self, from: Data(contentsOf: URL(fileURLWithPath: json)))
        #expect(result.failures.isEmpty)
        try #require(result.columns.count == 2)
        let scenarios = try ScenarioFile.loadDirectory(TestLab.scenariosDirectory).scenarios.map { "scenario " + $0.name }
        for column in result.columns {
            #expect(Set(column.outcomes.keys) == Set(scenarios), "every scenario ran on \(column.label)")
            #expect(!column.outcomes.values.contains("could not finish"), "\(column.label)")
        }
        // Names resolve from the lab's own table inside and out: this one once differed by resolver.
        let resolver = "scenario ipv4-only-leaves-ipv6-loopback-open"
        #expect(result.columns[0].outcomes[resolver] == result.columns[1].outcomes[resolver])
        #expect(result.differences.allSatisfy { $0.kind == .confirmed }, "unstable: \(result.differences.filter { $0.kind == .unstable }.map(\.key))")
        let committed = (try? String(contentsOfFile: TestLab.packageRoot.appendingPathComponent("KERNELS.md").path, encoding: .utf8)) ?? ""
        for difference in result.differences {
            #expect(committed.contains(UntrustedText.markdown(difference.key)), "\(difference.key) differs but the committed KERNELS.md does not list it")
        }
        #expect(leftovers() == before, "a temp folder was left behind")
        #expect(!HostTools.run("/usr/bin/pgrep", ["-a", "-f", "qemu-system-x86_64 .*hijack-lab-kernels-"]).output.contains("qemu"), "qemu was left running")
    }

    @Test("SIGINT while a guest boots: exit 130, qemu killed, the temp folder removed",
          .enabled(if: KernelsTestEnvironment.canBootGuest, KernelsTestEnvironment.skipReason), .timeLimit(.minutes(5)))
    func interruptDuringBoot() throws {
        let package = try #require(KernelsTestEnvironment.kernelPackage)
        let report = temporaryPath("KERNELS.md")
        let scenarios = temporaryPath("scenarios")
        try FileManager.default.createDirectory(atPath: scenarios, withIntermediateDirectories: false)
        defer { unlink(report); try? FileManager.default.removeItem(atPath: scenarios) }
        try FileManager.default.copyItem(atPath: TestLab.scenariosDirectory + "/dualstack-blocks-ipv4.json", toPath: scenarios + "/dualstack-blocks-ipv4.json")
        let before = leftovers()
        let child = try ChildProcess(executable: TestLab.agentExecutable,
                                     arguments: ["kernels", "--kernel-package", package, "--scenarios", scenarios, "--report", report], mergeStandardError: true)
        child.closeStdin()
        let deadline = Deadline.after(seconds: 180)
        var booting = false
        while !booting, let line = try child.readLine(until: deadline) { booting = line.contains(": booting (") }
        try #require(booting, "the run never reached the boot")
        kill(child.pid, SIGINT)
        _ = child.readAll(until: deadline)
        let status = child.finish(until: deadline)
        #expect((status >> 8) & 0xff == 130, "wait status \(status)")
        // The guardian removes the folder once the process is gone: a few seconds for an unpacked kernel.
        let removal = Deadline.after(seconds: 60)
        while leftovers() != before, Deadline.now() < removal { usleep(100_000) }
        #expect(leftovers() == before, "a temp folder was left behind")
        #expect(!HostTools.run("/usr/bin/pgrep", ["-a", "-f", "qemu-system-x86_64 .*hijack-lab-kernels-"]).output.contains("qemu"), "qemu was left running")
        #expect(!FileManager.default.fileExists(atPath: report), "an interrupted run writes no report")
    }

    @Test("a child started to die with its parent dies, with what it started, when the parent is SIGKILLed", .timeLimit(.minutes(1)))
    func childDiesWithParent() throws {
        let helper = try ChildProcess(executable: TestLab.agentExecutable,
                                      arguments: [SpawnProbe.argument, "/bin/sh", "-c", "sleep 600 & echo grandchild $!; wait"], mergeStandardError: true)
        defer { helper.killAndReap() }
        helper.closeStdin()
        let deadline = Deadline.after(seconds: 20)
        var child: pid_t?
        var grandchild: pid_t?
        while child == nil || grandchild == nil, let line = try helper.readLine(until: deadline) {
            let words = line.split(separator: " ")
            if words.count == 2, words[0] == "child" { child = pid_t(words[1]) }
            if words.count == 2, words[0] == "grandchild" { grandchild = pid_t(words[1]) }
        }
        let pids = [try #require(child), try #require(grandchild)]
        #expect(pids.allSatisfy(Self.isAlive), "both run while the helper lives")
        // Held by pidfds while alive: a pidfd polls readable once its process has exited,
        // a wait with a deadline, and a reused pid cannot pass for it.
        let handles = pids.map { hl_pidfd_open($0) }
        defer { handles.filter { $0 >= 0 }.forEach { Glibc.close($0) } }
        try #require(handles.allSatisfy { $0 >= 0 })
        kill(helper.pid, SIGKILL)
        _ = helper.finish(until: deadline)
        let gone = Deadline.after(seconds: 10)
        let survivors = zip(pids, handles).filter { (try? waitFor($0.1, events: Int16(POLLIN), until: gone)) != true }.map(\.0)
        #expect(survivors.isEmpty, "left running after the parent's SIGKILL: \(survivors)")
    }

    /// Alive: it exists and is no zombie (a container's pid 1 may never reap the orphans it inherits).
    static func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(close, offsetBy: 2)] != "Z"
    }

    @Test("the console ring keeps only its last bytes, however they arrive; an excerpt is 15 lines of at most 240 characters")
    func consoleRing() {
        var ring = ConsoleRing(capacity: 10)
        ring.append(Array("abc".utf8))
        #expect(ring.bytes == Array("abc".utf8))
        ring.append(Array("defghij".utf8))
        ring.append(Array("kl".utf8))
        #expect(ring.bytes == Array("cdefghijkl".utf8))
        ring.append(Array("0123456789ABCDEF".utf8))
        #expect(ring.bytes == Array("6789ABCDEF".utf8))
        #expect(ring.total == 28)
        var console = ConsoleRing()
        for index in 0..<40 { console.append(Array("line \(index)\r\n".utf8)) }
        console.append([UInt8](repeating: UInt8(ascii: "x"), count: 1000))
        let excerpt = console.excerpt()
        #expect(excerpt.count == 15)
        #expect(excerpt.first == "line 26")
        #expect(excerpt.last == String(repeating: "x", count: 240) + "…")
    }

    @Test("the init's last words: its own lines, a Swift fatal error, and the kernel's panic decoded")
    func initLastWords() {
        let console = ["[    1.0] Run /opt/hijack-lab/bin/hijack-lab as init process",
                       "hijack-lab guest-init: mount sysfs on /sys failed: errno 19",
                       "GuestInit.swift:42: Fatal error: Unexpectedly found nil",
                       "[    1.2] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000086",
                       "[    1.3] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000300"]
        #expect(InitLastWords.find(console: console) == ["hijack-lab guest-init: mount sysfs on /sys failed: errno 19",
                                                         "the init crashed: GuestInit.swift:42: Fatal error: Unexpectedly found nil",
                                                         "the init (pid 1) was killed by signal 6 (SIGABRT), core dumped (the kernel: Attempted to kill init! exitcode=0x86)",
                                                         "the init (pid 1) exited with status 3 (the kernel: Attempted to kill init! exitcode=0x300)"])
        #expect(InitLastWords.find(console: [], notes: ["hijack-lab guest-init: cannot bring lo up: errno 19"]) == ["hijack-lab guest-init: cannot bring lo up: errno 19"])
    }

    func fakeKernel(_ release: String = "6.1.0-fake") -> KernelSource {
        KernelSource(image: "/dev/null", modules: "/nonexistent", release: release, packageVersion: nil, origin: "test", configFile: nil)
    }

    @Test("a guest that writes one endless line costs a fixed ring, and the failure shows 15 short lines", .timeLimit(.minutes(2)))
    func endlessConsole() throws {
        let folder = temporaryPath("boot")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // A stand-in for qemu: 300 MB of console without a newline, then the init's complaint.
        let fake = folder + "/qemu-system-x86_64"
        try TestLab.writeProgram("#!/bin/sh\nhead -c 300000000 /dev/zero | tr '\\000' x\necho\necho 'hijack-lab guest-init: endless on purpose'\nexit 1\n", to: fake)
        let peakBefore = Self.resetPeakResidentKiB()
        let boot = GuestBoot(qemu: fake, kernel: fakeKernel(), initramfs: "/dev/null", initramfsBytes: 0, initPath: "/init", folder: folder, useKVM: false,
                             bootSeconds: 90, runSeconds: 90) { _ in }
        guard case .failure(let error) = boot.run() else { Issue.record("the fake guest came up"); return }
        let peakGrowth = Self.peakResidentKiB().map { $0 - (peakBefore ?? $0) }
        let lines = error.message.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.first == "hijack-lab guest-init: endless on purpose", "\(error.message.prefix(2000))")
        #expect(lines.count <= 20)
        #expect(lines.allSatisfy { $0.count <= 250 })
        #expect(!FileManager.default.fileExists(atPath: folder + "/console.log"), "the console goes to no file")
        // VmHWM is the whole test process's, and the tests that run beside this one raise it
        // too (by 81 MB once, with both cores busy). A console that kept the endless line
        // would hold all 300 MB of it; the ring holds 256 KB.
        if let peakGrowth { #expect(peakGrowth < 192 * 1024, "peak RSS grew by \(peakGrowth) KiB") }
    }

    /// VmHWM after resetting it to the current RSS (clear_refs 5), in KiB.
    static func resetPeakResidentKiB() -> Int? {
        let fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        _ = write(fd, "5", 1)
        close(fd)
        return peakResidentKiB()
    }

    static func peakResidentKiB() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        return Int(line.split(separator: " ")[1])
    }

    @Test("a failure's every line is escaped on stderr: a release from a folder's name cannot reach the terminal raw")
    func failureLinesEscaped() {
        let release = "6.1.0-x\n\u{1b}]0;owned\u{7}"
        let captured = TestLab.Captured()
        let session = KernelsSession(console: captured.console, executable: "/bin/false", qemu: "/bin/false", folder: "/nonexistent", scenarioFolder: "/nonexistent",
                                     scenarioFiles: [], scenarioNames: [], matrix: false, matrixFilter: [], bootTimeout: 1, runTimeout: 1, useKVM: false)
        var console = ConsoleRing()
        console.append(Array("kernel says \u{1b}[2J\n".utf8))
        let boot = GuestBoot(qemu: "/bin/false", kernel: fakeKernel(release), initramfs: "/dev/null", initramfsBytes: 0, initPath: "/init", folder: "/nonexistent",
                             useKVM: false, bootSeconds: 1, runSeconds: 1) { _ in }
        session.report(boot.failure("the guest did not come up.", console: console, notes: []), label: release)
        #expect(!captured.err.contains("\u{1b}"), "\(captured.err)")
        #expect(captured.err.contains("\\x1b]0;owned\\x07: the guest did not come up."), "\(captured.err)")
        #expect(captured.err.contains("kernel says \\x1b[2J"), "\(captured.err)")
    }

    @Test("a guest whose init fails says why first: the init's own words, then its exit status",
          .enabled(if: KernelsTestEnvironment.qemu != nil && KernelsTestEnvironment.kernelPackage != nil, "needs qemu-system-x86_64 and HIJACK_LAB_TEST_KERNEL"),
          .timeLimit(.minutes(10)))
    func failingInitSaysWhy() throws {
        let package = try #require(KernelsTestEnvironment.kernelPackage)
        let folder = temporaryPath("failing-init")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let kernel: KernelSource
        switch KernelSource.unpack(package: package, into: folder + "/kernel") {
        case .success(let unpacked): kernel = unpacked
        case .failure(let error): Issue.record("\(error)"); return
        }
        let initramfs = folder + "/initramfs.cpio"
        let size: Int
        switch Initramfs.build(at: initramfs, modules: [], running: TestLab.agentExecutable, scenarios: [], jobs: []) {
        case .success(let bytes): size = bytes
        case .failure(let error): Issue.record("\(error)"); return
        }
        var boot = GuestBoot(qemu: try #require(KernelsTestEnvironment.qemu), kernel: kernel, initramfs: initramfs, initramfsBytes: size,
                             initPath: Initramfs.initPath(running: TestLab.agentExecutable), folder: folder, useKVM: false, bootSeconds: 300, runSeconds: 60) { _ in }
        boot.initArguments = [GuestInit.failOnPurpose]
        guard case .failure(let error) = boot.run() else { Issue.record("the guest came up"); return }
        #expect(error.message.hasPrefix("hijack-lab guest-init: failing on purpose"), "\(error.message)")
        let lines = error.message.split(separator: "\n").map(String.init)
        #expect(lines.dropFirst().first?.hasPrefix("the init (pid 1) exited with status 3") == true, "\(error.message)")
        #expect(lines.contains("Last console lines:"))
    }

    func leftovers() -> Set<String> {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        return Set(((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).filter { $0.hasPrefix("hijack-lab-kernels-") })
    }
}
