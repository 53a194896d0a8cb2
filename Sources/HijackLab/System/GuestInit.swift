import CHijackLab
import Glibc

// The guest's side of `hijack-lab kernels`: this binary is pid 1 inside qemu (the kernel starts
// it through `rdinit=… -- guest-init`). It uses Glibc only, no Foundation, so that it can live
// in the small front executable.
//
// What it does: mounts proc, sys, dev and /tmp, loads the modules listed in the initramfs in
// their dependency order, brings lo up, runs each job of the plan as a child process, and sends
// every job's progress and output file to the host over a virtio serial port named
// `hijack-lab` (never over the console, where kernel messages interleave). Then it powers off.
//
// Frames on the port, each header one line:
//   hello RELEASE                       the guest is up (the boot deadline ends here)
//   version TEXT                        /proc/version
//   note TEXT                           something the host should show (a module that failed)
//   start JOB                           a job begins
//   progress JOB TEXT                   one line of the job's stderr
//   result JOB STATUS LENGTH\n BYTES\n  the job's exit status and its output file
//   done                                every job ran; the guest powers off next
public enum GuestInit {
    /// Where the initramfs keeps what the host put there for the guest.
    public static let planPath = "/kernels/plan"
    public static let modulesOrderPath = "/kernels/modules.order"
    public static let modulesFolder = "/kernels/modules"
    public static let portName = "hijack-lab"
    /// The hidden argument that selects this mode; it works only as pid 1.
    public static let argument = "guest-init"
    /// A word after `guest-init` on the kernel command line that makes the init fail at once,
    /// as a broken one would: the tests check that the host's failure message leads with its words.
    public static let failOnPurpose = "fail-on-purpose"
    /// What starts every line the init writes about its own trouble (InitLastWords looks for it).
    public static let complaintPrefix = "hijack-lab guest-init: "

    /// Whether this process is a `kernels` guest's init: pid 1, started with `guest-init`.
    /// The arguments come from the first constructor (ProcessArguments), which also mounted
    /// /proc before the Swift runtime needed it (hl_early.h).
    public static func isRequested() -> Bool {
        getpid() == 1 && ProcessArguments.commandLine.first == argument
    }

    /// Runs the guest and powers off; returns only when powering off failed, or when this is not pid 1.
    public static func run() -> Int32 {
        guard getpid() == 1 else {
            writeText(2, "hijack-lab guest-init runs only as pid 1 inside a `hijack-lab kernels` guest\n")
            return 2
        }
        if ProcessArguments.commandLine.dropFirst().contains(failOnPurpose) {
            complain("failing on purpose (\(failOnPurpose) on the kernel command line)")
            return 3
        }
        mountAll()
        let notes = loadModules()
        guard let port = openPort(deadlineSeconds: 20) else {
            complain("no virtio serial port named \(portName); powering off")
            for note in notes { complain(note) }
            powerOff()
        }
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        send(port, "hello \(release)\n")
        send(port, "version \(oneLine(String(decoding: readFile("/proc/version") ?? [], as: UTF8.self)))\n")
        for note in notes { send(port, "note \(oneLine(note))\n") }
        if hl_interface_up("lo") != 0 { complain("cannot bring lo up: errno \(errno)", port: port) }
        for job in readPlan() {
            send(port, "start \(job.name)\n")
            let status = runJob(job, port: port)
            let output = readFile(job.output) ?? []
            send(port, "result \(job.name) \(status) \(output.count)\n")
            _ = output.withUnsafeBytes { writeAll(port, $0) }
            send(port, "\n")
        }
        send(port, "done\n")
        fsync(port)
        close(port)
        powerOff()
    }

    struct Job {
        let name: String
        let output: String
        let arguments: [String]
    }

    /// One job per line: name, output file, then the command's argv, separated by tabs.
    static func readPlan() -> [Job] {
        let text = String(decoding: readFile(planPath) ?? [], as: UTF8.self)
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            return fields.count >= 3 ? Job(name: fields[0], output: fields[1], arguments: Array(fields[2...])) : nil
        }
    }

    static func mountAll() {
        // /proc is mounted already (hl_early.c, before the runtime started).
        for (type, target, mode) in [("sysfs", "/sys", ""), ("devtmpfs", "/dev", "mode=0755"), ("tmpfs", "/tmp", "mode=1777")] {
            mkdir(target, 0o755)
            if hl_mount(type, target, type, 0, mode) != 0 {
                complain("mount \(type) on \(target) failed: errno \(errno)")
            }
        }
    }

    /// Loads every module in the order the host wrote (dependencies first). A compressed module
    /// goes to the kernel as it is, flagged MODULE_INIT_COMPRESSED_FILE. Returns one note per failure.
    static func loadModules() -> [String] {
        let order = String(decoding: readFile(modulesOrderPath) ?? [], as: UTF8.self)
        var notes: [String] = []
        for file in order.split(separator: "\n").map(String.init) {
            let path = modulesFolder + "/" + file
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { notes.append("module \(file): open failed, errno \(errno)"); continue }
            let compressed = file.hasSuffix(".xz") || file.hasSuffix(".zst") || file.hasSuffix(".gz")
            if hl_finit_module(fd, "", compressed ? 4 : 0) != 0, errno != EEXIST {
                notes.append("module \(file): finit_module failed, errno \(errno) (\(String(cString: strerror(errno))))")
            }
            close(fd)
        }
        return notes
    }

    /// The virtio serial port whose name is `hijack-lab`, found through sysfs (there is no udev
    /// to make /dev/virtio-ports/NAME); the driver may still be probing, so it is awaited.
    static func openPort(deadlineSeconds: Int) -> Int32? {
        for _ in 0..<(deadlineSeconds * 20) {
            if let folder = opendir("/sys/class/virtio-ports") {
                defer { closedir(folder) }
                while let entry = readdir(folder) {
                    let device = withUnsafeBytes(of: &entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                    guard !device.hasPrefix(".") else { continue }
                    let name = String(decoding: readFile("/sys/class/virtio-ports/\(device)/name") ?? [], as: UTF8.self)
                    if name.split(separator: "\n").first.map(String.init) == portName {
                        let fd = open("/dev/" + device, O_WRONLY | O_CLOEXEC)
                        if fd >= 0 { return fd }
                    }
                }
            }
            usleep(50_000)
        }
        return nil
    }

    /// Runs one job with its stderr relayed to the host line by line, and reaps every orphan
    /// (pid 1 inherits the lab's agents) while it waits. Returns the job's exit status.
    static func runJob(_ job: Job, port: Int32) -> Int32 {
        var pipeFDs: [Int32] = [-1, -1]
        guard hl_pipe_cloexec(&pipeFDs) == 0 else { return 127 }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)
        let argv = job.arguments.map { strdup($0) } + [nil]
        let settings: [String] = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp", "LANG=C.UTF-8", "TMPDIR=/tmp"]
        let environment = settings.map { strdup($0) } + [nil]
        defer { (argv + environment).forEach { free($0) } }
        var child: pid_t = 0
        let spawned = posix_spawn(&child, job.arguments[0], &actions, nil, argv, environment)
        close(pipeFDs[1])
        guard spawned == 0 else {
            close(pipeFDs[0])
            send(port, "progress \(job.name) cannot start \(oneLine(job.arguments[0])): errno \(spawned)\n")
            return 127
        }
        var status: Int32?
        var pending: [UInt8] = []
        var reading = true
        // An agent the job left behind may hold the pipe open: after the job exits, its stderr
        // is drained for at most two more seconds.
        var drainPolls = 10
        while reading || status == nil {
            if status != nil {
                drainPolls -= 1
                if drainPolls < 0 { break }
            }
            if reading {
                var poller = pollfd(fd: pipeFDs[0], events: Int16(POLLIN), revents: 0)
                if poll(&poller, 1, 200) > 0 {
                    var chunk = [UInt8](repeating: 0, count: 4096)
                    let count = chunk.withUnsafeMutableBytes { read(pipeFDs[0], $0.baseAddress, $0.count) }
                    if count > 0 {
                        pending += chunk[..<count]
                        while let newline = pending.firstIndex(of: 10) {
                            send(port, "progress \(job.name) \(oneLine(String(decoding: pending[..<newline], as: UTF8.self)))\n")
                            pending.removeSubrange(...newline)
                        }
                    } else if count == 0 || errno != EINTR {
                        reading = false
                    }
                }
            }
            var reaped: Int32 = 0
            while true {
                let pid = waitpid(-1, &reaped, reading ? WNOHANG : 0)
                if pid <= 0 { break }
                if pid == child { status = exitCode(reaped); break }
            }
        }
        close(pipeFDs[0])
        if !pending.isEmpty { send(port, "progress \(job.name) \(oneLine(String(decoding: pending, as: UTF8.self)))\n") }
        return status ?? 127
    }

    static func exitCode(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    static func powerOff() -> Never {
        _ = hl_power_off()
        // Powering off failed: pid 1 must not exit (the kernel would panic with a less clear message).
        complain("reboot(RB_POWER_OFF) failed: errno \(errno)")
        while true { pause() }
    }

    /// The init's own trouble, on the console (fd 1) and, once it is open, the results port as
    /// a note: the host puts these lines first when a boot fails.
    static func complain(_ text: String, port: Int32? = nil) {
        writeText(1, complaintPrefix + oneLine(text) + "\n")
        if let port { send(port, "note " + complaintPrefix + oneLine(text) + "\n") }
    }

    static func oneLine(_ text: String) -> String {
        String(text.map { $0 == "\n" || $0 == "\r" ? " " : $0 })
    }

    static func send(_ fd: Int32, _ text: String) {
        _ = Array(text.utf8).withUnsafeBytes { writeAll(fd, $0) }
    }

    static func writeText(_ fd: Int32, _ text: String) { send(fd, text) }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let count = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if count < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += count
        }
        return true
    }

    static func readFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count > 0 { bytes += chunk[..<count] } else if count == 0 || errno != EINTR { break }
        }
        return bytes
    }
}
