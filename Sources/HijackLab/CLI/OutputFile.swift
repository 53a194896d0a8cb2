import HijackAgent
import HijackAudit
import HijackSystem
import CHijackLab
import Glibc

/// A file a command writes: REPORT.md, MATRIX.md, the JSON. `-` is stdout.
///
/// Every path is checked before the first agent starts, so a typo costs nothing. Files are
/// written to a temp file in the same folder and renamed into place, all renames together at
/// the end, so that after any interruption the outputs are all old or all new.
///
/// A root run often writes into a folder that others can write to (node_exporter's textfile
/// folder, /tmp), so what is found at the name never steers the write: a symlink there is
/// replaced, never followed; a FIFO, device or socket there is refused; the new file takes
/// the old one's mode only when that was a plain file of this user's, and never a set-id bit.
/// A stream is written only where it is named as one: `-`, a name directly in /dev
/// (/dev/stdout, /dev/null), /dev/fd/N or /proc/self/fd/N, and then with a deadline.
package struct OutputFile: Equatable {
    /// The option that named it, for messages: `--report`.
    package let option: String
    package let path: String

    package init(option: String, path: String) {
        self.option = option
        self.path = path
    }

    package var isStandardOutput: Bool { path == "-" }

    /// The path as messages show it: the user's own text, escaped all the same.
    package var shown: String { isStandardOutput ? "stdout (-)" : UntrustedText.terminal(path) }

    /// Whether it is (or will be) a file renamed into place; false for stdout and the streams
    /// named as such, which are written as they are.
    package var isRegularFile: Bool { !isStandardOutput && !isNamedStream }

    /// Paths that name a stream as one: a name directly in /dev (/dev/stdout, /dev/null, a
    /// tty), which only root can create, or a descriptor of this process's. Not /dev/shm/…,
    /// which anyone may write to.
    package var isNamedStream: Bool {
        if path.hasPrefix("/dev/"), path.count > 5, !path.dropFirst(5).contains("/") { return true }
        for prefix in ["/dev/fd/", "/proc/self/fd/"] where path.hasPrefix(prefix) {
            let number = path.dropFirst(prefix.count)
            return !number.isEmpty && number.allSatisfy { $0.isASCII && $0.isNumber }
        }
        return false
    }

    /// What is at the path now, the final name itself (a symlink is not followed).
    private func found() -> stat? {
        var status = stat()
        return lstat(path, &status) == 0 ? status : nil
    }

    /// The mode of the file that will replace what is at the path: an existing file's mode only
    /// when it was a plain file of this user's, without set-id bits, or else 0666 less the umask.
    package func replacementMode() -> mode_t {
        if let status = found(), status.st_mode & S_IFMT == S_IFREG, status.st_uid == geteuid() {
            return status.st_mode & 0o777
        }
        return 0o666 & ~OutputFile.umask
    }

    /// The kind of a non-regular file, for messages.
    static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        case S_IFDIR: "a folder"
        default: "not a regular file"
        }
    }

    /// Why this output could not be written, or nil. It tries what the final write will do:
    /// a temp file in the folder (created and removed), or opening a device or FIFO.
    package func problem() -> String? {
        if isStandardOutput { return nil }
        if path.isEmpty { return "\(option) needs a file name (or - for stdout)" }
        if isNamedStream {
            return access(path, W_OK) == 0 ? nil : "\(option) \(shown): cannot write it: \(SystemError.name(of: errno))"
        }
        let existing = found()
        let exists = existing != nil
        let status = existing ?? stat()
        if let existing {
            switch existing.st_mode & S_IFMT {
            case S_IFDIR: return "\(option) \(shown): is a folder; name a file in it"
            case S_IFREG, S_IFLNK: break
            default:
                // Planted where a file was expected, it would block the run (a FIFO) or take
                // root's bytes (a device): written only when named as a stream.
                return "\(option) \(shown): is \(Self.kind(existing.st_mode)), not a file; hijack-lab writes a stream only "
                    + "where it is named as one (- for stdout, /dev/stdout, /dev/fd/N)"
            }
        }
        let folder = Self.folder(of: path)
        var folderStatus = stat()
        guard stat(folder, &folderStatus) == 0 else { return "\(option) \(shown): the folder \(UntrustedText.terminal(folder)) does not exist" }
        guard folderStatus.st_mode & S_IFMT == S_IFDIR else { return "\(option) \(shown): \(UntrustedText.terminal(folder)) is not a folder" }
        // In a sticky folder (/tmp) only the file's owner, the folder's owner or root may
        // replace a file: the rename at the end would fail with EPERM.
        let me = geteuid()
        if exists, folderStatus.st_mode & S_ISVTX != 0, me != 0, status.st_uid != me, folderStatus.st_uid != me {
            return "\(option) \(shown): belongs to uid \(status.st_uid) in a sticky folder, so it cannot be replaced"
        }
        switch Self.temporaryFile(besides: path) {
        case .success(let (fd, temporary)):
            Glibc.close(fd)
            unlink(temporary)
            return nil
        case .failure(let error):
            return "\(option) \(shown): cannot create a file in \(UntrustedText.terminal(folder)): \(error.name) (\(String(cString: strerror(error.code))))"
        }
    }

    package static func folder(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// One name for one file however it is spelt: the real folder plus the file's own name.
    package var identity: String {
        if isStandardOutput { return "-" }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let folder = realpath(Self.folder(of: path), &buffer) != nil
            ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : Self.folder(of: path)
        return folder + "/" + (path.split(separator: "/").last.map(String.init) ?? path)
    }

    /// A new, empty file next to `path`, named so that it is plainly a leftover if a crash
    /// ever strands it: `.REPORT.md.hijack-lab-XXXXXX`.
    package static func temporaryFile(besides path: String) -> Result<(Int32, String), SystemError> {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        var template = Array("\(folder(of: path))/.\(name).hijack-lab-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { return .failure(.last("mkstemp")) }
        // No agent started later may inherit it (agents start with only fds 0, 1 and 2 anyway).
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return .success((fd, template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }))
    }

    /// Checks a command's outputs before anything starts: each problem goes to stderr, and
    /// the status to return comes back (nil when every output can be written).
    package static func refuse(_ outputs: [OutputFile?], command: String, console: Console) -> ExitStatus? {
        let problems = problems(outputs.compactMap { $0 })
        for problem in problems { console.err("hijack-lab \(command): \(problem)") }
        return problems.isEmpty ? nil : .usage
    }

    /// Problems with a set of outputs, each checked, plus two options naming one file.
    package static func problems(_ outputs: [OutputFile]) -> [String] {
        var problems = outputs.compactMap { $0.problem() }
        for (index, output) in outputs.enumerated() {
            if let earlier = outputs[..<index].first(where: { $0.identity == output.identity }) {
                problems.append("\(earlier.option) and \(output.option) both name \(output.shown)")
            }
        }
        return problems
    }

    /// The process's umask, read without changing it (umask(2) can only set it, and setting
    /// it, even back, races every other thread that creates a file).
    package static var umask: mode_t {
        let status = ProcNet.read("/proc/self/status") ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("Umask:") }
        return line.flatMap { mode_t($0.dropFirst(6).trimmed, radix: 8) } ?? 0o022
    }
}

/// The outputs of one command, staged and then published together.
package struct OutputSet {
    private struct Staged {
        package let output: OutputFile
        /// The temp file of a regular file, and its slot in the signal handler's table.
        package let temporary: (path: String, slot: Int32)?
        package let content: [UInt8]
    }

    private var staged: [Staged] = []

    package init() {}
    /// One line per output that could not be written.
    package private(set) var failures: [String] = []

    /// Writes a regular file's content to its temp file now (flushed to disk, and known to the
    /// signal handler, which removes it if the run is interrupted); devices, FIFOs and stdout
    /// are written at publish time, since they cannot be renamed into place.
    package mutating func stage(_ content: String, to output: OutputFile) {
        stage(to: output) { write in Array(content.utf8).withUnsafeBytes(write) }
    }

    /// As `stage(_:to:)`, with the content handed over in pieces (a 50,000-socket audit in
    /// JSON is tens of MB): a regular file's pieces go straight to its temp file.
    package mutating func stage(to output: OutputFile, pieces produce: ((UnsafeRawBufferPointer) -> Void) -> Void) {
        guard output.isRegularFile else {
            var bytes: [UInt8] = []
            produce { bytes += $0 }
            staged.append(Staged(output: output, temporary: nil, content: bytes))
            return
        }
        switch OutputFile.temporaryFile(besides: output.path) {
        case .failure(let error):
            failures.append("cannot write \(output.shown) (\(output.option)): \(error)")
        case .success(let (fd, temporary)):
            let slot = hl_temporary_add(temporary)
            let mode = output.replacementMode()
            var failure: Int32?
            produce { piece in
                guard failure == nil, let base = piece.baseAddress else { return }
                failure = writeAll(fd, Array(UnsafeRawBufferPointer(start: base, count: piece.count)))
            }
            if failure == nil, fchmod(fd, mode) != 0 { failure = errno }
            if failure == nil, fsync(fd) != 0 { failure = errno }
            if Glibc.close(fd) != 0, failure == nil { failure = errno }
            if let failure {
                unlink(temporary)
                hl_temporary_remove(slot)
                failures.append("cannot write \(output.shown) (\(output.option)): \(SystemError(call: "write", code: failure))")
            } else {
                staged.append(Staged(output: output, temporary: (temporary, slot), content: []))
            }
        }
    }

    /// How long a stream may take no byte, or wait for a reader, before its write fails.
    package static let streamStall = 30.0

    /// Writes `bytes` to a stream named as such (a FIFO, a device, /dev/stdout), never blocking
    /// past `stall` seconds without progress: the open waits for a reader (ENXIO) and each write
    /// for room (EAGAIN) only that long, and then fails with ETIMEDOUT.
    package static func writeStream(_ bytes: [UInt8], to path: String, stall: Double) throws(SystemError) {
        var deadline = Deadline.after(seconds: stall)
        var fd: Int32 = -1
        while true {
            fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            if fd >= 0 { break }
            guard errno == ENXIO || errno == EINTR else { throw .last("open") }
            // A FIFO with no reader yet: look again shortly, until the deadline.
            guard !deadline.hasPassed else { throw SystemError(call: "open (no reader)", code: ETIMEDOUT) }
            _ = poll(nil, 0, 20)
        }
        defer { Glibc.close(fd) }
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if count > 0 {
                offset += count
                deadline = .after(seconds: stall)
                continue
            }
            guard count < 0, errno == EAGAIN || errno == EINTR else { throw count == 0 ? SystemError(call: "write", code: EIO) : .last("write") }
            var watched = [pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)]
            let ready = try Syscall.poll(&watched, timeoutMilliseconds: deadline.pollTimeout)
            if ready == 0 && deadline.hasPassed { throw SystemError(call: "write", code: ETIMEDOUT) }
        }
    }

    /// Writes stdout, devices and FIFOs (which may block, so signals stay live), then renames
    /// every staged file into place in one step that a SIGINT or SIGTERM cannot split. Returns
    /// nil when the process is being interrupted (no file was renamed; the signal handler is
    /// ending the process); otherwise the outputs that were written.
    package mutating func publish(console: Console) -> [OutputFile]? {
        var written: [OutputFile] = []
        for item in staged where item.temporary == nil {
            if item.output.isStandardOutput {
                var text = String(decoding: item.content, as: UTF8.self)
                if text.hasSuffix("\n") { text.removeLast() }
                // A failed write to stdout is reported once, by CLI.run, for every command alike.
                console.out(text)
            } else {
                do throws(SystemError) {
                    try Self.writeStream(item.content, to: item.output.path, stall: Self.streamStall)
                } catch {
                    failures.append("cannot write \(item.output.shown) (\(item.output.option)): \(error)")
                    continue
                }
            }
            written.append(item.output)
        }
        let files = staged.compactMap { item in item.temporary.map { (item.output, $0) } }
        staged.removeAll()
        guard hl_commit_begin() == 0 else {
            for (_, temporary) in files {
                unlink(temporary.path)
                hl_temporary_remove(temporary.slot)
            }
            return nil
        }
        for (output, temporary) in files {
            if rename(temporary.path, output.path) == 0 {
                written.append(output)
            } else {
                let error = SystemError.last("rename")
                unlink(temporary.path)
                failures.append("cannot write \(output.shown) (\(output.option)): \(error)")
            }
            hl_temporary_remove(temporary.slot)
        }
        hl_commit_end()
        return written
    }
}
