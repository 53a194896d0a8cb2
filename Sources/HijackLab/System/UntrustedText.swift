/// Text the lab did not write itself: scenario files, /proc (process, user and device names),
/// paths. It is made inert before it reaches a terminal or a Markdown file, so that a
/// process named "\u{1b}[2J" cannot clear an operator's screen and a story holding "## x"
/// cannot add a heading to a report.
///
/// The JSON output keeps such text raw: JSON has its own escaping, and a reader of it wants
/// the exact bytes. Only the renderers for people call these functions, once, on the way out.
public enum UntrustedText {
    /// For a terminal: every control character, and the invisible characters that reorder
    /// text (bidi overrides), is shown as an escape such as `\x1b`, `\n` or `\u{202e}`.
    /// A backslash is doubled, so a name that spells `\x1b` cannot pass for one that holds ESC.
    public static func terminal(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": escaped += "\\\\"
            default: escaped += visible(scalar)
            }
        }
        return escaped
    }

    /// A scalar as the terminal may show it: itself, or an escape for a control character.
    package static func visible(_ scalar: Unicode.Scalar) -> String {
        switch scalar {
        case "\n": return "\\n"
        case "\r": return "\\r"
        case "\t": return "\\t"
        default:
            guard isControl(scalar) else { return String(scalar) }
            let hex = String(scalar.value, radix: 16)
            return scalar.value < 0x100 ? "\\x" + (hex.count < 2 ? "0" + hex : hex) : "\\u{\(hex)}"
        }
    }

    /// C0 and C1 controls, DEL, and the format characters that change how the text
    /// around them is displayed (bidi embeddings, overrides and isolates, marks).
    package static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1f, 0x7f...0x9f: true
        case 0x200e, 0x200f, 0x061c, 0x202a...0x202e, 0x2066...0x2069: true
        default: false
        }
    }

    /// For Markdown running text, in a paragraph, a list item or a table cell: nothing in it
    /// can open a heading, a list, a quote, a fence or code span, a link or image, HTML, an
    /// entity, emphasis, math, or end a table cell. Line breaks become spaces, so the text
    /// stays in the one block it was put in; other controls, and backslashes, are shown as by
    /// `terminal` (a backslash reads doubled, so a story that spells `\x1b` is told from ESC).
    ///
    /// What cannot do harm is left as it is, so ordinary prose reads the same in the file as
    /// on GitHub: an underscore inside a word (`SO_REUSEADDR`; CommonMark never reads one
    /// between two letters or digits as emphasis), and brackets that cannot form a link
    /// (`[::]`; a link needs `](` or `][`, a reference definition a `[` that starts its
    /// paragraph, and nothing here defines a shortcut `[x]`). A bare URL may still be shown
    /// as a link by GitHub; it leads where its text says. Markdown the
    /// text holds on purpose, such as a code span, is shown as its characters, not rendered.
    public static func markdown(_ text: String) -> String {
        let flat = Array(terminal(text.replacing("\r\n", with: " ")
            .replacing("\n", with: " ").replacing("\r", with: " ")))
        var escaped = ""
        escaped.reserveCapacity(flat.count)
        let isWordCharacter = { (index: Int) -> Bool in
            flat.indices.contains(index) && (flat[index].isLetter || flat[index].isNumber)
        }
        for (index, character) in flat.enumerated() {
            switch character {
            case "\\", "`", "*", "|", "#", "~", "$":
                escaped += "\\\(character)"
            case "_" where !(isWordCharacter(index - 1) && isWordCharacter(index + 1)):
                escaped += "\\_"
            // The text's end counts as a following "(": the report may write anything after it.
            case "]" where index + 1 == flat.count || "([".contains(flat[index + 1]):
                escaped += "\\]"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "&": escaped += "&amp;"
            default: escaped.append(character)
            }
        }
        // At the start of a block, these would make a list item (or, after one, a task box),
        // a setext underline or an indented code block: leading and trailing spaces are
        // dropped, and a leading marker is escaped.
        var trimmed = Substring(escaped).drop { $0 == " " }
        while trimmed.last == " " { trimmed = trimmed.dropLast() }
        if let first = trimmed.first, "-+=[".contains(first) { return "\\" + trimmed }
        if let dot = trimmed.firstIndex(where: { !$0.isASCII || !$0.isNumber }),
           dot != trimmed.startIndex, trimmed[dot] == "." || trimmed[dot] == ")" {
            return trimmed[..<dot] + "\\" + trimmed[dot...]
        }
        return String(trimmed)
    }

    /// For a Markdown code span, such as a kernel release or a field path: the text between
    /// backticks, shown as by `terminal` on one line. A code span cannot hold a `|` in a table
    /// cell, nor a backtick without a longer delimiter, so text with either is written as
    /// escaped running text (`markdown`) instead: it reads the same, only not in code font.
    public static func markdownCode(_ text: String) -> String {
        let line = terminal(text)
        guard !line.isEmpty, !line.contains("`"), !line.contains("|"), line.first != " ", line.last != " " else { return markdown(text) }
        return "`\(line)`"
    }

    /// A fenced code block around lines that hold untrusted text (the live audit in REPORT.md).
    ///
    /// The rule: the content is shown as by `terminal` (no control characters, so no line can
    /// be forged or hidden), and the fence is a run of backticks longer than any run of
    /// backticks in the content. CommonMark closes a fence only with a run at least as long
    /// as the opening one, so no line of the content can close it, and nothing in the
    /// content needs to be altered to stay inside. Lines the caller already escaped for the
    /// terminal (AuditText's output) have no control characters left, and pass unchanged.
    public static func markdownFence(_ lines: [String], info: String = "") -> String {
        let safe = lines.map { line in line.unicodeScalars.map(visible).joined() }
        var longest = 0
        for line in safe {
            var run = 0
            for character in line {
                run = character == "`" ? run + 1 : 0
                longest = max(longest, run)
            }
        }
        let fence = String(repeating: "`", count: max(3, longest + 1))
        return ([fence + info] + safe + [fence]).joined(separator: "\n")
    }
}
