import CHijackLab
import Foundation
import Glibc
import Testing
@testable import HijackCLI
@testable import HijackSystem

/// What an output path holds never steers a write: outputs published into a folder that
/// another user can write to, as root, with a symlink, another user's set-id file or a FIFO
/// planted at the name (issue 19, F5).
@Suite("Outputs that cannot be steered")
struct OutputSafetyTests {
    static let isRoot = geteuid() == 0
    static let other: uid_t = 65534

    /// A fresh folder that uid 65534 owns and may write to, as node_exporter's textfile
    /// folder often is; removed afterwards.
    static func withPlantableFolder<T>(_ body: (String) throws -> T) throws -> T {
        var template = Array("/tmp/hijack-lab-plant-XXXXXX".utf8CString)
        let made = try #require(mkdtemp(&template))
        let folder = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        if isRoot { try #require(chown(folder, other, other) == 0) }
        try #require(chmod(folder, 0o777) == 0)
        return try body(folder)
    }

    /// `hijack-lab audit --format prometheus --output PATH`, the real front, with a deadline.
    static func audit(to path: String) throws -> (status: Int32, output: String) {
        let child = try ChildProcess(executable: TestLab.toolExecutable, arguments: ["audit", "--format", "prometheus", "--output", path],
                                     mergeStandardError: true)
        child.closeStdin()
        let deadline = Deadline.after(seconds: 30)
        let output = child.readAll(until: deadline)
        let status = child.finish(until: deadline)
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, try #require(output, "the audit did not finish within 30 s"))
    }

    /// A file of the other user's at `path`, holding `text`, with a set-id mode anyone may write.
    static func plantOthersFile(_ text: String, at path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        try #require(chown(path, other, other) == 0 && chmod(path, 0o6777) == 0)
    }

    static func status(_ path: String) throws -> stat {
        var found = stat()
        try #require(lstat(path, &found) == 0, "lstat \(path): \(SystemError.name(of: errno))")
        return found
    }

    @Test("A symlink at the name to a device: the link is replaced by a file, the device is never opened",
          .enabled(if: isRoot, "needs root to make a device node and to write as root into another user's folder"))
    func symlinkToDevice() throws {
        try Self.withPlantableFolder { folder in
            // A device of root's own, elsewhere: /dev/null's numbers, so that a write that
            // followed the link would go nowhere harmful, yet show as the link left in place.
            var template = Array("/tmp/hijack-lab-device-XXXXXX".utf8CString)
            let devices = String(cString: try #require(mkdtemp(&template)))
            defer { try? FileManager.default.removeItem(atPath: devices) }
            let device = devices + "/disk"
            try #require(mknod(device, S_IFCHR | 0o600, dev_t(1 << 8 | 3)) == 0)
            let output = folder + "/hijack_lab.prom"
            try #require(symlink(device, output) == 0)
            let (status, text) = try Self.audit(to: output)
            #expect(status == 0 || status == 1, "\(text)")
            let written = try Self.status(output)
            #expect(written.st_mode & S_IFMT == S_IFREG, "the symlink is still there: the write followed it")
            #expect(written.st_uid == 0 && written.st_mode & 0o7000 == 0)
            #expect(try String(contentsOfFile: output, encoding: .utf8).contains("# TYPE hijack_lab_"))
            #expect(try Self.status(device).st_mode & S_IFMT == S_IFCHR)
        }
    }

    @Test("A symlink at the name to another user's set-id file: that file keeps its bytes and mode, the output has no set-id bit",
          .enabled(if: isRoot, "needs root to own the output while another user owns the planted file"))
    func symlinkToOtherUsersFile() throws {
        try Self.withPlantableFolder { folder in
            let theirs = folder + "/theirs"
            try Self.plantOthersFile("their own bytes\n", at: theirs)
            let output = folder + "/hijack_lab.prom"
            try #require(symlink(theirs, output) == 0)
            let (status, text) = try Self.audit(to: output)
            #expect(status == 0 || status == 1, "\(text)")
            let planted = try Self.status(theirs)
            #expect(try String(contentsOfFile: theirs, encoding: .utf8) == "their own bytes\n")
            #expect(planted.st_mode & 0o7777 == 0o6777 && planted.st_uid == Self.other)
            let written = try Self.status(output)
            #expect(written.st_mode & S_IFMT == S_IFREG && written.st_uid == 0)
            #expect(written.st_mode & 0o7000 == 0, "mode \(String(written.st_mode & 0o7777, radix: 8))")
        }
    }

    @Test("Another user's plain file at the name is replaced, not rewritten, and its mode is not carried over",
          .enabled(if: isRoot, "needs root to replace another user's file"))
    func otherUsersPlainFile() throws {
        try Self.withPlantableFolder { folder in
            let output = folder + "/hijack_lab.prom"
            try Self.plantOthersFile("planted\n", at: output)
            let (status, text) = try Self.audit(to: output)
            #expect(status == 0 || status == 1, "\(text)")
            let written = try Self.status(output)
            #expect(written.st_uid == 0 && written.st_mode & 0o7000 == 0 && written.st_mode & 0o002 == 0,
                    "mode \(String(written.st_mode & 0o7777, radix: 8))")
        }
    }

    @Test("This user's own file keeps its mode, less any set-id bit")
    func ownFileKeepsMode() throws {
        try Self.withPlantableFolder { folder in
            let output = folder + "/hijack_lab.prom"
            try Data("old\n".utf8).write(to: URL(fileURLWithPath: output))
            try #require(chmod(output, 0o4750) == 0)
            #expect(OutputFile(option: "--output", path: output).replacementMode() == 0o750)
            try #require(chmod(output, 0o640) == 0)
            let (status, text) = try Self.audit(to: output)
            #expect(status == 0 || status == 1, "\(text)")
            #expect(try Self.status(output).st_mode & 0o7777 == 0o640)
        }
    }

    @Test("A FIFO at the name: refused at once (exit 2, the FIFO named as such), never opened")
    func fifoAtTheName() throws {
        try Self.withPlantableFolder { folder in
            let output = folder + "/hijack_lab.prom"
            try #require(mkfifo(output, 0o666) == 0)
            let (status, text) = try Self.audit(to: output)
            #expect(status == 2)
            #expect(text.contains("is a FIFO, not a file"))
            #expect(try Self.status(output).st_mode & S_IFMT == S_IFIFO)
        }
    }

    @Test("Streams named as such are written; a stream that takes nothing fails at its deadline",
          arguments: ["/dev/stdout", "/dev/null", "/dev/fd/1", "/proc/self/fd/1"])
    func namedStreams(path: String) {
        #expect(OutputFile(option: "--output", path: path).isNamedStream)
        #expect(!OutputFile(option: "--output", path: path).isRegularFile)
        #expect(!OutputFile(option: "--output", path: "/dev/fd/1x").isNamedStream)
        #expect(!OutputFile(option: "--output", path: "/dev/shm/hijack_lab.prom").isNamedStream)
        #expect(!OutputFile(option: "--output", path: "/dev/").isNamedStream)
    }

    @Test("A full pipe nobody reads, and a FIFO nobody opens: the write gives up with ETIMEDOUT at its deadline")
    func streamDeadline() throws {
        var fds: [Int32] = [-1, -1]
        try #require(hl_pipe_cloexec(&fds) == 0)
        defer { Glibc.close(fds[0]); Glibc.close(fds[1]) }
        let started = Deadline.now()
        #expect(throws: SystemError(call: "write", code: ETIMEDOUT)) {
            try OutputSet.writeStream([UInt8](repeating: 0x2e, count: 1 << 20), to: "/proc/self/fd/\(fds[1])", stall: 0.2)
        }
        try Self.withPlantableFolder { folder in
            let fifo = folder + "/fifo"
            try #require(mkfifo(fifo, 0o600) == 0)
            #expect(throws: SystemError(call: "open (no reader)", code: ETIMEDOUT)) {
                try OutputSet.writeStream(Array("x\n".utf8), to: fifo, stall: 0.2)
            }
        }
        // Bounded: two stalls of 0.2 s, with room for a loaded machine.
        #expect(Double(Deadline.now().nanoseconds - started.nanoseconds) / 1e9 < 10)
    }
}
