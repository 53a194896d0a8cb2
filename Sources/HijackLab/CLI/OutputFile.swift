import HijackAgent
import HijackAudit
import HijackSystem
import CHijackLab
import Glibc

/// A file a command writes: REPORT.md, MATRIX.md, the JSON. `-` is stdout.
///
/// Every path is checked before the first agent starts, so a typo costs nothing. Regular
/// files are written to a temp file in the same folder and renamed into place, all renames
/// together at the end, so that after any interruption the outputs are all old or all new.
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

    /// Whether it is (or will be) a regular file, which can be renamed into place; a device
    /// or FIFO is written as it is.
    package var isRegularFile: Bool {
        if isStandardOutput { return false }
        var status = stat()
        return stat(path, &status) != 0 || status.st_mode & S_IFMT == S_IFREG
    }

    /// Why this output could not be written, or nil. It tries what the final write will do:
    /// a temp file in the folder (created and removed), or opening a device or FIFO.
    package func problem() -> String? {
        if isStandardOutput { return nil }
        if path.isEmpty { return "\(option) needs a file name (or - for stdout)" }
        var status = stat()
        let exists = stat(path, &status) == 0
        if exists {
            switch status.st_mode & S_IFMT {
            case S_IFDIR: return "\(option) \(shown): is a folder; name a file in it"
            case S_IFREG: break
            default:
                return access(path, W_OK) == 0 ? nil : "\(option) \(shown): cannot write it: \(SystemError.name(of: errno))"
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
            // An existing file keeps its mode; a new one gets the usual 0666 less the umask.
            var status = stat()
            let mode = stat(output.path, &status) == 0 ? status.st_mode & 0o7777 : 0o666 & ~OutputFile.umask
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
                let fd = open(item.output.path, O_WRONLY | O_CLOEXEC)
                if fd < 0 {
                    failures.append("cannot write \(item.output.shown) (\(item.output.option)): \(SystemError.last("open"))")
                    continue
                }
                let failure = writeAll(fd, item.content)
                Glibc.close(fd)
                if let failure {
                    failures.append("cannot write \(item.output.shown) (\(item.output.option)): \(SystemError(call: "write", code: failure))")
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
