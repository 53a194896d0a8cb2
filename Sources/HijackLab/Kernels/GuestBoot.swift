import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import CHijackLab
import Foundation
import Glibc

/// What came back from one boot: the guest's own word for its kernel, and each job's result.
struct GuestRun {
    var release: String?
    /// /proc/version, which carries the upstream version (Debian 6.1.192-2) behind the release name.
    var procVersion: String?
    var notes: [String] = []
    var results: [String: (status: Int32, output: [UInt8])] = [:]
    var finished = false
    var bootSeconds: Double?
    var runSeconds: Double?
}

/// The frames of the guest's results port (see GuestInit), read as they arrive.
struct FrameReader {
    enum Event: Equatable {
        case hello(String)
        case version(String)
        case note(String)
        case start(String)
        case progress(job: String, text: String)
        case result(job: String, status: Int32, output: [UInt8])
        case done
    }

    private var buffer: [UInt8] = []

    mutating func feed(_ bytes: [UInt8]) -> [Event] {
        buffer += bytes
        var events: [Event] = []
        while let newline = buffer.firstIndex(of: 10) {
            let header = String(decoding: buffer[..<newline], as: UTF8.self)
            let words = header.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            if words.first == "result" {
                let fields = header.split(separator: " ").map(String.init)
                guard fields.count == 4, let status = Int32(fields[2]), let length = Int(fields[3]), length >= 0 else {
                    buffer.removeSubrange(...newline)
                    events.append(.note("malformed frame from the guest: \(header.prefix(80))"))
                    continue
                }
                let start = newline + 1
                // The bytes and their closing newline must all be here.
                guard buffer.count >= start + length + 1 else { break }
                events.append(.result(job: fields[1], status: status, output: Array(buffer[start..<start + length])))
                buffer.removeSubrange(..<(start + length + 1))
                continue
            }
            buffer.removeSubrange(...newline)
            switch words.first {
            case "hello": events.append(.hello(words.dropFirst().joined(separator: " ")))
            case "version": events.append(.version(words.dropFirst().joined(separator: " ")))
            case "note": events.append(.note(words.dropFirst().joined(separator: " ")))
            case "start": events.append(.start(words.count > 1 ? words[1] : ""))
            case "progress": events.append(.progress(job: words.count > 1 ? words[1] : "", text: words.count > 2 ? words[2] : ""))
            case "done": events.append(.done)
            default: events.append(.note("unknown frame from the guest: \(header.prefix(80))"))
            }
        }
        return events
    }
}

/// Boots one kernel under qemu with an initramfs and collects what the guest sends.
struct GuestBoot {
    let qemu: String
    let kernel: KernelSource
    let initramfs: String
    let initramfsBytes: Int
    /// The guest path of the executable the kernel starts as init.
    let initPath: String
    let folder: String
    let useKVM: Bool
    let bootSeconds: Double
    let runSeconds: Double
    /// Words for the guest's init after `guest-init` (GuestInit.failOnPurpose, in a test).
    var initArguments: [String] = []
    /// One line of progress: "booting", "all [3/29] …".
    let progress: (String) -> Void

    var resultsFile: String { folder + "/results.port" }

    var arguments: [String] {
        let memory = max(1024, 512 + 3 * (initramfsBytes >> 20))
        var arguments = ["-nodefaults", "-no-user-config", "-no-reboot", "-display", "none", "-monitor", "none",
                         "-nic", "none", "-m", "\(memory)", "-smp", "2"]
        arguments += useKVM ? ["-accel", "kvm", "-cpu", "host"] : ["-accel", "tcg", "-cpu", "max"]
        arguments += ["-kernel", kernel.image, "-initrd", initramfs,
                      "-append", "console=ttyS0 panic=-1 rdinit=\(initPath) -- " + ([GuestInit.argument] + initArguments).joined(separator: " "),
                      // The console comes to us on qemu's stdout, into a fixed ring (ConsoleRing).
                      "-serial", "stdio",
                      "-device", "virtio-serial-pci",
                      "-chardev", "file,id=results,path=" + resultsFile,
                      "-device", "virtserialport,chardev=results,name=\(GuestInit.portName)"]
        return arguments
    }

    func run() -> Result<GuestRun, KernelsError> {
        let child: ChildProcess
        do throws(SystemError) {
            child = try ChildProcess(executable: qemu, arguments: arguments, mergeStandardError: true, dieWithParent: true)
        } catch {
            return .failure(KernelsError("cannot start qemu: \(error)"))
        }
        child.closeStdin()
        defer { child.killAndReap() }
        var reader = FrameReader()
        var run = GuestRun()
        var console = ConsoleRing()
        var offset: off_t = 0
        let started = Deadline.now()
        var deadline = Deadline.after(seconds: bootSeconds)
        var phaseStarted = started
        var exited = false
        progress("booting (\(useKVM ? "KVM" : "software emulation, TCG"))")
        while !exited {
            do throws(SystemError) {
                if let bytes = try child.readBytes(until: min(deadline, Deadline.after(seconds: 0.25))) {
                    console.append(bytes)
                } else {
                    exited = true
                }
            } catch {
                if error.code != ETIMEDOUT { exited = true }
            }
            for event in reader.feed(readNew(from: resultsFile, offset: &offset)) {
                switch event {
                case .hello(let release):
                    run.release = release
                    run.bootSeconds = seconds(since: started)
                    phaseStarted = Deadline.now()
                    deadline = Deadline.after(seconds: runSeconds)
                    progress("booted \(UntrustedText.terminal(release)) in \(String(format: "%.1f", run.bootSeconds ?? 0)) s; running")
                case .version(let text): run.procVersion = text
                case .note(let text):
                    run.notes.append(text)
                    progress("note: \(UntrustedText.terminal(text))")
                case .start(let job): progress("\(UntrustedText.terminal(job)): started")
                case .progress(let job, let text):
                    progress("\(UntrustedText.terminal(job)): \(UntrustedText.terminal(text))")
                case .result(let job, let status, let output):
                    run.results[job] = (status, output)
                case .done:
                    run.finished = true
                    run.runSeconds = seconds(since: phaseStarted)
                }
            }
            if !exited, Deadline.now() >= deadline {
                child.killAndReap()
                let phase = run.release == nil ? "boot" : "run"
                let limit = run.release == nil ? bootSeconds : runSeconds
                return .failure(KernelsError(failure("the \(phase) took longer than \(Int(limit)) s; qemu was killed.", console: console, notes: run.notes),
                                             beforeBoot: run.release == nil))
            }
        }
        child.finish(until: Deadline.after(seconds: 5))
        for event in reader.feed(readNew(from: resultsFile, offset: &offset)) {
            if case .result(let job, let status, let output) = event { run.results[job] = (status, output) }
            if case .note(let text) = event { run.notes.append(text) }
            if case .done = event { run.finished = true }
        }
        guard run.release != nil else {
            return .failure(KernelsError(failure("the guest did not come up (no hello on the results port).", console: console, notes: run.notes), beforeBoot: true))
        }
        guard run.finished else {
            return .failure(KernelsError(failure("the guest stopped before it finished its jobs.", console: console, notes: run.notes)))
        }
        return .success(run)
    }

    /// A failed boot's message, raw text (the report escapes each line): the init's last words
    /// first, since they say why; then what went wrong, what qemu itself said, and the last
    /// console lines.
    func failure(_ what: String, console: ConsoleRing, notes: [String]) -> String {
        let lines = console.lines
        let qemuName = (qemu.split(separator: "/").last.map(String.init) ?? qemu) + ":"
        let qemuSaid = lines.filter { $0.hasPrefix(qemuName) }.suffix(5).map(ConsoleRing.cut)
        var message = InitLastWords.find(console: lines, notes: notes)
        message.append("\(kernel.release): \(what)")
        if !qemuSaid.isEmpty { message += ["qemu said:"] + qemuSaid.map { "  " + $0 } }
        message.append("Last console lines:")
        message += console.excerpt().map { "  " + $0 }
        return message.joined(separator: "\n")
    }

    private func seconds(since start: Deadline) -> Double {
        Double(Deadline.now().nanoseconds - start.nanoseconds) / 1e9
    }

    private func readNew(from path: String, offset: inout off_t) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            guard count > 0 else { break }
            bytes += chunk[..<count]
            offset += off_t(count)
        }
        return bytes
    }
}
