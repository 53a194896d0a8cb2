import HijackAgent
import HijackAudit
import HijackCLI
import HijackSystem

/// The hidden role the runner starts: `agent --id ID [--netns new|PATH] [--user other] [--host-client] [--bind-service]`.
enum AgentEntry {
    static func run(_ arguments: [String], console: Console) -> ExitStatus {
        var id: String?
        var netns: String?
        var runAsOther = false
        var hostClient = false
        var bindService = false
        var index = 0
        while index < arguments.count {
            if arguments[index] == "--host-client" || arguments[index] == "--bind-service" {
                if arguments[index] == "--host-client" { hostClient = true } else { bindService = true }
                index += 1
                continue
            }
            switch (arguments[index], index + 1 < arguments.count ? arguments[index + 1] : nil) {
            case ("--id", let value?): id = value
            case ("--netns", let value?): netns = value
            case ("--user", "other"): runAsOther = true
            default:
                console.err("hijack-lab agent is started by the runner itself: agent --id ID [--netns new|PATH] [--user other] [--host-client] [--bind-service]")
                return .usage
            }
            index += 2
        }
        guard let id else {
            console.err("hijack-lab agent needs --id")
            return .usage
        }
        return ExitStatus(code: Agent(id: id, netns: netns, runAsOther: runAsOther, hostClient: hostClient, bindService: bindService).run())
    }
}
