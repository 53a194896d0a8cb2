import HijackSystem

/// Ways to take a port's traffic other than a second bind, with the privilege each needs, so
/// that a reader who asks "is binding the only way?" gets an answer. Nothing here is run by
/// the lab except where a row names a scenario: the rest rests on the cited documentation.
public struct OtherWay: Sendable {
    /// The mechanism, as its documentation names it.
    public let way: String
    /// What it does to a listener's traffic, in one sentence.
    public let effect: String
    /// Who can use it: the capability it needs, and in which namespace.
    public let privilege: String
    /// Scenario names that show it, or `relative` (a close relative of it), with real system
    /// calls; linked only when the run has them.
    public let scenarios: [String]
    public let sources: [Citation]
    public var relative: String? = nil
}

/// The "Other ways to take a port's traffic" section of REPORT.md.
public enum OtherWays {
    public static let heading = "## Other ways to take a port's traffic (documented, not run here)"

    public static let entries: [OtherWay] = [
        OtherWay(way: "nftables or iptables REDIRECT and TPROXY",
                 effect: "a packet filter rule delivers connections for the service's address and port to another local port or socket, whatever the service bound",
                 privilege: "CAP_NET_ADMIN in the network namespace: root's tool, not another user's bind",
                 scenarios: [],
                 sources: [Citation(title: "iptables-extensions(8): REDIRECT, TPROXY", url: "https://man7.org/linux/man-pages/man8/iptables-extensions.8.html"),
                           Citation(title: "Linux kernel: Transparent proxy support", url: "https://docs.kernel.org/networking/tproxy.html")]),
        OtherWay(way: "BPF sk_lookup",
                 effect: "a BPF program attached to the network namespace picks the receiving socket for every lookup on a port, before the kernel's own choice",
                 privilege: "CAP_BPF and CAP_NET_ADMIN (or root) in the namespace",
                 scenarios: [],
                 sources: [Citation(title: "Linux kernel: BPF sk_lookup program", url: "https://docs.kernel.org/bpf/prog_sk_lookup.html")]),
        OtherWay(way: "SO_BINDTOIFINDEX",
                 effect: "SO_BINDTODEVICE by interface index: a socket bound to one device wins that device's traffic over a wildcard socket, as a device bind does",
                 privilege: "the same as SO_BINDTODEVICE, which the lab runs: no capability for a socket not yet bound to a device (Linux 5.7 and later), and beside another socket it needs SO_REUSEPORT on both",
                 scenarios: ["bindtodevice-shadow", "bindtodevice-plain"],
                 sources: [Citation(title: "socket(7): SO_BINDTODEVICE, SO_BINDTOIFINDEX", url: "https://man7.org/linux/man-pages/man7/socket.7.html")],
                 relative: "SO_BINDTODEVICE"),
        OtherWay(way: "pidfd_getfd",
                 effect: "another process copies the service's listening socket itself and accepts its connections",
                 privilege: "ptrace access to the service (PTRACE_MODE_ATTACH_REALCREDS): the service's own user, unless Yama's ptrace_scope forbids it, or CAP_SYS_PTRACE",
                 scenarios: [],
                 sources: [Citation(title: "pidfd_getfd(2)", url: "https://man7.org/linux/man-pages/man2/pidfd_getfd.2.html")]),
    ]

    /// The section as Markdown: a heading, one sentence, one row per way.
    public static func markdownSection(scenarioExists: (String) -> Bool) -> String {
        let rows = entries.map { entry in
            let linked = entry.scenarios.filter(scenarioExists).map { "[\($0)](#\($0))" }
            let shown = linked.isEmpty ? OtherSystems.marker : "shown" + (entry.relative.map { " for \($0)" } ?? "") + " in " + linked.joined(separator: ", ")
            return [entry.way, entry.effect, entry.privilege, OtherSystems.citations(entry.sources) + "; " + shown]
        }
        return OtherSystems.documentedSection(
            heading: heading,
            intro: "Binding beside a service is not the only way. These need more privilege than a bind, or the service's own user, and each row rests on its cited sources and is \(OtherSystems.marker), except where it links a scenario.",
            columns: ["Way", "What it does", "Who can use it", "Sources"], rows: rows)
    }
}
