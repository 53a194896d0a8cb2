/// How large a scenario may be. A scenario is run for real, one process per socket, so a
/// hostile or mistaken file must not be able to start thousands of them.
public enum ScenarioLimits {
    public static let fileBytes = 1 << 20
    public static let sockets = 64
    public static let probes = 64
    public static let connectionsPerProbe = 1000
}
