import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation

/// One public source behind a documented claim: a manual page, a vendor page, a commit
/// or a kernel source file that can be read at that address.
public struct Citation: Sendable, Equatable {
    public let title: String
    public let url: String
}

/// What another operating system documents about the case this lab runs on Linux: a second
/// socket bound to a more specific address beside a socket on the wildcard address.
///
/// Nothing here is run or measured. Each claim rests on the cited sources alone and is
/// worded in this project's own sentences; the Linux side names the lab scenarios that
/// show the Linux result with real system calls.
public struct DocumentedBehaviour: Sendable {
    public enum System: String, Sendable, CaseIterable {
        case bsd = "FreeBSD and macOS"
        case freeBSD = "FreeBSD"
        case macOS = "macOS"
        case windows = "Windows"
    }

    public let system: System
    /// What the system's sources say, in one or two sentences.
    public let claim: String
    /// How Linux differs or agrees, as the lab's scenarios show it.
    public let linuxComparison: String
    /// Scenario names whose sections show the Linux side; linked only when the run has them.
    public let linuxScenarios: [String]
    public let sources: [Citation]
}

/// The "Other systems" section of REPORT.md: documented behaviour of FreeBSD, macOS and
/// Windows, set against what the lab measured on Linux.
///
/// The text is the project's own, not read from any file at run time, so it is written into
/// the Markdown as it is. It must hold no `|` or line break, because each entry is one
/// table row; the tests check that.
public enum OtherSystems {
    public static let heading = "## Other systems (documented, not run here)"
    public static let marker = "documented, not run here"

    static let freeBSDSetsockopt = Citation(
        title: "FreeBSD setsockopt(2)",
        url: "https://man.freebsd.org/cgi/man.cgi?setsockopt(2)")
    static let freeBSDInPcb = Citation(
        title: "FreeBSD sys/netinet/in_pcb.c",
        url: "https://github.com/freebsd/freebsd-src/blob/main/sys/netinet/in_pcb.c")
    static let xnuInPcb = Citation(
        title: "Apple xnu bsd/netinet/in_pcb.c",
        url: "https://github.com/apple-oss-distributions/xnu/blob/0f4c859e951fba394238ab619495c4e1d54d0f34/bsd/netinet/in_pcb.c")
    static let darwinGetsockopt = Citation(
        title: "macOS getsockopt(2), from Apple's darwin-xnu",
        url: "https://github.com/apple/darwin-xnu/blob/main/bsd/man/man2/getsockopt.2")
    static let freeBSDReuseportLBCommit = Citation(
        title: "FreeBSD r334719, SO_REUSEPORT_LB",
        url: "https://reviews.freebsd.org/rS334719")
    static let libcReuseportLB = Citation(
        title: "rust-lang/libc #1078 (FreeBSD 12 has SO_REUSEPORT_LB)",
        url: "https://github.com/rust-lang/libc/pull/1078")
    static let microsoftReuse = Citation(
        title: "Microsoft, Using SO_REUSEADDR and SO_EXCLUSIVEADDRUSE",
        url: "https://learn.microsoft.com/en-us/windows/win32/WinSock/using-so-reuseaddr-and-so-exclusiveaddruse")
    static let microsoftBindChanges = Citation(
        title: "Microsoft Windows networking blog, Changes in Socket Bind (2005)",
        url: "https://blogs.msdn.microsoft.com/wndp/2005/09/29/changes-in-socket-bind/")

    public static let entries: [DocumentedBehaviour] = [
        DocumentedBehaviour(
            system: .bsd,
            claim: "A bind to 127.0.0.1:P beside a socket on 0.0.0.0:P succeeds when the new socket sets SO_REUSEADDR (or SO_REUSEPORT); the wildcard socket needs no option. "
                + "With that option bind() only looks for a socket on exactly the same address, so the wildcard one is no conflict; without it the bind fails with EADDRINUSE. "
                + "Connections to 127.0.0.1:P then reach the new socket: xnu's lookup takes an exact local address before the wildcard.",
            linuxComparison: "Linux refuses this bind with EADDRINUSE while 0.0.0.0:P listens, even with SO_REUSEADDR on both sockets; only SO_REUSEPORT on both sockets of one uid lets it through.",
            linuxScenarios: ["wildcard-then-loopback-reuseaddr", "wildcard-then-loopback-reuseport"],
            sources: [freeBSDInPcb, xnuInPcb]),
        DocumentedBehaviour(
            system: .bsd,
            claim: "Unless the caller is root (on FreeBSD: holds PRIV_NETINET_REUSEPORT), its bind fails with EADDRINUSE when the overlapping socket belongs to another uid, whatever SO_REUSEADDR or SO_REUSEPORT settings either socket has, for TCP and UDP alike. "
                + "So the bind above works only for the same user or for root.",
            linuxComparison: "Linux has the same uid rule for SO_REUSEPORT and refuses other users on TCP whatever the options; for UDP, Linux SO_REUSEADDR has no uid rule at all.",
            linuxScenarios: ["reuseport-other-user", "udp-reuseaddr-other-user"],
            sources: [freeBSDInPcb, xnuInPcb]),
        DocumentedBehaviour(
            system: .bsd,
            claim: "Two sockets on exactly the same address and port conflict at bind() unless both set SO_REUSEPORT; SO_REUSEADDR alone does not make an exact duplicate legal, and the second bind fails with EADDRINUSE.",
            linuxComparison: "Linux lets two SO_REUSEADDR sockets bind the port while neither listens, and refuses the second listen() with EADDRINUSE instead.",
            linuxScenarios: ["reuseaddr-bind-both-then-listen"],
            sources: [freeBSDInPcb, xnuInPcb]),
        DocumentedBehaviour(
            system: .freeBSD,
            claim: "Plain SO_REUSEPORT allows completely duplicate bindings when every socket sets it before bind(); the manual presents it for programs that each receive multicast or broadcast datagrams and describes no load balancing.",
            linuxComparison: "Linux SO_REUSEPORT also needs the option on every socket, and in addition spreads connections over a group of same-uid sockets.",
            linuxScenarios: ["reuseport-same-address"],
            sources: [freeBSDSetsockopt]),
        DocumentedBehaviour(
            system: .freeBSD,
            claim: "SO_REUSEPORT_LB (added by r334719, available from FreeBSD 12) allows duplicate bindings when every socket sets it and spreads incoming TCP connections and UDP datagrams over the group by a hash of the local port and the foreign address and port; a group holds at most 256 sockets.",
            linuxComparison: "This is the counterpart of Linux SO_REUSEPORT, which the lab shows sharing one port's connections between two listeners.",
            linuxScenarios: ["reuseport-same-address"],
            sources: [freeBSDSetsockopt, freeBSDReuseportLBCommit, libcReuseportLB]),
        DocumentedBehaviour(
            system: .macOS,
            claim: "SO_REUSEPORT keeps the BSD meaning: an exact duplicate binding needs the option on every socket, the first one included, set before bind(); the manual ties it to multicast and broadcast receivers and describes no load balancing. "
                + "A specific address beside a wildcard needs only SO_REUSEADDR on the new socket, as in the first row.",
            linuxComparison: "Linux also needs SO_REUSEPORT on every socket for two live listeners to overlap, and limits it to one uid.",
            linuxScenarios: ["wildcard-then-loopback-reuseport", "reuseport-same-address"],
            sources: [darwinGetsockopt, xnuInPcb]),
        DocumentedBehaviour(
            system: .windows,
            claim: "On Windows Server 2003 and later, with both binds under the same user account, a specific bind beside a wildcard bind on the same port succeeds with no options on either socket, and also with SO_REUSEADDR on the second; Microsoft keeps the same-account exception for backward compatibility. "
                + "The wildcard socket then serves every local address except the specific one.",
            linuxComparison: "Linux refuses the same pair with EADDRINUSE when neither socket sets an option.",
            linuxScenarios: ["wildcard-then-loopback-plain"],
            sources: [microsoftReuse, microsoftBindChanges]),
        DocumentedBehaviour(
            system: .windows,
            claim: "On Windows Server 2003 and later, when the binds come from different user accounts, the specific bind beside a wildcard fails with WSAEACCES unless the wildcard socket set SO_REUSEADDR and the second socket sets SO_REUSEADDR too; "
                + "so there the service's own SO_REUSEADDR is what lets another account in.",
            linuxComparison: "Linux TCP refuses another user whatever either socket sets.",
            linuxScenarios: ["reuseaddr-other-user"],
            sources: [microsoftReuse]),
        DocumentedBehaviour(
            system: .windows,
            claim: "If the wildcard socket set SO_EXCLUSIVEADDRUSE, every later specific bind on its port fails with WSAEACCES, for the same account as well; Microsoft tells every server application to set it. "
                + "On Windows XP and earlier only members of Administrators could set this option.",
            linuxComparison: "Linux has no such option; a listening 0.0.0.0 socket without SO_REUSEPORT already keeps later IPv4 TCP binds on its port out, with EADDRINUSE.",
            linuxScenarios: ["wildcard-then-loopback-plain"],
            sources: [microsoftReuse]),
        DocumentedBehaviour(
            system: .windows,
            claim: "On Windows XP and earlier, before the account checks of enhanced socket security, a specific bind beside a wildcard failed with WSAEADDRINUSE unless the second socket set SO_REUSEADDR, which then succeeded unless the first socket had SO_EXCLUSIVEADDRUSE; Microsoft calls this hijacking the port. "
                + "SO_REUSEADDR needs no privilege.",
            linuxComparison: "Linux TCP refuses the bind with EADDRINUSE even with SO_REUSEADDR on both sockets.",
            linuxScenarios: ["wildcard-then-loopback-reuseaddr"],
            sources: [microsoftReuse]),
    ]

    /// The article names no system. This reading compares its two claims with the rules above;
    /// it is an inference from documents, not a measurement.
    static let articleReading = "**Which system the seed article described** (inferred from the rows above: documented, not run here). "
        + "The article names none and makes two claims. "
        + "First, that two SO_REUSEADDR sockets may both bind one port and the second then fails at listen(): that is what Linux does, as the lab shows, while the FreeBSD and macOS sources check at bind(), where an exact duplicate already fails, and Windows accepts both binds. "
        + "Second, that a process may bind 127.0.0.1 or an interface address beside a 0.0.0.0 listener and take its connections: Linux TCP refuses that with SO_REUSEADDR, "
        + "FreeBSD and macOS allow it to the same user or root with SO_REUSEADDR on the intruder's socket alone, "
        + "and Windows allows it to the same account even with no options, to any account when both sockets set SO_REUSEADDR, and on XP and earlier to any process that set SO_REUSEADDR. "
        + "Its framing, that the service's own SO_REUSEADDR is the risk, fits Windows best, and Microsoft's page calls the result hijacking; BSD-derived systems fit next. "
        + "The article most likely repeats a Windows or BSD warning beside a Linux observation."

    /// The section as Markdown: a heading, one sentence, a table with one row per entry and
    /// the reading of the article. A scenario becomes a link only when `scenarioExists` says
    /// the report has a section with that name, so no link points at nothing.
    public static func markdownSection(scenarioExists: (String) -> Bool) -> String {
        let rows = entries.map { entry in
            let linked = entry.linuxScenarios.filter(scenarioExists).map { "[\($0)](#\($0))" }
            let linux = entry.linuxComparison + (linked.isEmpty ? "" : " See " + linked.joined(separator: ", ") + ".")
            return [entry.system.rawValue, entry.claim, linux, citations(entry.sources) + "; " + marker]
        }
        return documentedSection(heading: heading,
                                 intro: "What FreeBSD, macOS and Windows document for a specific bind beside a wildcard bind on one port, set against this lab's Linux results; each row rests on its cited sources and is \(marker).",
                                 columns: ["System", "Documented behaviour", "Linux, as run by this lab", "Sources"], rows: rows, after: articleReading)
    }

    /// Sources as Markdown links, `; ` between them.
    static func citations(_ sources: [Citation]) -> String {
        sources.map { "[\($0.title)](\($0.url))" }.joined(separator: "; ")
    }

    /// A section of documented (not run) rows: heading, one sentence, the table, and an
    /// optional closing paragraph.
    static func documentedSection(heading: String, intro: String, columns: [String], rows: [[String]], after: String? = nil) -> String {
        var lines = [heading, "", intro, ""]
        lines.append("| " + columns.joined(separator: " | ") + " |")
        lines.append("|" + String(repeating: "---|", count: columns.count))
        for row in rows { lines.append("| " + row.joined(separator: " | ") + " |") }
        lines.append("")
        if let after { lines += [after, ""] }
        return lines.joined(separator: "\n")
    }
}
