import HijackSystem
import Glibc

/// A container that a namespace's holder runs in, as its cgroup path tells.
public struct ContainerLabel: Codable, Sendable, Equatable, Hashable {
    /// docker, podman, kubernetes, containerd, cri-o, lxc or machine (systemd-nspawn, libvirt).
    public var runtime: String
    /// The container id (64 hex digits for docker, podman and CRI runtimes) or its name (lxc, machine).
    public var id: String
    /// Kubernetes: the pod's uid.
    public var pod: String?

    public init(runtime: String, id: String, pod: String? = nil) {
        self.runtime = runtime
        self.id = id
        self.pod = pod
    }

    /// `docker 0123456789ab`: ids shortened to 12 digits as `docker ps` shows them.
    public var text: String {
        let isHexID = id.count == 64 && id.allSatisfy(\.isHexDigit)
        return runtime + " " + (isHexID ? String(id.prefix(12)) : id) + (pod.map { " pod " + $0 } ?? "")
    }
}

/// One network namespace of the host, and what tells a reader which one it is.
public struct NetworkNamespace: Codable, Sendable, Equatable {
    /// The nsfs inode: what `net:[4026531840]` names, and the one identity every view shares.
    public var inode: UInt64
    /// Its names under /run/netns (`ip netns add`); one namespace may have several, or none.
    public var names: [String]
    /// A process that holds it (the lowest pid), if any does.
    public var pid: Int32?
    public var command: String?
    /// The container of the holder, where its cgroup path shows one.
    public var container: ContainerLabel?
    /// The namespace this process runs in.
    public var current: Bool
    /// What to open to enter it: /run/netns/NAME, or /proc/PID/ns/net of a holder.
    public var path: String

    public init(inode: UInt64, names: [String] = [], pid: Int32? = nil, command: String? = nil, container: ContainerLabel? = nil,
                current: Bool = false, path: String) {
        self.inode = inode
        self.names = names
        self.pid = pid
        self.command = command
        self.container = container
        self.current = current
        self.path = path
    }

    /// `4026532281 "hl-test" pid 1234/python3 docker 0123456789ab (current)`, raw: the caller
    /// escapes it for where it goes (names, commands and cgroup paths are anyone's choice).
    public var label: String {
        var parts = [String(inode)]
        // Quoted, with the quote and backslash inside escaped: a name is anyone's choice.
        parts += names.map { "\"" + $0.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"") + "\"" }
        if let pid { parts.append("pid \(pid)/\(command ?? "?")") }
        if let container { parts.append(container.text) }
        if current { parts.append("(current)") }
        return parts.joined(separator: " ")
    }
}

/// One namespace's audit: the report, or why it could not be made.
public struct NamespaceAudit: Codable, Sendable, Equatable {
    public var netns: NetworkNamespace
    public var report: AuditReport?
    /// Why the namespace could not be entered or audited; nil when `report` is set.
    public var error: String?

    public init(netns: NetworkNamespace, report: AuditReport? = nil, error: String? = nil) {
        self.netns = netns
        self.report = report
        self.error = error
    }
}

public enum Namespaces {
    /// The inode of a namespace file, and whether it is one (a file on nsfs, not a leftover
    /// under /run/netns that is no longer mounted): nil when it cannot be read.
    package static func inode(_ path: String, nsfsDevice: UInt64?) -> (inode: UInt64?, errno: Int32) {
        var status = stat()
        guard stat(path, &status) == 0 else { return (nil, errno) }
        if let nsfsDevice, UInt64(status.st_dev) != nsfsDevice { return (nil, EINVAL) }
        return (UInt64(status.st_ino), 0)
    }

    /// This process's own namespace, labelled the same way as the others.
    public static func current() -> NetworkNamespace {
        var status = stat()
        guard stat("/proc/self/ns/net", &status) == 0 else {
            return NetworkNamespace(inode: 0, pid: getpid(), command: command(of: getpid()), current: true, path: "/proc/self/ns/net")
        }
        let inode = UInt64(status.st_ino)
        let nsfs = UInt64(status.st_dev)
        // The same holder --all-netns names: the lowest pid in it (pid 1 on the host, a
        // container's init in a container). /proc lists pids in ascending order: the first wins.
        var pid = getpid()
        if let proc = opendir("/proc") {
            defer { closedir(proc) }
            while let entry = readdir(proc) {
                guard let candidate = Int32(entryName(entry)), candidate < pid else { continue }
                if Self.inode("/proc/\(candidate)/ns/net", nsfsDevice: nsfs).inode == inode {
                    pid = candidate
                    break
                }
            }
        }
        let container = [pid, getpid()].lazy.compactMap { ProcNet.read("/proc/\($0)/cgroup").flatMap(container(fromCgroup:)) }.first
        return NetworkNamespace(inode: inode, names: namedNamespaces(nsfsDevice: nsfs)[inode] ?? [], pid: pid, command: command(of: pid),
                                container: container, current: true, path: "/proc/\(pid)/ns/net")
    }

    /// Every network namespace on the host: those held by a process or thread (/proc/*/task/*/ns/net,
    /// deduplicated by inode) and the named ones under /run/netns, which may have no process
    /// at all. `unreadable` counts processes whose namespace could not be read: another user's,
    /// when not root (the ptrace access check on /proc/PID/ns).
    public static func discover() -> (namespaces: [NetworkNamespace], unreadable: Int) {
        var own = stat()
        guard stat("/proc/self/ns/net", &own) == 0 else { return ([current()], 0) }
        let nsfs = UInt64(own.st_dev)
        let ownInode = UInt64(own.st_ino)
        var holders: [UInt64: [Int32]] = [:]
        /// A thread that joined a namespace alone is entered through its own task path.
        var threadPaths: [UInt64: String] = [:]
        /// A process whose leader thread is gone is entered through one of its live threads.
        var taskPaths: [Int32: String] = [:]
        var unreadable = 0
        if let proc = opendir("/proc") {
            defer { closedir(proc) }
            while let entry = readdir(proc) {
                guard let pid = Int32(entryName(entry)) else { continue }
                let (leader, error) = inode("/proc/\(pid)/ns/net", nsfsDevice: nsfs)
                if leader == nil, error == EACCES || error == EPERM {
                    unreadable += 1
                    continue
                }
                // Every task is read, not only the leader's: a leader whose thread exited
                // (pthread_exit in main) has no namespace of its own to show (ENOENT), while
                // the threads it left behind still hold one, and the process's sockets.
                var found = leader
                if let found { holders[found, default: []].append(pid) }
                guard let tasks = opendir("/proc/\(pid)/task") else { continue }
                while let task = readdir(tasks) {
                    guard let tid = Int32(entryName(task)), tid != pid,
                          let threadInode = inode("/proc/\(pid)/task/\(tid)/ns/net", nsfsDevice: nsfs).inode else { continue }
                    if found == nil {
                        // The first live thread speaks for a leaderless process.
                        found = threadInode
                        holders[threadInode, default: []].append(pid)
                        taskPaths[pid] = "/proc/\(pid)/task/\(tid)/ns/net"
                        continue
                    }
                    guard threadInode != found, holders[threadInode] == nil, threadPaths[threadInode] == nil else { continue }
                    threadPaths[threadInode] = "/proc/\(pid)/task/\(tid)/ns/net"
                }
                closedir(tasks)
            }
        }
        let named = namedNamespaces(nsfsDevice: nsfs)
        var namespaces: [NetworkNamespace] = []
        for inode in Set(holders.keys).union(named.keys).union(threadPaths.keys).union([ownInode]) {
            let pids = (holders[inode] ?? []).sorted()
            let names = named[inode] ?? []
            var namespace = NetworkNamespace(inode: inode, names: names, current: inode == ownInode,
                                             path: names.first.map { "/run/netns/\($0)" } ?? pids.first.map { taskPaths[$0] ?? "/proc/\($0)/ns/net" } ?? threadPaths[inode] ?? "")
            if let first = pids.first {
                namespace.pid = first
                namespace.command = command(of: first)
            }
            // The lowest pid is usually the container's init; a few more are tried in case it is a
            // helper (a pause container's sandbox, conmon) whose cgroup names no container.
            for pid in pids.prefix(8) {
                if let container = ProcNet.read("/proc/\(pid)/cgroup").flatMap(container(fromCgroup:)) {
                    namespace.container = container
                    break
                }
            }
            namespaces.append(namespace)
        }
        // The current one first, then by inode: the host's namespace is the oldest, the lowest.
        namespaces.sort { ($0.current ? 0 : 1, $0.inode) < ($1.current ? 0 : 1, $1.inode) }
        return (namespaces, unreadable)
    }

    /// inode → names, for /run/netns/* that are nsfs mounts.
    package static func namedNamespaces(nsfsDevice: UInt64?, folder: String = "/run/netns") -> [UInt64: [String]] {
        guard let directory = opendir(folder) else { return [:] }
        defer { closedir(directory) }
        var named: [UInt64: [String]] = [:]
        while let entry = readdir(directory) {
            let name = entryName(entry)
            guard name != ".", name != "..", let found = inode("\(folder)/\(name)", nsfsDevice: nsfsDevice).inode else { continue }
            named[found, default: []].append(name)
        }
        return named.mapValues { $0.sorted() }
    }

    package static func command(of pid: Int32) -> String? {
        ProcNet.read("/proc/\(pid)/comm").map(SocketOwners.commandName)
    }

    private static func entryName(_ entry: UnsafeMutablePointer<dirent>) -> String {
        withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// The container a process runs in, from /proc/PID/cgroup (`hierarchy:controllers:path`
    /// per line; cgroup v2 has one line, `0::/path`). The runtimes name their cgroups:
    ///   docker    /system.slice/docker-<id>.scope (systemd driver), /docker/<id> (cgroupfs)
    ///   podman    /machine.slice/libpod-<id>.scope (libpod-conmon-<id> is its monitor, not it)
    ///   k8s       /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope,
    ///             crio-<id>.scope, docker-<id>.scope, or /kubepods/burstable/pod<uid>/<id> (cgroupfs)
    ///   lxc       /lxc/<name>, /lxc.payload.<name>, /lxc.payload/<name>
    ///   machine   /machine.slice/machine-<name>.scope (systemd-nspawn, libvirt), \x2d for "-"
    public static func container(fromCgroup text: String) -> ContainerLabel? {
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            if let found = container(fromPath: String(fields[2])) { return found }
        }
        return nil
    }

    package static func container(fromPath path: String) -> ContainerLabel? {
        let components = path.split(separator: "/").map(String.init)
        let kubernetes = components.contains { $0.hasPrefix("kubepods") }
        let pod: String? = kubernetes ? components.lazy.compactMap(podUID).last : nil
        func hexID(_ text: Substring) -> String? {
            text.count >= 12 && text.allSatisfy(\.isHexDigit) ? String(text) : nil
        }
        for (index, component) in components.enumerated().reversed() {
            var scopeRuntime: String?
            var body = Substring(component)
            if component.hasSuffix(".scope") {
                body = body.dropLast(6)
                for (prefix, runtime) in [("cri-containerd-", "containerd"), ("crio-", "cri-o"), ("docker-", "docker"), ("libpod-", "podman")]
                    where body.hasPrefix(prefix) && !body.hasPrefix("libpod-conmon-") {
                    body = body.dropFirst(prefix.count)
                    scopeRuntime = runtime
                    break
                }
                if let runtime = scopeRuntime, let id = hexID(body) {
                    return ContainerLabel(runtime: kubernetes ? "kubernetes" : runtime, id: id, pod: pod)
                }
                if body.hasPrefix("machine-"), index > 0, components[index - 1] == "machine.slice" {
                    return ContainerLabel(runtime: "machine", id: unescapeSystemd(String(body.dropFirst(8))))
                }
                continue
            }
            if index > 0 {
                let parent = components[index - 1]
                if parent == "docker", let id = hexID(body) { return ContainerLabel(runtime: "docker", id: id) }
                if parent == "lxc" || parent == "lxc.payload" { return ContainerLabel(runtime: "lxc", id: component) }
                if kubernetes, parent.hasPrefix("pod"), let id = hexID(body) { return ContainerLabel(runtime: "kubernetes", id: id, pod: pod) }
            }
            if component.hasPrefix("lxc.payload."), component.count > 12 {
                return ContainerLabel(runtime: "lxc", id: String(component.dropFirst(12)))
            }
        }
        if kubernetes, let pod { return ContainerLabel(runtime: "kubernetes", id: "pod", pod: pod) }
        return nil
    }

    /// `pod<uid>` (cgroupfs) or `kubepods-burstable-pod<uid>.slice` (systemd, with _ for -).
    private static func podUID(_ component: String) -> String? {
        var text = Substring(component)
        if text.hasSuffix(".slice") { text = text.dropLast(6) }
        guard let range = text.ranges(of: "pod").last else { return nil }
        let uid = String(text[range.upperBound...]).replacing("_", with: "-")
        return uid.count >= 32 && uid.allSatisfy({ $0.isHexDigit || $0 == "-" }) ? uid : nil
    }

    /// systemd unit names escape bytes as \xNN: `machine-my\x2dvm.scope` is machine my-vm.
    package static func unescapeSystemd(_ text: String) -> String {
        var bytes: [UInt8] = []
        let utf8 = Array(text.utf8)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "\\"), index + 3 < utf8.count, utf8[index + 1] == UInt8(ascii: "x"),
               let byte = UInt8(String(decoding: utf8[(index + 2)...(index + 3)], as: UTF8.self), radix: 16) {
                bytes.append(byte)
                index += 4
            } else {
                bytes.append(utf8[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
