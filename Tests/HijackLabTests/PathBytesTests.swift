import CHijackLab
import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackCLI

/// Installed under a folder whose name is not UTF-8, the tool runs its own programs, never
/// those of the folder whose name is the decoded spelling (U+FFFD for the bad byte), which
/// another user may have made beside it.
@Suite("Paths are bytes: a non-UTF-8 install never runs a decoy")
struct PathBytesTests {
    /// A path as bytes, for the calls that take one.
    struct BytePath {
        var bytes: [UInt8]
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        static func + (path: BytePath, tail: String) -> BytePath { BytePath(path.bytes + Array(tail.utf8)) }
        func withC<T>(_ body: (UnsafePointer<CChar>) throws -> T) rethrows -> T {
            try (bytes + [0]).map { CChar(bitPattern: $0) }.withUnsafeBufferPointer { try body($0.baseAddress!) }
        }
    }

    /// Runs `program` (bytes) with `arguments`; its exit status and stdout.
    static func run(_ program: BytePath, _ arguments: [String], output: String) throws -> (status: Int32, out: String) {
        let status = try CLITests.runBinary(arguments, program: program.bytes) { actions in
            posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        return (status, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
    }

    @Test("The front, the runner's agents and audit --all-netns run the programs beside them, not the U+FFFD folder's")
    func decoysNeverRun() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("hijack-lab-bytes-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: base) }
        let real = BytePath(Array(base.utf8) + Array("/hl-".utf8) + [0xff] + Array("bin".utf8))
        let decoy = BytePath(Array(base.utf8)) + "/hl-\u{FFFD}bin"
        #expect(String(decoding: real.bytes, as: UTF8.self) == String(decoding: decoy.bytes, as: UTF8.self), "the decoy is not the decoded spelling")
        try #require(real.withC { mkdir($0, 0o755) } == 0 && decoy.withC { mkdir($0, 0o755) } == 0)
        try TestLab.copyProgram(TestLab.toolExecutable, to: (real + "/hijack-lab").bytes)
        try TestLab.copyProgram(TestLab.builtExecutable(Front.fullName), to: (real + "/hijack-lab-full").bytes)
        // The decoys say that they ran, and fail.
        let marker = base + "/decoy-ran"
        for name in ["hijack-lab", "hijack-lab-full"] {
            let script = "#!/bin/sh\necho \(name) >> '\(marker)'\nexit 42\n"
            try TestLab.writeProgram(script, to: base + "/hl-\u{FFFD}bin/" + name)
        }
        let front = real + "/hijack-lab"
        let output = base + "/out"

        // The front hands `list` to hijack-lab-full: the one in its own folder.
        let listed = try Self.run(front, ["list", "--scenarios", TestLab.fixtures + "/mixed"], output: output)
        #expect(listed.status == 2 && listed.out.contains("good-one"), "\(listed)")
        // A run starts agents: the front beside hijack-lab-full, or hijack-lab-full itself.
        let ran = try Self.run(front, ["run", "good-one", "--scenarios", TestLab.fixtures + "/mixed", "--topology", "loopback", "--json", "-"], output: output)
        #expect(ran.out.contains("\"matchesExpectation\" : true") || ran.out.contains("\"matchesExpectation\":true"), "\(ran)")
        if geteuid() == 0 {
            // Every namespace is entered by an agent of the front's own binary.
            let audited = try Self.run(front, ["audit", "--all-netns"], output: output)
            #expect([0, 1, 3].contains(audited.status), "\(audited)")
        }
        #expect(access(marker, F_OK) != 0, "a decoy ran: \((try? String(contentsOfFile: marker, encoding: .utf8)) ?? "")")
    }
}
