import HijackSystem
import Glibc

/// What an agent does to its namespace for the runner: the ICMP sysctls, and tools.
extension Agent {
    func write(_ sysctl: WritableSysctl, _ value: String) -> AgentReply {
        guard netns != nil else { return .refused(reason: "sysctl is refused outside a lab namespace") }
        let fd: Int32
        do throws(SystemError) {
            fd = try Syscall.open(sysctl.path, O_WRONLY)
        } catch {
            return .done(calls: [SyscallRecord(call: "open", arguments: sysctl.path, result: SyscallResult(error))])
        }
        defer { try? Syscall.close(fd) }
        let arguments = "\(sysctl.path), \(value)"
        do throws(SystemError) {
            try writeAll(fd, bytes: Array(value.utf8))
            return .done(calls: [SyscallRecord(call: "write", arguments: arguments, result: .ok)])
        } catch {
            return .done(calls: [SyscallRecord(call: "write", arguments: arguments, result: SyscallResult(error))])
        }
    }

    /// Runs a tool here, in this agent's namespace: children inherit the spawning thread's.
    func execute(_ argv: [String], input: String?, timeoutMilliseconds: Int) -> AgentReply {
        guard let executable = argv.first else { return .refused(reason: "exec needs argv") }
        let deadline = Deadline.after(seconds: Double(timeoutMilliseconds) / 1000)
        let shown = argv.joined(separator: " ")
        do throws(SystemError) {
            let child = try ChildProcess(executable: executable, arguments: Array(argv.dropFirst()), mergeStandardError: true)
            if let input {
                for line in input.split(separator: "\n") { try child.send(String(line)) }
            }
            child.closeStdin()
            let output = child.readAll(until: deadline)
            let status = child.finish(until: deadline)
            guard let output else {
                return .executed(SyscallRecord(call: "exec", arguments: shown, result: .errno(SystemError.name(of: ETIMEDOUT))), output: "no answer in time")
            }
            let result: SyscallResult = status == 0 ? .ok : .toolFailed((status & 0x7f) == 0 ? "exit \((status >> 8) & 0xff)" : "signal \(status & 0x7f)")
            return .executed(SyscallRecord(call: "exec", arguments: shown, result: result), output: output.isEmpty ? nil : output)
        } catch {
            return .executed(SyscallRecord(call: "exec", arguments: shown, result: SyscallResult(error)), output: nil)
        }
    }
}
