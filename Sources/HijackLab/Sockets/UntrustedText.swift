/// Text the lab did not write itself: scenario files, /proc (process, user and device names),
/// paths. It is made inert before it reaches a terminal or a Markdown file, so that a
/// process named "\u{1b}[2J" cannot clear an operator's screen and a story holding "## x"
/// cannot add a heading to a report.
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
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            default:
                if isControl(scalar) {
                    let hex = String(scalar.value, radix: 16)
                    escaped += scalar.value < 0x100 ? "\\x" + (hex.count < 2 ? "0" + hex : hex) : "\\u{\(hex)}"
                } else {
                    escaped.unicodeScalars.append(scalar)
                }
            }
        }
        return escaped
    }

    /// C0 and C1 controls, DEL, and the format characters that change how the text
    /// around them is displayed (bidi embeddings, overrides and isolates, marks).
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1f, 0x7f...0x9f: true
        case 0x200e, 0x200f, 0x061c, 0x202a...0x202e, 0x2066...0x2069: true
        default: false
        }
    }

    /// For Markdown running text, in a paragraph or a table cell: nothing in it can open a
    /// heading, a list, a fence or code span, a link, HTML, or end a table cell. Line breaks
    /// become spaces, so the text stays in the one block it was put in.
    public static func markdown(_ text: String) -> String {
        let flat = terminal(text.replacingOccurrences(of: "\r\n", with: " ")
            .replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " "))
        var escaped = ""
        escaped.reserveCapacity(flat.utf8.count)
        for character in flat {
            switch character {
            case "\\", "`", "*", "_", "[", "]", "|", "#", "~", "!":
                escaped += "\\\(character)"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "&": escaped += "&amp;"
            default: escaped.append(character)
            }
        }
        // At the start of a block, these would make a list item, a quote or an indented
        // code block; leading spaces are dropped and a leading marker is escaped.
        let trimmed = escaped.drop { $0 == " " }
        if let first = trimmed.first, "-+=".contains(first) { return "\\" + trimmed }
        if let dot = trimmed.firstIndex(where: { !$0.isASCII || !$0.isNumber }),
           dot != trimmed.startIndex, trimmed[dot] == "." || trimmed[dot] == ")" {
            return trimmed[..<dot] + "\\" + trimmed[dot...]
        }
        return String(trimmed)
    }
}
