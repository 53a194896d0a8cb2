import HijackAgent

/// The identity cross-check, the same for scenarios and matrix cases: every identity a
/// client read names an agent of this run, whose pid is the one the runner started, and
/// which itself reported serving that very client. Call it once each agent has answered a
/// command sent after the probes (a sync, a close): its reports came before that answer.
enum IdentityCheck {
    static func confirm(_ seen: [(probe: String, connection: ProbeConnection)], in what: String,
                        agents: (_ id: String) -> AgentClient?) throws(LabError) {
        for (probe, connection) in seen {
            guard let line = connection.identity else { continue }
            guard let agent = agents(AgentIdentity.receiver(named: line)) else {
                throw .identityMismatch("probe \(probe) read \"\(line)\", which names no socket of this \(what)")
            }
            try agent.confirm(connection, in: probe)
        }
    }
}
