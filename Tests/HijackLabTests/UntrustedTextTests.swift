import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

@Suite("Untrusted text is inert in terminals and Markdown")
struct UntrustedTextTests {
    /// A process name that clears the screen, turns the text red and starts a forged line.
    /// It is exactly 15 bytes, the most the kernel keeps of a process name.
    static let hostileName = "\u{1b}[2J\u{1b}[31mX\n[ala"
    static let hostileNameShown = "\\x1b[2J\\x1b[31mX\\n[ala"

    @Test("terminal shows every control and reordering character as an escape", arguments: [
        ("\u{1b}[2J", "\\x1b[2J"),
        ("a\rb", "a\\rb"),
        ("a\nb\tc", "a\\nb\\tc"),
        ("\u{0}", "\\x00"),
        ("\u{7f}", "\\x7f"),
        ("\u{9b}31m", "\\x9b31m"),
        ("abc\u{202e}gpj.exe", "abc\\u{202e}gpj.exe"),
        ("\u{2066}x\u{2069}", "\\u{2066}x\\u{2069}"),
        ("back\\slash", "back\\\\slash"),
        // A name that spells an escape is not shown as one that holds the byte.
        ("\\x1b", "\\\\x1b"),
        ("| <script>alert(1)</script>", "| <script>alert(1)</script>"),
        ("- item", "- item"),
        ("1. item", "1. item"),
        ("  leading spaces", "  leading spaces"),
        ("é 日本 SO_REUSEADDR [::]", "é 日本 SO_REUSEADDR [::]"),
    ])
    func terminal(input: String, shown: String) {
        let escaped = UntrustedText.terminal(input)
        #expect(escaped == shown)
        #expect(escaped.unicodeScalars.allSatisfy { !UntrustedText.isControl($0) })
    }

    @Test("markdown leaves nothing that opens a block, a span, a link or HTML", arguments: [
        ("## x", "\\#\\# x"),
        ("```swift", "\\`\\`\\`swift"),
        ("~~~", "\\~\\~\\~"),
        ("a | b", "a \\| b"),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("&lt;", "&amp;lt;"),
        ("> quoted", "&gt; quoted"),
        ("- item", "\\- item"),
        ("+ item", "\\+ item"),
        ("= underline", "\\= underline"),
        ("1. item", "1\\. item"),
        ("12) item", "12\\) item"),
        ("   leading spaces ", "leading spaces"),
        // As in the terminal, a backslash reads doubled (and each half is escaped for Markdown).
        ("back\\slash", "back\\\\\\\\slash"),
        ("*bold* and _emphasis_", "\\*bold\\* and \\_emphasis\\_"),
        ("$x^2$", "\\$x^2\\$"),
        ("[click](http://example.com)", "\\[click\\](http://example.com)"),
        ("see [x][ref] and [y](/u)", "see [x\\][ref] and [y\\](/u)"),
        // A reference definition must start its paragraph: the leading bracket is escaped.
        ("[ref]: /u", "\\[ref]: /u"),
        ("[ ] a task box", "\\[ ] a task box"),
        ("ends with [x]", "ends with [x\\]"),
        ("one\ntwo\r\nthree\rfour", "one two three four"),
        ("# one\n# two", "\\# one \\# two"),
        ("\u{1b}[2J", "\\\\x1b[2J"),
        ("\u{9b}", "\\\\x9b"),
        ("\u{7f}", "\\\\x7f"),
        ("right\u{202e}left", "right\\\\u{202e}left"),
        // Ordinary prose stays as it is: an underscore inside a word and brackets that form no link.
        ("SO_REUSEADDR on 0.0.0.0:PORT and [::]:PORT, IPV6_V6ONLY", "SO_REUSEADDR on 0.0.0.0:PORT and [::]:PORT, IPV6_V6ONLY"),
        ("the [::] socket", "the [::] socket"),
    ])
    func markdown(input: String, escaped expected: String) {
        let escaped = UntrustedText.markdown(input)
        #expect(escaped == expected)
        #expect(!escaped.contains("\n") && !escaped.contains("<") && !escaped.contains(">"))
        #expect(escaped.unicodeScalars.allSatisfy { !UntrustedText.isControl($0) })
        // Every pipe and backtick is preceded by an odd number of backslashes: escaped.
        for (index, character) in escaped.enumerated() where character == "|" || character == "`" {
            let backslashes = escaped.prefix(index).reversed().prefix { $0 == "\\" }.count
            #expect(backslashes % 2 == 1, "unescaped \(character) in \(escaped)")
        }
    }

    @Test("A code span holds plain text; text a code span cannot hold is written as escaped running text", arguments: [
        ("Linux 6.18.44-fc", "`Linux 6.18.44-fc`"),
        ("sockets[0].role", "`sockets[0].role`"),
        ("a\u{1b}b\nc", "`a\\x1bb\\nc`"),
        ("a`b", "a\\`b"),
        ("a|b", "a\\|b"),
        (" padded", "padded"),
    ])
    func markdownCode(input: String, written: String) {
        #expect(UntrustedText.markdownCode(input) == written)
    }

    @Test("A fence is longer than any backtick run inside it, and its lines hold no control character")
    func fence() {
        #expect(UntrustedText.markdownFence(["plain"]) == "```\nplain\n```")
        #expect(UntrustedText.markdownFence(["```", "a ````` b"], info: "text") == "``````text\n```\na ````` b\n``````")
        #expect(UntrustedText.markdownFence(["a\u{1b}[2J"]) == "```\na\\x1b[2J\n```")
        // Text already escaped for the terminal passes unchanged.
        let escaped = UntrustedText.terminal("x\\y\u{1b}")
        #expect(UntrustedText.markdownFence([escaped]) == "```\n\(escaped)\n```")
    }

    @Test("show and the progress line escape a scenario's free text and a run's error")
    func scenarioText() throws {
        let path = "\(TestLab.scenariosDirectory)/udp-plain.json"
        var document = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        document["title"] = "T\u{1b}[2J"
        document["story"] = "Story.\n[alarm] forged\r\u{9b}31m"
        document["lesson"] = "L\u{202e}"
        let scenario = try ScenarioFile.parse(try JSONSerialization.data(withJSONObject: document), file: "udp-plain.json")
        let shown = ScenarioText.explain(scenario)
        #expect(shown.unicodeScalars.allSatisfy { !UntrustedText.isControl($0) || $0 == "\n" })
        #expect(shown.contains("udp-plain: T\\x1b[2J") && shown.contains("Story.\\n[alarm] forged\\r\\x9b31m") && shown.contains("Lesson: L\\u{202e}"))
        #expect(!shown.split(separator: "\n").contains { $0.hasPrefix("[alarm]") })
        var outcome = ReportTests.fixedReport().scenarios[0]
        outcome.status = .error
        outcome.error = "agent said \u{1b}[2J\nhijacked"
        let line = ScenarioText.progressLine(outcome, index: 1, of: 1, milliseconds: 5)
        #expect(!line.contains("\n") && !line.unicodeScalars.contains("\u{1b}") && line.hasSuffix("agent said \\x1b[2J\\nhijacked"))
    }

    /// Two sockets whose owner, user and device names are hostile, audited by the real rules.
    static func hostileAudit() -> AuditReport {
        let victim = AuditSocket(transport: .tcp, address: "0.0.0.0", port: 8080, uid: 0, user: "root", inode: 1,
                                 owners: [SocketOwner(pid: 10, command: "nginx")])
        let intruder = AuditSocket(transport: .tcp, address: "127.0.0.1", port: 8080, uid: 1000, user: "mal\u{1b}[0mlory", inode: 2,
                                   owners: [SocketOwner(pid: 11, command: "x\n[alarm] forged")], device: "e\u{1b}[8m")
        let sockets = [victim, intruder]
        return AuditReport(namespace: "net:[1]", sockets: sockets, findings: Audit.findings(sockets), ownersComplete: true, skippedRows: 0)
    }

    @Test("Hostile names in the audit table and in finding explanations are escaped; the report keeps them raw for the JSON")
    func auditTextEscapes() throws {
        let report = Self.hostileAudit()
        let finding = try #require(report.findings.first { $0.kind == .interception })
        #expect(finding.explanation.contains("pid 11/x\n[alarm] forged"))
        let text = AuditText.render(report)
        #expect(!text.unicodeScalars.contains("\u{1b}"))
        #expect(!text.split(separator: "\n").contains { $0.hasPrefix("[alarm] forged") })
        #expect(text.contains("11/x\\n[alarm] forged"))
        #expect(text.contains("1000/mal\\x1b[0mlory"))
        #expect(text.contains("127.0.0.1%e\\x1b[8m"))
        // The substitution of report names still finds the raw name in the explanation.
        let named = AuditText.render(report, name: { "sock-\($0.pid) (\($0.command))" })
        #expect(named.contains("sock-11 (x\\n[alarm] forged)"))
        #expect(!named.contains("pid 11/"))
        let json = String(decoding: try JSONEncoder().encode(report), as: UTF8.self)
        #expect(json.contains("x\\n[alarm] forged") && json.contains("\\u001b"))
    }

    @Test("The live audit in REPORT.md cannot leave its fence")
    func liveAuditFence() throws {
        var audit = Self.hostileAudit()
        audit.sockets[1].owners[0].command = "```\n## owned"
        var report = ReportTests.fixedReport()
        report.scenarios[0].audit = audit
        let text = MarkdownReport.render(report)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(!lines.contains { $0.hasPrefix("## owned") })
        #expect(!text.unicodeScalars.contains("\u{1b}"))
        // The block's fence is longer than the name's run of three backticks, and holds it.
        let open = try #require(lines.firstIndex(of: "````"))
        let close = try #require(lines[(open + 1)...].firstIndex(of: "````"))
        #expect(lines[open..<close].contains { $0.contains("```\\n## owned") })
    }

    @Test("A story that holds a heading and a fence adds neither to REPORT.md")
    func storyCannotAddStructure() {
        let control = MarkdownReport.render(ReportTests.fixedReport())
        var hostile = ReportTests.fixedReport()
        hostile.scenarios[0].title = "Title </b><script>alert(1)</script>"
        hostile.scenarios[0].story = "Intro.\n## x\n```\nswallowed\n\n| a | b |\n|---|---|\n<div>html</div>"
        hostile.scenarios[0].lesson = "- a list\n> a quote"
        hostile.scenarios[0].differences.append("# also a heading | with a pipe")
        hostile.scenarios[1].skipReason = "```"
        let text = MarkdownReport.render(hostile)
        let headings = { (text: String) in text.split(separator: "\n").filter { $0.hasPrefix("#") } }
        let fences = { (text: String) in text.split(separator: "\n").filter { $0.hasPrefix("```") || $0.hasPrefix("~~~") } }
        #expect(headings(text) == headings(control))
        #expect(fences(text) == fences(control))
        #expect(!text.contains("<script") && !text.contains("<div") && !text.contains("</b>"))
        #expect(!text.split(separator: "\n").contains { $0 == "|---|---|" || $0 == "| a | b |" })
        #expect(!text.split(separator: "\n").contains { $0.hasPrefix(">") || $0.hasPrefix("- a list") })
        #expect(text.contains("Intro. \\#\\# x \\`\\`\\` swallowed  \\| a \\| b \\|"))
    }

    @Test("The audit of a live process named with ESC and a newline prints no ESC and no forged line")
    func liveHostileProcessName() throws {
        var template = Array((FileManager.default.temporaryDirectory.path + "/hijack-lab-name-XXXXXX").utf8CString)
        let directory = try #require(template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let made = mkdtemp(buffer.baseAddress!) else { return nil }
            return String(cString: made)
        })
        let link = directory + "/" + Self.hostileName
        defer {
            unlink(link)
            rmdir(directory)
        }
        try #require(symlink(TestLab.agentExecutable, link) == 0, "symlink: errno \(errno)")
        let agent = try AgentClient(executable: link, id: "x", timeout: 5)
        defer { agent.kill() }
        try agent.awaitReady()
        let port = try Topology.freeHostPort(for: .tcp)
        let calls = try agent.calls(.open(SocketRequest(transport: .tcp, address: "127.0.0.1", port: port), listen: true))
        let listened = calls.last
        try #require(listened?.call == "listen" && listened?.result == .ok, "\(calls)")

        let report = Audit.run(port: port)
        let socket = try #require(report.sockets.first { $0.owners.contains { $0.pid == agent.pid } })
        // The kernel's own name for the process, read back from /proc: the hostile bytes are real.
        #expect(socket.owners.first { $0.pid == agent.pid }?.command == Self.hostileName)

        for text in [AuditText.render(report), MarkdownReport.liveAudit(report, scenario: ReportTests.fixedReport().scenarios[0])] {
            #expect(!text.utf8.contains(0x1b))
            #expect(text.contains(Self.hostileNameShown))
            #expect(!text.split(separator: "\n").contains { $0.hasPrefix("[ala") })
        }
    }
}
