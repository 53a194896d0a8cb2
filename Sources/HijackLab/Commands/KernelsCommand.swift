import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import CHijackLab
import Foundation
import Glibc

struct KernelsCommand: Command {
    static let name = "kernels"
    static let synopsis = "kernels (--kernel-package FILE.deb | --kernel VMLINUZ --modules DIR)... [options]"
    static let summary = CommandIndex.summary(of: name)
    static let options = [
        OptionSpec("--kernel-package", "FILE.deb", "a Debian linux-image package, unpacked here (repeatable)", repeatable: true),
        OptionSpec("--kernel", "VMLINUZ", "a kernel image to boot (repeatable; each with one --modules)", repeatable: true),
        OptionSpec("--modules", "DIR", "its lib/modules/RELEASE folder (holds modules.dep)", repeatable: true),
        LabOptions.scenarios,
        OptionSpec("--matrix", nil, "also run the full matrix (4,096 cases) on every kernel: minutes per kernel under emulation"),
        OptionSpec("--transport", "LIST", "with --matrix: only these cases, as `matrix` takes them (also --addresses, --options, --users)"),
        OptionSpec("--addresses", "LIST", "with --matrix: a subset of the matrix's addresses"),
        OptionSpec("--options", "LIST", "with --matrix: a subset of none, SO_REUSEADDR, SO_REUSEPORT, both"),
        OptionSpec("--users", "LIST", "with --matrix: same, other"),
        OptionSpec("--repeat", "N", "re-runs of each difference on every kernel before it counts as confirmed (default 5)"),
        OptionSpec("--report", "FILE", "the comparison (default KERNELS.md; - for stdout)"),
        OptionSpec("--json", "FILE", "the comparison as JSON, every outcome included (- for stdout)"),
        OptionSpec("--from-json", "FILE", "boot nothing: render --report again from the --json of an earlier run"),
        OptionSpec("--boot-timeout", "SECONDS", "how long a guest may take to come up (default 300)"),
        OptionSpec("--run-timeout", "SECONDS", "how long a guest may take to run its jobs (default 900; 5400 with --matrix)"),
    ]
    static let discussion = """
        Runs the lab on each kernel you name and on this host's kernel, and compares what the
        kernels did. For each kernel it builds a small initramfs in a temp folder (this hijack-lab
        and its shared libraries, iproute2's `ip` and its libraries, the kernel's veth and virtio
        modules, the scenario files, and this host's /etc/passwd and /etc/group), boots it with
        qemu-system-x86_64 (KVM when /dev/kvm really works, software emulation otherwise), with
        no network device, and lets hijack-lab itself be the guest's init: it mounts /proc, /sys,
        /dev and /tmp, loads the modules, brings lo up, runs `all` (and `matrix`) in the netns
        topology, sends the JSON back over a virtio serial port, and powers off.

        Every scenario and matrix cell whose outcome differs between kernels is then run again,
        --repeat times on every kernel (the host included), and reported as a confirmed
        difference only if each kernel gave its own outcome every time; otherwise it is listed
        as unstable, with counts. Progress goes to stderr per kernel. The temp folder and qemu
        are removed on every exit path, Ctrl-C included.

        Needs: root (the lab's netns topology), qemu-system-x86_64 (apt-get install
        qemu-system-x86), dpkg-deb or ar and tar, ldd, and `ip`. Kernels must be x86-64 and have
        veth and network namespaces. This host must be x86-64: the guest runs this very binary.
        """
    static let examples = [
        "apt-get download $(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image/ {print $2}')",
        "hijack-lab kernels --kernel-package linux-image-6.1.0-*-cloud-amd64_*.deb",
        "hijack-lab kernels --kernel-package a.deb --kernel-package b.deb --matrix --report KERNELS.md",
        "hijack-lab kernels --kernel-package a.deb --matrix --transport tcp --addresses ::ffff:127.0.0.1,127.0.0.1 --options SO_REUSEADDR --users other",
        "hijack-lab kernels --kernel /boot/vmlinuz-6.8.0 --modules /lib/modules/6.8.0 --scenarios my-scenarios",
    ]
    static let exitStatusHelp = """
        EXIT STATUS
          0    every kernel ran every job (differences between kernels are findings, not failures)
          1    some kernel did not boot or could not finish a job; the report says which
          2    usage error, no qemu, a kernel package that cannot be used (no veth or network
               namespaces), or an output that could not be written
          130  interrupted by SIGINT, 143 by SIGTERM; qemu was killed and the temp folder removed
        """

    static func run(_ arguments: Arguments, in context: CommandContext) -> ExitStatus {
        let console = context.console
        if let extra = arguments.operands.first {
            return usageFailure(name, "kernels takes no operands (got \"\(UntrustedText.terminal(extra))\"); name kernels with --kernel-package", console: console)
        }
        if let saved = arguments.value("--from-json") { return render(saved, arguments, console: console) }
        let packages = arguments.allValues("--kernel-package")
        let images = arguments.allValues("--kernel")
        let moduleFolders = arguments.allValues("--modules")
        let repeats: Int
        let bootTimeout: Double
        let runTimeout: Double
        do throws(UsageError) {
            repeats = try arguments.integer("--repeat", range: 1...100) ?? 5
            bootTimeout = try arguments.seconds("--boot-timeout", default: 300, range: 1...3600)
            runTimeout = try arguments.seconds("--run-timeout", default: arguments.flag("--matrix") ? 5400 : 900, range: 1...86400)
        } catch {
            return usageFailure(name, error.message, console: console)
        }
        var matrixFilter: [String] = []
        for option in ["--transport", "--addresses", "--options", "--users"] {
            guard let value = arguments.value(option) else { continue }
            guard arguments.flag("--matrix") else { return usageFailure(name, "\(option) selects matrix cases: it needs --matrix", console: console) }
            if let problem = Self.matrixFilterProblem(option, value) { return usageFailure(name, problem, console: console) }
            matrixFilter += [option, value]
        }
        guard images.count == moduleFolders.count else {
            return usageFailure(name, "each --kernel needs its own --modules (got \(images.count) --kernel and \(moduleFolders.count) --modules)", console: console)
        }
        guard !packages.isEmpty || !images.isEmpty else {
            return usageFailure(name, "name at least one kernel: --kernel-package FILE.deb, or --kernel VMLINUZ --modules DIR", console: console)
        }
        var machine = utsname()
        uname(&machine)
        let architecture = withUnsafeBytes(of: &machine.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard architecture == "x86_64" else {
            console.err("hijack-lab kernels: this host is \(UntrustedText.terminal(architecture)); the guests are x86-64 and run this very binary, so the host must be x86-64 too")
            return .usage
        }
        // The guest's initramfs is made of this program and its siblings, found by name: under a
        // folder whose name is not UTF-8 no name would be exact, and nothing is copied by a
        // decoded one.
        guard Front.ownPath() != nil else {
            console.err("hijack-lab kernels: this program's folder name is not UTF-8, so its programs cannot be copied into a guest by name; move hijack-lab and hijack-lab-full to a folder whose name is UTF-8")
            return .usage
        }
        guard let qemu = HostTools.find("qemu-system-x86_64") else {
            console.err("hijack-lab kernels: qemu-system-x86_64 is not installed. On Debian or Ubuntu: apt-get install qemu-system-x86")
            return .usage
        }
        guard geteuid() == 0 else {
            console.err("hijack-lab kernels: needs root: the host's own column runs the lab's netns topology, as the guests do")
            return .usage
        }
        let scenarioFolder = arguments.value("--scenarios") ?? "scenarios"
        let scenarioFiles = ((try? FileManager.default.contentsOfDirectory(atPath: scenarioFolder)) ?? []).filter { $0.hasSuffix(".json") }.sorted()
            .map { scenarioFolder + "/" + $0 }
        let scenarioNames: [String]
        do throws(ScenarioError) {
            let loaded = try ScenarioFile.loadDirectory(scenarioFolder)
            for error in loaded.errors { console.err("invalid scenario file (not run on any kernel): \(error)") }
            scenarioNames = loaded.scenarios.map(\.name)
        } catch {
            console.err("hijack-lab kernels: \(error.description)")
            return .usage
        }
        guard !scenarioNames.isEmpty else {
            console.err("hijack-lab kernels: --scenarios \(UntrustedText.terminal(scenarioFolder)): holds no valid scenario files (*.json)")
            return .usage
        }
        let report = OutputFile(option: "--report", path: arguments.value("--report") ?? "KERNELS.md")
        let json = arguments.value("--json").map { OutputFile(option: "--json", path: $0) }
        if let refused = OutputFile.refuse([report, json], command: name, console: console) { return refused }

        InterruptGuard.install()
        let temporary: TemporaryFolder
        do throws(LabError) {
            temporary = try TemporaryFolder(prefix: "hijack-lab-kernels")
        } catch {
            console.err("hijack-lab kernels: \(error)")
            return .usage
        }
        defer { temporary.remove() }

        var kernels: [KernelSource] = []
        for (index, package) in packages.enumerated() {
            console.err("unpacking \(UntrustedText.terminal(package))")
            switch KernelSource.unpack(package: package, into: temporary.path + "/kernel-\(index)") {
            case .success(let kernel): kernels.append(kernel)
            case .failure(let error):
                console.err("hijack-lab kernels: \(error)")
                return .usage
            }
        }
        for (image, modules) in zip(images, moduleFolders) {
            switch KernelSource.direct(image: image, modules: modules) {
            case .success(let kernel): kernels.append(kernel)
            case .failure(let error):
                console.err("hijack-lab kernels: \(error)")
                return .usage
            }
        }
        var modulePlans: [[(String, [UInt8])]] = []
        let scratch = temporary.path + "/scratch"
        mkdir(scratch, 0o755)
        for kernel in kernels {
            guard kernel.configSays("CONFIG_NET_NS", in: ["y"]) else {
                console.err("hijack-lab kernels: \(UntrustedText.terminal(kernel.release)) is built without network namespaces (CONFIG_NET_NS): the lab needs them")
                return .usage
            }
            switch kernel.modulesToLoad(scratch: scratch) {
            case .success(let modules): modulePlans.append(modules)
            case .failure(let error):
                console.err("hijack-lab kernels: \(error)")
                return .usage
            }
        }

        let session = KernelsSession(console: console, executable: context.agentExecutable, qemu: qemu, folder: temporary.path,
                                     scenarioFolder: scenarioFolder, scenarioFiles: scenarioFiles, scenarioNames: scenarioNames, matrix: arguments.flag("--matrix"), matrixFilter: matrixFilter,
                                     bootTimeout: bootTimeout, runTimeout: runTimeout, useKVM: hl_kvm_usable() == 1)
        let result = session.run(kernels: kernels, modules: modulePlans, repeats: repeats)
        if let signal = ChildRegistry.shared.interruption { return .interrupted(signal: signal) }

        var files = OutputSet()
        files.stage(KernelsReport.render(result), to: report)
        if let json { files.stage(String(decoding: JSONFormat.encode(result), as: UTF8.self) + "\n", to: json) }
        guard let written = files.publish(console: console) else { return .interrupted(signal: ChildRegistry.shared.interruption ?? SIGINT) }
        for output in written where !output.isStandardOutput { console.err("wrote \(output.shown)") }
        for failure in files.failures { console.err("hijack-lab kernels: \(failure)") }
        let confirmed = result.differences.filter { $0.kind == .confirmed }.count
        let unstable = result.differences.count - confirmed
        console.err("\(result.columns.count) kernels (the host's included), \(result.compared) outcomes compared: \(confirmed) confirmed differences, \(unstable) unstable"
            + (result.failures.isEmpty ? "" : "; no results from " + result.failures.keys.sorted().map(UntrustedText.terminal).joined(separator: ", ")))
        if !matrixFilter.isEmpty { console.err("the matrix was filtered: KERNELS.md covers only the selected cases") }
        let status: ExitStatus = result.failures.isEmpty && result.notRerun.isEmpty ? .success : .differs
        return files.failures.isEmpty ? status : status.worst(.usage)
    }

    /// `--from-json`: the report of an earlier run, rendered again from its JSON (after a change
    /// in the renderer, without hours of emulation). Nothing is run, so nothing new is claimed.
    static func render(_ saved: String, _ arguments: Arguments, console: Console) -> ExitStatus {
        let clashing = ["--kernel-package", "--kernel", "--modules", "--matrix", "--json"].filter { arguments.value($0) != nil || arguments.flag($0) }
        guard clashing.isEmpty else {
            return usageFailure(name, "--from-json renders a saved run; it takes no \(clashing.joined(separator: ", "))", console: console)
        }
        guard let data = FileManager.default.contents(atPath: saved) else {
            console.err("hijack-lab kernels: --from-json \(UntrustedText.terminal(saved)): cannot read it")
            return .usage
        }
        let result: KernelsResult
        do {
            result = try JSONDecoder().decode(KernelsResult.self, from: data)
        } catch {
            console.err("hijack-lab kernels: --from-json \(UntrustedText.terminal(saved)): not the JSON of `hijack-lab kernels --json`: \(UntrustedText.terminal(String(describing: error).prefix(300).description))")
            return .usage
        }
        let report = OutputFile(option: "--report", path: arguments.value("--report") ?? "KERNELS.md")
        if let refused = OutputFile.refuse([report], command: name, console: console) { return refused }
        var files = OutputSet()
        files.stage(KernelsReport.render(result), to: report)
        guard let written = files.publish(console: console) else { return .interrupted(signal: ChildRegistry.shared.interruption ?? SIGINT) }
        for output in written where !output.isStandardOutput { console.err("wrote \(output.shown)") }
        for failure in files.failures { console.err("hijack-lab kernels: \(failure)") }
        return files.failures.isEmpty ? .success : .usage
    }

    /// The matrix's own reading of a filter list, so that a typo stops here and not in every guest.
    static func matrixFilterProblem(_ option: String, _ value: String) -> String? {
        let result: Result<[String], MatrixFilter.ListError>
        switch option {
        case "--transport":
            result = MatrixFilter.parseList(value, flag: option, parse: { Transport(rawValue: $0)?.rawValue }, allowed: ["tcp", "udp"])
        case "--addresses":
            let labels = MatrixEndpoint.standard.map(\.label)
            result = MatrixFilter.parseList(value, flag: option, parse: { labels.contains($0) ? $0 : nil }, allowed: labels)
        case "--options":
            result = MatrixFilter.parseList(value, flag: option, parse: { name in (MatrixOptions(rawValue: name) ?? MatrixOptions.allCases.first { $0.short == name })?.rawValue },
                                            allowed: ["none", "SO_REUSEADDR", "SO_REUSEPORT", "both"])
        default:
            result = MatrixFilter.parseList(value, flag: option, parse: { SocketUser(rawValue: $0)?.rawValue }, allowed: ["same", "other"])
        }
        if case .failure(let problem) = result { return problem.reason }
        return nil
    }
}
