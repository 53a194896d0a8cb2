import HijackAudit
import HijackAgent
import HijackSystem
import CHijackLab
import Glibc

/// The hidden `launch` role: starts a real server (issue 22) inside the lab, never on the
/// host. `hijack-lab launch --netns PATH --dir DIR --log FILE [--user NAME] [--env K=V]...
/// -- PROGRAM ARG...` enters the lab host's network namespace, forks the server as the init
/// of a new PID namespace (so that its death takes every worker with it), drops to the
/// account when one is named (as a unit's User= does; without it the server starts as root,
/// as its package's unit starts it, and drops privileges itself), and waits for it. It
/// writes "pid N" on stdout once the server's process exists, and exits with the server's
/// status (128+signal when a signal ended it). The runner starts it dying with the runner.
package enum LaunchEntry {
    package struct Request: Equatable {
        package var netns: String
        package var directory: String
        package var log: String
        package var account: PasswdFile.Account?
        package var environment: [String]
        package var argv: [String]
    }

    package static func parse(_ arguments: [String], passwd: () -> String?) -> Result<Request, UsageError> {
        var netns: String?
        var directory: String?
        var log: String?
        var account: PasswdFile.Account?
        var environment: [String] = []
        var index = 0
        let usage = "usage: hijack-lab launch --netns PATH --dir DIR --log FILE [--user NAME] [--env K=V]... -- PROGRAM ARG..."
        while index < arguments.count, arguments[index] != "--" {
            let option = arguments[index]
            guard index + 1 < arguments.count else { return .failure(UsageError(message: "\(option) needs a value; \(usage)")) }
            let value = arguments[index + 1]
            switch option {
            case "--netns": netns = value
            case "--dir": directory = value
            case "--log": log = value
            case "--env":
                guard value.contains("=") else { return .failure(UsageError(message: "--env takes NAME=VALUE (got \(UntrustedText.terminal(value)))")) }
                environment.append(value)
            case "--user":
                guard let found = PasswdFile.account(named: value, in: passwd() ?? "") else {
                    return .failure(UsageError(message: "--user \(UntrustedText.terminal(value)): no such account in \(PasswdFile.path)"))
                }
                account = found
            default:
                return .failure(UsageError(message: "unknown option \(UntrustedText.terminal(option)); \(usage)"))
            }
            index += 2
        }
        let argv = index < arguments.count ? Array(arguments[(index + 1)...]) : []
        guard let netns, let directory, let log else { return .failure(UsageError(message: usage)) }
        guard let program = argv.first, program.hasPrefix("/") else {
            return .failure(UsageError(message: "the program after -- must be an absolute path; \(usage)"))
        }
        return .success(Request(netns: netns, directory: directory, log: log, account: account, environment: environment, argv: argv))
    }

    package static func run(_ arguments: [String], console: Console) -> ExitStatus {
        let request: Request
        switch parse(arguments, passwd: { ProcNet.read(PasswdFile.path) }) {
        case .success(let parsed): request = parsed
        case .failure(let problem):
            console.err("hijack-lab launch: \(problem.message)")
            return .usage
        }
        guard geteuid() == 0 else {
            console.err("hijack-lab launch: needs root, to enter the lab's namespaces")
            return .usage
        }
        let netns: Int32
        do throws(SystemError) {
            netns = try Syscall.open(request.netns, O_RDONLY)
        } catch {
            console.err("hijack-lab launch: \(error)")
            return .other(126)
        }
        var step: UnsafePointer<CChar>?
        let status = CStrings.withArray(request.argv) { argv in
            CStrings.withArray(request.environment) { envp in
                hl_launch(netns, request.account.map { Int32(bitPattern: $0.uid) } ?? -1, request.account.map { Int32(bitPattern: $0.gid) } ?? -1,
                          request.directory, request.log, request.argv[0], argv, envp, 1, &step)
            }
        }
        if status == -1 {
            let failure = SystemError.last(step.map { String(cString: $0) } ?? "launch")
            console.err("hijack-lab launch: \(failure)")
            return .other(126)
        }
        // The shell's convention for a status: the code, or 128 + the signal.
        let signal = status & 0x7f
        return .other(signal == 0 ? (status >> 8) & 0xff : 128 + signal)
    }
}
