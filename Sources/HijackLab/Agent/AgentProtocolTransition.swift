import HijackSystem

/// The spelling CLI/AuditCommand.swift still uses for its one agent request,
/// `agent.request(AgentCommand(op: .audit, port: port))`, until it calls
/// `AgentClient.audit(port:)`. Nothing else may use it; delete it with that call.
extension AgentCommand {
    package enum AuditOperation { case audit }

    package init(op: AuditOperation, port: UInt16?) {
        self = .audit(port: port)
    }
}
