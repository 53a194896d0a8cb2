import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import CHijackLab
import Foundation
import Glibc

/// Programs `kernels` runs on the host (dpkg-deb, ldd, xz, qemu), found on PATH.
enum HostTools {
    static func find(_ name: String) -> String? { SearchPath.find(name) }

    struct Result {
        let status: Int32
        /// stdout and stderr together.
        let output: String
    }

    /// Runs a tool to the end (killed at the deadline, then status -1); its output merged.
    static func run(_ executable: String, _ arguments: [String], seconds: Double = 120) -> Result {
        let child: ChildProcess
        do throws(SystemError) {
            child = try ChildProcess(executable: executable, arguments: arguments, mergeStandardError: true, dieWithParent: true)
        } catch {
            return Result(status: -1, output: "cannot start \(executable): \(error)")
        }
        child.closeStdin()
        let deadline = Deadline.after(seconds: seconds)
        let output = child.readAll(until: deadline)
        let status = child.finish(until: deadline)
        guard let output else { return Result(status: -1, output: "\(executable) did not finish within \(Int(seconds)) s") }
        let signal = status & 0x7f
        return Result(status: signal == 0 ? (status >> 8) & 0xff : 128 + signal, output: output)
    }

    /// The shared libraries a dynamically linked executable loads, loader included, as ldd
    /// names them (the paths the loader will look for inside the guest, too).
    static func libraries(of executable: String) -> Swift.Result<[String], KernelsError> {
        guard let ldd = find("ldd") else { return .failure(KernelsError("ldd is not installed (it comes with libc-bin)")) }
        let result = run(ldd, [executable])
        // A static executable: ldd says "not a dynamic executable" and exits 1.
        if result.output.contains("not a dynamic executable") || result.output.contains("statically linked") { return .success([]) }
        guard result.status == 0 else { return .failure(KernelsError("ldd \(executable) failed: \(result.output.prefix(300))")) }
        var paths: [String] = []
        for line in result.output.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            if let arrow = words.firstIndex(of: "=>") {
                guard arrow + 1 < words.count else { continue }
                if words[arrow + 1] == "not" { return .failure(KernelsError("\(executable) needs \(words[0]), which ldd did not find")) }
                if words[arrow + 1].hasPrefix("/") { paths.append(words[arrow + 1]) }
            } else if let first = words.first?.trimmingCharacters(in: .whitespaces), first.hasPrefix("/") {
                paths.append(first)
            }
        }
        return .success(paths)
    }
}

struct KernelsError: Error, CustomStringConvertible {
    let message: String
    /// The guest never said hello: with KVM, the cue to try software emulation instead.
    var beforeBoot = false
    init(_ message: String, beforeBoot: Bool = false) {
        self.message = message
        self.beforeBoot = beforeBoot
    }
    var description: String { message }
}

