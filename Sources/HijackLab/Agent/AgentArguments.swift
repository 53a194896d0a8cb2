import HijackAudit
import HijackSystem

/// The hidden role's command line, read here so that any executable can host the role:
/// `agent --id ID [--netns new|PATH] [--user other|NAME] [--host-client] [--bind-service]`.
extension Agent {
    public static let usage = "hijack-lab agent is started by the runner itself: agent --id ID [--netns new|PATH] [--user other|NAME] [--host-client] [--bind-service]"

    /// What is wrong with an agent command line, as the message to print.
    public struct ArgumentError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// The agent the arguments (those after `agent`) describe.
    public convenience init(arguments: [String]) throws(ArgumentError) {
        try self.init(arguments: arguments, passwd: { ProcNet.read(PasswdFile.path) })
    }

    /// `passwd`: the text of /etc/passwd, read only for `--user NAME`.
    package convenience init(arguments: [String], passwd: () -> String?) throws(ArgumentError) {
        var id: String?
        var netns: String?
        var account: PasswdFile.Account?
        var hostClient = false
        var bindService = false
        var index = 0
        while index < arguments.count {
            switch (arguments[index], index + 1 < arguments.count ? arguments[index + 1] : nil) {
            case ("--host-client", _):
                hostClient = true
                index += 1
                continue
            case ("--bind-service", _):
                bindService = true
                index += 1
                continue
            case ("--id", let value?): id = value
            case ("--netns", let value?): netns = value
            case ("--user", "other"): account = Agent.other
            case ("--user", let name?):
                // A named account of /etc/passwd, the way a service's unit names its User=.
                // Not root's: an agent that stays root is started without --user.
                guard let found = PasswdFile.account(named: name, in: passwd() ?? "") else {
                    throw ArgumentError(description: "hijack-lab agent --user \(UntrustedText.terminal(name)): no such account in \(PasswdFile.path)")
                }
                guard found.uid != 0 else {
                    throw ArgumentError(description: "hijack-lab agent --user \(UntrustedText.terminal(name)): uid 0; an agent that stays root is started without --user")
                }
                account = found
            default: throw ArgumentError(description: Self.usage)
            }
            index += 2
        }
        guard let id else { throw ArgumentError(description: "hijack-lab agent needs --id") }
        self.init(id: id, netns: netns, account: account, hostClient: hostClient, bindService: bindService)
    }
}
