import CHijackLab
import Foundation
import Glibc

/// A file a command writes: REPORT.md, MATRIX.md, the JSON. `-` is stdout.
///
/// Every path is checked before the first agent starts, so a typo costs nothing. Regular
/// files are written to a temp file in the same folder and renamed into place, all renames
/// together at the end, so that after any interruption the outputs are all old or all new.
struct OutputFile: Equatable {
    /// The option that named it, for messages: `--report`.
    let option: String
    let path: String

    var isStandardOutput: Bool { path == "-" }

    /// Why this output could not be written, or nil. It tries what the final write will do:
    /// a temp file in the folder (created and removed), or opening a device or FIFO.
    func problem() -> String? {
        if isStandardOutput { return nil }
        var status = stat()
        if stat(path, &status) == 0 {
            switch status.st_mode & S_IFMT {
            case S_IFDIR: return "\(option) \(path): is a folder; name a file in it"
            case S_IFREG: break
            default:
                return access(path, W_OK) == 0 ? nil : "\(option) \(path): cannot write it: \(SystemError.name(of: errno))"
            }
        }
        let folder = Self.folder(of: path)
        var folderStatus = stat()
        guard stat(folder, &folderStatus) == 0 else { return "\(option) \(path): the folder \(folder) does not exist" }
        guard folderStatus.st_mode & S_IFMT == S_IFDIR else { return "\(option) \(path): \(folder) is not a folder" }
        switch Self.temporaryFile(besides: path) {
        case .success(let (fd, temporary)):
            Glibc.close(fd)
            unlink(temporary)
            return nil
        case .failure(let error):
            return "\(option) \(path): cannot create a file in \(folder): \(error.name) (\(String(cString: strerror(error.code))))"
        }
    }

    static func folder(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// A new, empty file next to `path`, named so that it is plainly a leftover if a crash
    /// ever strands it: `.REPORT.md.hijack-lab-XXXXXX`.
    static func temporaryFile(besides path: String) -> Result<(Int32, String), SystemError> {
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
    static func refuse(_ outputs: [OutputFile?], command: String, console: Console) -> ExitStatus? {
        let problems = problems(outputs.compactMap { $0 })
        for problem in problems { console.err("hijack-lab \(command): \(problem)") }
        return problems.isEmpty ? nil : .usage
    }

    /// Problems with a set of outputs, each checked, plus two options naming one file.
    static func problems(_ outputs: [OutputFile]) -> [String] {
        var problems = outputs.compactMap { $0.problem() }
        for (index, output) in outputs.enumerated() {
            if let earlier = outputs[..<index].first(where: { $0.path == output.path }) {
                problems.append("\(earlier.option) and \(output.option) both name \(output.path == "-" ? "stdout (-)" : output.path)")
            }
        }
        return problems
    }
}

/// The outputs of one command, staged and then published together.
struct OutputSet {
    private var staged: [(output: OutputFile, temporary: String?, content: [UInt8])] = []
    /// One line per output that could not be written.
    private(set) var failures: [String] = []

    /// Writes a regular file's content to its temp file now; devices, FIFOs and stdout are
    /// written at publish time, since they cannot be renamed into place.
    mutating func stage(_ content: String, to output: OutputFile) {
        let bytes = Array(content.utf8)
        var status = stat()
        let special = output.isStandardOutput || (stat(output.path, &status) == 0 && status.st_mode & S_IFMT != S_IFREG)
        if special {
            staged.append((output, nil, bytes))
            return
        }
        switch OutputFile.temporaryFile(besides: output.path) {
        case .failure(let error):
            failures.append("cannot write \(output.path) (\(output.option)): \(error)")
        case .success(let (fd, temporary)):
            // An existing file keeps its mode; a new one gets the usual 0666 less the umask.
            let mode: mode_t
            if stat(output.path, &status) == 0 {
                mode = status.st_mode & 0o7777
            } else {
                let mask = umask(0)
                umask(mask)
                mode = 0o666 & ~mask
            }
            var failure = writeAll(fd, bytes)
            if failure == nil, fchmod(fd, mode) != 0 { failure = errno }
            if Glibc.close(fd) != 0, failure == nil { failure = errno }
            if let failure {
                unlink(temporary)
                failures.append("cannot write \(output.path) (\(output.option)): \(SystemError(call: "write", code: failure))")
            } else {
                staged.append((output, temporary, bytes))
            }
        }
    }

    /// Renames every staged file into place, and writes the special ones, as one step that a
    /// SIGINT or SIGTERM cannot split. Returns false when the process is being interrupted
    /// (nothing was published; the signal handler is ending the process); otherwise the
    /// outputs that were written.
    mutating func publish(console: Console) -> [OutputFile]? {
        guard hl_commit_begin() == 0 else {
            for item in staged { if let temporary = item.temporary { unlink(temporary) } }
            return nil
        }
        defer { hl_commit_end() }
        var written: [OutputFile] = []
        for item in staged {
            if let temporary = item.temporary {
                if rename(temporary, item.output.path) != 0 {
                    let error = SystemError.last("rename")
                    unlink(temporary)
                    failures.append("cannot write \(item.output.path) (\(item.output.option)): \(error)")
                    continue
                }
            } else if item.output.isStandardOutput {
                // A reader that stopped early (`| head`) wanted no more; anything else is a failure.
                var text = String(decoding: item.content, as: UTF8.self)
                if text.hasSuffix("\n") { text.removeLast() }
                console.out(text)
                if let code = console.outFailure(), code != EPIPE {
                    failures.append("cannot write stdout (\(item.output.option) -): \(SystemError(call: "write", code: code))")
                    continue
                }
            } else {
                let fd = open(item.output.path, O_WRONLY | O_CLOEXEC)
                if fd < 0 {
                    failures.append("cannot write \(item.output.path) (\(item.output.option)): \(SystemError.last("open"))")
                    continue
                }
                let failure = writeAll(fd, item.content)
                Glibc.close(fd)
                if let failure {
                    failures.append("cannot write \(item.output.path) (\(item.output.option)): \(SystemError(call: "write", code: failure))")
                    continue
                }
            }
            written.append(item.output)
        }
        staged.removeAll()
        return written
    }
}
