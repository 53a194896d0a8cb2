import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation
import Glibc

/// One kernel to boot: its image and its modules folder (lib/modules/RELEASE), from a Debian
/// package or given directly.
struct KernelSource {
    /// The image qemu boots.
    let image: String
    /// The folder holding the modules (lib/modules/RELEASE).
    let modules: String
    /// The release as the modules folder names it: 6.1.0-56-cloud-amd64.
    let release: String
    /// The package's version (6.1.192-2), when it came from a package.
    let packageVersion: String?
    /// What the user named, for messages.
    let origin: String
    /// The kernel's build configuration (boot/config-RELEASE), when present.
    let configFile: String?

    /// Unpacks a Debian kernel package (dpkg-deb -x, or ar and tar where dpkg-deb is missing)
    /// into `folder` and finds the image and modules in it.
    static func unpack(package: String, into folder: String) -> Result<KernelSource, KernelsError> {
        let shown = UntrustedText.terminal(package)
        var status = stat()
        guard stat(package, &status) == 0 else { return .failure(KernelsError("--kernel-package \(shown): no such file")) }
        guard status.st_mode & S_IFMT == S_IFREG else { return .failure(KernelsError("--kernel-package \(shown): not a regular file")) }
        // Only the headers are read, never the whole file: it may be gigabytes.
        let members: [ArMember]
        switch ArMember.list(package) {
        case .success(let found): members = found
        case .failure(let problem):
            return .failure(KernelsError("--kernel-package \(shown): not a Debian package (\(problem.message)); "
                + "get one with `apt-get download linux-image-cloud-amd64`'s dependency, e.g. linux-image-6.1.0-NN-cloud-amd64"))
        }
        guard members.first?.name == "debian-binary", members.contains(where: { $0.name.hasPrefix("data.tar") }) else {
            return .failure(KernelsError("--kernel-package \(shown): not a Debian package: its ar members are "
                + UntrustedText.terminal(members.map(\.name).joined(separator: ", ")) + ", not debian-binary, control.tar.*, data.tar.*"))
        }
        mkdir(folder, 0o755)
        if let dpkgDeb = HostTools.find("dpkg-deb") {
            let result = HostTools.run(dpkgDeb, ["-x", package, folder], seconds: 300)
            guard result.status == 0 else {
                return .failure(KernelsError("--kernel-package \(shown): dpkg-deb -x failed (status \(result.status)): \(UntrustedText.terminal(String(result.output.prefix(400))))"))
            }
        } else {
            switch unpackWithArAndTar(package, into: folder) {
            case .success: break
            case .failure(let error): return .failure(KernelsError("--kernel-package \(shown): \(error.message)"))
            }
        }
        var version: String?
        if let dpkgDeb = HostTools.find("dpkg-deb") {
            let field = HostTools.run(dpkgDeb, ["-f", package, "Version"])
            if field.status == 0 { version = field.output.trimmingCharacters(in: .whitespacesAndNewlines) }
        }
        let boot = folder + "/boot"
        let images = ((try? FileManager.default.contentsOfDirectory(atPath: boot)) ?? []).filter { $0.hasPrefix("vmlinuz-") }.sorted()
        guard let image = images.first else {
            return .failure(KernelsError("--kernel-package \(shown): holds no boot/vmlinuz-*; is it a linux-image package (not linux-headers or the meta-package)?"))
        }
        let release = String(image.dropFirst("vmlinuz-".count))
        var modules = folder + "/lib/modules/" + release
        if access(modules + "/modules.order", R_OK) != 0 {
            modules = folder + "/usr/lib/modules/" + release
        }
        guard access(modules + "/modules.order", R_OK) == 0 else {
            return .failure(KernelsError("--kernel-package \(shown): holds no lib/modules/\(UntrustedText.terminal(release))/modules.order"))
        }
        let config = boot + "/config-" + release
        return .success(KernelSource(image: boot + "/" + image, modules: modules, release: release, packageVersion: version, origin: package,
                                     configFile: access(config, R_OK) == 0 ? config : nil))
    }

    /// `--kernel VMLINUZ --modules DIR`: DIR is lib/modules/RELEASE itself, or a folder with
    /// exactly one RELEASE folder that holds modules.order.
    static func direct(image: String, modules: String) -> Result<KernelSource, KernelsError> {
        guard access(image, R_OK) == 0 else { return .failure(KernelsError("--kernel \(UntrustedText.terminal(image)): cannot read it")) }
        var folder = modules
        if access(folder + "/modules.order", R_OK) != 0 {
            let inside = ((try? FileManager.default.contentsOfDirectory(atPath: modules)) ?? []).filter { access(modules + "/" + $0 + "/modules.order", R_OK) == 0 }
            guard inside.count == 1 else {
                return .failure(KernelsError("--modules \(UntrustedText.terminal(modules)): holds no modules.order (name lib/modules/RELEASE, as `make modules_install` or a package writes it)"))
            }
            folder = modules + "/" + inside[0]
        }
        let release = folder.split(separator: "/").last.map(String.init) ?? folder
        let config = ["/config", "/build/.config"].map { folder + $0 }.first { access($0, R_OK) == 0 }
        return .success(KernelSource(image: image, modules: folder, release: release, packageVersion: nil, origin: image, configFile: config))
    }

    private static func unpackWithArAndTar(_ package: String, into folder: String) -> Result<Void, KernelsError> {
        guard let ar = HostTools.find("ar"), let tar = HostTools.find("tar") else {
            return .failure(KernelsError("neither dpkg-deb nor ar and tar are installed"))
        }
        let listing = HostTools.run(ar, ["t", package])
        guard listing.status == 0, let member = listing.output.split(separator: "\n").map(String.init).first(where: { $0.hasPrefix("data.tar") }) else {
            return .failure(KernelsError("ar found no data.tar member: \(listing.output.prefix(300))"))
        }
        let extracted = HostTools.run(ar, ["x", package, member, "--output", folder])
        guard extracted.status == 0 else { return .failure(KernelsError("ar x failed: \(extracted.output.prefix(300))")) }
        let untar = HostTools.run(tar, ["-xf", folder + "/" + member, "-C", folder], seconds: 300)
        unlink(folder + "/" + member)
        return untar.status == 0 ? .success(()) : .failure(KernelsError("tar -xf \(member) failed: \(untar.output.prefix(300))"))
    }

    /// The modules the lab needs, dependencies first, each as its file name and its bytes
    /// (decompressed on the host when the tool is there); a module built into the kernel needs
    /// nothing. `veth` is required, and the virtio serial transport, since the results travel
    /// over it. Dependencies come from each module's own `depends=` field (.modinfo), as depmod
    /// reads them: a Debian package ships no modules.dep, since its postinst runs depmod.
    func modulesToLoad(_ names: [String] = ["veth", "virtio_pci", "virtio_console"], scratch: String) -> Result<[(String, [UInt8])], KernelsError> {
        let builtin = (try? String(contentsOfFile: modules + "/modules.builtin", encoding: .utf8)) ?? ""
        let builtinNames = Set(builtin.split(separator: "\n").map { Self.moduleName(String($0)) })
        var files: [String: String] = [:]
        if let walker = FileManager.default.enumerator(atPath: modules) {
            for case let path as String in walker where path.contains(".ko") {
                files[Self.moduleName(path)] = modules + "/" + path
            }
        }
        var order: [(String, [UInt8])] = []
        var visited: Set<String> = []
        var failure: KernelsError?
        func visit(_ name: String, neededBy: String?) {
            guard failure == nil, !builtinNames.contains(name), visited.insert(name).inserted else { return }
            guard let path = files[name] else {
                if name == "veth" {
                    failure = KernelsError("\(release) has no veth (neither built in nor a module): the lab's netns topology needs it")
                } else {
                    failure = KernelsError("\(release) has no \(name) module" + (neededBy.map { " (needed by \($0))" } ?? "")
                        + ", and it is not built in" + (neededBy == nil ? ": the results travel over a virtio serial port" : ""))
                }
                return
            }
            switch Initramfs.moduleContent(path, scratch: scratch) {
            case .failure(let error): failure = error
            case .success(let (file, data)):
                for dependency in Self.dependencies(of: data) { visit(dependency, neededBy: name) }
                order.append((file, data))
            }
        }
        for name in names { visit(name, neededBy: nil) }
        if let failure { return .failure(failure) }
        return .success(order)
    }

    /// The `depends=a,b` field of a module's .modinfo section. A compressed module (the host
    /// had no tool to decompress it) shows none: the kernel then reports a missing symbol.
    static func dependencies(of module: [UInt8]) -> [String] {
        let marker = Array("depends=".utf8)
        var index = 0
        while index + marker.count <= module.count {
            if module[index] == marker[0], Array(module[index..<index + marker.count]) == marker, index == 0 || module[index - 1] == 0 {
                let start = index + marker.count
                let end = module[start...].firstIndex(of: 0) ?? module.count
                return String(decoding: module[start..<end], as: UTF8.self).split(separator: ",").map { String($0).replacingOccurrences(of: "-", with: "_") }
            }
            index += 1
        }
        return []
    }

    /// Whether the kernel's config sets `option` to one of `values`; true when no config is known
    /// (the guest's own checks then decide).
    func configSays(_ option: String, in values: [String]) -> Bool {
        guard let configFile, let text = try? String(contentsOfFile: configFile, encoding: .utf8) else { return true }
        return text.split(separator: "\n").contains { line in values.contains { line == "\(option)=\($0)" } }
    }

    /// `kernel/drivers/net/veth.ko.xz` → `veth`.
    static func moduleName(_ path: String) -> String {
        var name = path.split(separator: "/").last.map(String.init) ?? path
        for suffix in [".xz", ".zst", ".gz"] where name.hasSuffix(suffix) { name.removeLast(suffix.count) }
        if name.hasSuffix(".ko") { name.removeLast(3) }
        return name.replacingOccurrences(of: "-", with: "_")
    }
}

/// One member of an ar archive (a .deb is one), found by reading its 60-byte header and
/// seeking past its bytes: a file of any size costs a few reads.
struct ArMember: Equatable {
    let name: String
    /// Where its bytes start in the file, and how many there are.
    let offset: Int64
    let size: Int64

    static let magic = Array("!<arch>\n".utf8)

    /// The members, at most `limit` (a .deb has three): a file without the ar magic, or whose
    /// header or sizes do not fit the file, is refused with why.
    static func list(_ path: String, limit: Int = 16) -> Result<[ArMember], KernelsError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(KernelsError("cannot open it: \(SystemError.last("open"))")) }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { return .failure(KernelsError("cannot stat it")) }
        let fileSize = Int64(status.st_size)
        func bytes(_ count: Int, at offset: Int64) -> [UInt8] {
            var buffer = [UInt8](repeating: 0, count: count)
            let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            return got == count ? buffer : []
        }
        guard bytes(8, at: 0) == magic else { return .failure(KernelsError("a .deb is an ar archive starting with \"!<arch>\"")) }
        var members: [ArMember] = []
        var offset: Int64 = 8
        while offset < fileSize, members.count < limit {
            let header = bytes(60, at: offset)
            guard header.count == 60, header[58] == 0x60, header[59] == 0x0a,
                  let size = Int64(String(decoding: header[48..<58], as: UTF8.self).trimmingCharacters(in: .whitespaces)), size >= 0,
                  offset + 60 + size <= fileSize else {
                return .failure(KernelsError("the ar member header at byte \(offset) is malformed or overruns the file"))
            }
            var name = String(decoding: header[0..<16], as: UTF8.self).trimmingCharacters(in: .whitespaces)
            if name.hasSuffix("/") { name.removeLast() }
            members.append(ArMember(name: name, offset: offset + 60, size: size))
            offset += 60 + size + (size & 1)
        }
        return .success(members)
    }
}
