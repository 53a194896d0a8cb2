import CHijackLab
import Glibc
import HijackSystem

/// `hijack-lab` itself: the front door. It links no Foundation, so it starts fast and stays
/// small; it answers help, --version, audit and the agent role on its own, and hands every other command to
/// `hijack-lab-full`, the program built beside it, by exec: the same process, pid, descriptors
/// and signals, so scripts see one tool.
package enum Front {
    /// The commands this program runs itself.
    package static let local: [any Command.Type] = [AuditCommand.self]
    /// The program that runs the rest: the lab, the matrix, the reports.
    package static let fullName = "hijack-lab-full"

    /// The program the lab starts in the agent role: this one, which starts fast.
    package static let agentName = "hijack-lab"

    package static func run(_ arguments: [String], console: Console = .standard) -> Int32 {
        // Handed over untouched: hijack-lab-full must see the descriptors and signal dispositions
        // this process was started with (a closed stdout is its to notice).
        if isHandedOver(arguments) { return handOver(console: console).code }
        return ToolSession.run(console: console) { dispatch(arguments, console: console) }
    }

    /// A command of hijack-lab-full's, or help about one.
    static func isHandedOver(_ arguments: [String]) -> Bool {
        guard let first = arguments.first else { return false }
        let isLocal = { (name: String) in local.contains { $0.name == name } }
        if first == "help" || first == "--help" || first == "-h" {
            guard arguments.count == 2 else { return false }
            return CommandIndex.names.contains(arguments[1]) && !isLocal(arguments[1])
        }
        return CommandIndex.names.contains(first) && !isLocal(first)
    }

    static func dispatch(_ arguments: [String], console: Console) -> ExitStatus {
        ToolSession.route(arguments, among: local, context: CommandContext(console: console, agentExecutable: ownPath() ?? ownByKernel))
    }

    /// This program, named by the kernel rather than by a path: what a child started by
    /// posix_spawn finds there, before its exec, is the binary of the process that started it.
    package static let ownByKernel = "/proc/self/exe"

    /// This program's own path, from the kernel (argv[0] may be a bare name or a lie); nil
    /// where it is not UTF-8. A String cannot hold such a path, and a decoded one (with
    /// U+FFFD for the bad bytes) names another folder, perhaps one another user made: what
    /// runs is then found by `ownByKernel` or by the folder's bytes, never by that name.
    package static func ownPath() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(validating: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `hijack-lab-full` in this program's folder, for messages (exec goes by the folder's bytes).
    package static func fullPath() -> String {
        guard let own = ownPath(), let slash = own.lastIndex(of: "/") else { return fullName + " beside this program" }
        return String(own[...slash]) + fullName
    }

    /// Replaces this process with hijack-lab-full, with this process's own argv. Returns only
    /// when exec failed.
    static func handOver(console: Console) -> ExitStatus {
        let path = fullPath()
        // The process's own argv, byte for byte: CommandLine.arguments has already replaced
        // bytes that are not UTF-8, and a file name may hold them. The program too is found by
        // bytes: its folder's, as /proc/self/exe gives them.
        hl_exec_sibling(fullName, ProcessArguments.unsafeArgv)
        let failure = SystemError.last("execveat(\(path))")
        console.err("hijack-lab: cannot start \(fullName), which runs this command: \(UntrustedText.terminal(failure.description)); `swift build` builds it beside hijack-lab")
        // The shell's codes: 127 not found, 126 found but not runnable; never 2, a usage error.
        return .other(failure.code == ENOENT ? 127 : 126)
    }
}
