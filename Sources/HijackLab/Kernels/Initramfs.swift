import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation
import Glibc

/// The guest's whole root file system, built on the host for one kernel: hijack-lab (as /init's
/// target and as the lab), `ip`, the shared libraries both load at the paths where the loader
/// looks for them, the host's /etc/passwd and /etc/group (so users have the same names), the
/// scenario files, the kernel's modules, and the plan of jobs.
struct Initramfs {
    /// Where hijack-lab and its sibling executables live in the guest.
    static let binFolder = "/opt/hijack-lab"
    static let scenariosFolder = "/scenarios"
    static let outputFolder = "/tmp/out"

    /// A job the guest runs: its output file comes back to the host.
    struct Job: Equatable {
        let name: String
        /// The file, in the guest, whose content is the job's result.
        let output: String
        /// Arguments after `hijack-lab`.
        let arguments: [String]
    }

    /// The executables to copy: the running one, and each sibling named hijack-lab or
    /// hijack-lab-SOMETHING (the heavy commands may live in one), side by side.
    static func labExecutables(running: String) -> [String] {
        let folder = OutputFile.folder(of: running)
        let siblings = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { name in
            (name == "hijack-lab" || name.hasPrefix("hijack-lab-")) && !name.contains(".")
        }.map { folder + "/" + $0 }.filter { path in
            var status = stat()
            return stat(path, &status) == 0 && status.st_mode & S_IFMT == S_IFREG && access(path, X_OK) == 0
        }
        return Array(Set(siblings + [running])).sorted()
    }

    /// The guest's init: the front executable `hijack-lab` when it is among the copies (the
    /// heavy commands may live in a sibling), else the running executable.
    static func initPath(running: String) -> String {
        let names = labExecutables(running: running).map { $0.split(separator: "/").last.map(String.init) ?? $0 }
        return binFolder + "/" + (names.contains("hijack-lab") ? "hijack-lab" : (running.split(separator: "/").last.map(String.init) ?? "hijack-lab"))
    }

    /// Writes the archive to `path`. `modules` are file names and contents, in load order.
    static func build(at path: String, modules: [(String, [UInt8])], running: String, scenarios: [String],
                      jobs: [Job]) -> Result<Int, KernelsError> {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return .failure(KernelsError("cannot create \(path): \(SystemError.last("open"))")) }
        defer { close(fd) }
        var archive = CpioWriter(fd: fd)
        for folder in ["/dev", "/proc", "/sys", "/tmp", "/root", "/etc", "/kernels/modules", scenariosFolder] { archive.addFolder(folder) }
        archive.add("/dev/console", kind: .characterDevice(major: 5, minor: 1), permissions: 0o600)
        archive.add("/dev/null", kind: .characterDevice(major: 1, minor: 3), permissions: 0o666)

        var libraries: Set<String> = []
        let executables = labExecutables(running: running)
        for executable in executables {
            guard let data = FileManager.default.contents(atPath: executable) else { return .failure(KernelsError("cannot read \(executable)")) }
            archive.add(binFolder + "/" + (executable.split(separator: "/").last.map(String.init) ?? "hijack-lab"), kind: .file, permissions: 0o755, data: Array(data))
            switch HostTools.libraries(of: executable) {
            case .success(let found): libraries.formUnion(found)
            case .failure(let error): return .failure(error)
            }
        }
        guard let ip = HostTools.find("ip") else {
            return .failure(KernelsError("iproute2's `ip` is not installed on the host; the guest's lab needs it (apt-get install iproute2)"))
        }
        guard let ipData = FileManager.default.contents(atPath: ip) else { return .failure(KernelsError("cannot read \(ip)")) }
        archive.add("/usr/sbin/ip", kind: .file, permissions: 0o755, data: Array(ipData))
        switch HostTools.libraries(of: ip) {
        case .success(let found): libraries.formUnion(found)
        case .failure(let error): return .failure(error)
        }
        for library in libraries.sorted() {
            // Stored at the path the loader asks for, with the content of the file it resolves to.
            guard let data = FileManager.default.contents(atPath: library) else { return .failure(KernelsError("cannot read \(library)")) }
            archive.add(library, kind: .file, permissions: 0o755, data: Array(data))
        }
        for file in ["/etc/passwd", "/etc/group"] {
            let data = FileManager.default.contents(atPath: file).map(Array.init) ?? Array("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n".utf8)
            archive.add(file, kind: .file, permissions: 0o644, data: data)
        }
        for scenario in scenarios {
            guard let data = FileManager.default.contents(atPath: scenario) else { return .failure(KernelsError("cannot read \(scenario)")) }
            archive.add(scenariosFolder + "/" + (scenario.split(separator: "/").last.map(String.init) ?? "scenario.json"), kind: .file, permissions: 0o644, data: Array(data))
        }
        var order: [String] = []
        for (name, data) in modules {
            order.append(name)
            archive.add(GuestInit.modulesFolder + "/" + name, kind: .file, permissions: 0o644, data: data)
        }
        archive.add(GuestInit.modulesOrderPath, kind: .file, permissions: 0o644, data: Array(order.map { $0 + "\n" }.joined().utf8))
        let guestExecutable = binFolder + "/" + (running.split(separator: "/").last.map(String.init) ?? "hijack-lab")
        let plan = jobs.map { job in ([job.name, job.output, guestExecutable] + job.arguments).joined(separator: "\t") + "\n" }.joined()
        archive.add(GuestInit.planPath, kind: .file, permissions: 0o644, data: Array(plan.utf8))
        if let failure = archive.finish() { return .failure(KernelsError("cannot write the initramfs: \(failure)")) }
        return .success(archive.size)
    }

    /// A module's bytes, decompressed on the host when the tool is there (any kernel loads a
    /// plain .ko); otherwise as it is, and the guest asks the kernel to decompress it.
    static func moduleContent(_ path: String, scratch: String) -> Result<(String, [UInt8]), KernelsError> {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let tools = [(".xz", "xz"), (".zst", "zstd"), (".gz", "gzip")]
        if let (suffix, tool) = tools.first(where: { name.hasSuffix($0.0) }), let executable = HostTools.find(tool) {
            let copy = scratch + "/" + name
            let plain = String(copy.dropLast(suffix.count))
            unlink(copy); unlink(plain)
            guard (try? FileManager.default.copyItem(atPath: path, toPath: copy)) != nil else { return .failure(KernelsError("cannot copy \(path)")) }
            let result = HostTools.run(executable, ["-d", "-f", "-q", copy])
            if result.status == 0, let data = FileManager.default.contents(atPath: plain) {
                unlink(plain)
                return .success((String(name.dropLast(suffix.count)), Array(data)))
            }
            unlink(copy); unlink(plain)
        }
        guard let data = FileManager.default.contents(atPath: path) else { return .failure(KernelsError("cannot read module \(path)")) }
        return .success((name, Array(data)))
    }
}
