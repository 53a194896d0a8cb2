import Foundation
import Testing
@testable import HijackLab

/// The byte scans that check a scenario's names against the regular expressions they stand
/// for, on every short string over an alphabet that reaches each rule's edges.
@Suite struct TextPatternTests {
    static let patterns: [TextPattern] = [.scenarioName, .identifier, .device, .hostName]

    /// Every string of up to four characters over `alphabet`, and a few longer ones.
    static func samples(_ alphabet: [String]) -> [String] {
        var all = [""]
        var level = [""]
        for _ in 0..<4 {
            level = level.flatMap { prefix in alphabet.map { prefix + $0 } }
            all += level
        }
        return all + ["a" + String(repeating: "b", count: 14), "a" + String(repeating: "b", count: 15), "web-1.lab", "localhost", "x\n"]
    }

    @Test("each pattern's scan agrees with its regular expression matched over the whole text", arguments: patterns)
    func agreesWithRegex(_ pattern: TextPattern) throws {
        let regex = try NSRegularExpression(pattern: pattern.pattern)
        for text in Self.samples(["a", "Z", "0", "-", ".", "_", "\n", "é"]) {
            let whole = NSRange(text.startIndex..<text.endIndex, in: text)
            let expected = regex.firstMatch(in: text, options: [.anchored], range: whole).map { $0.range == whole } ?? false
            // ICU's $ also matches before a final line break; the scan, like the old check of the whole range, never does.
            #expect(pattern.matches(text) == (expected && !text.contains("\n")), "\(pattern.pattern) on \(text.debugDescription)")
        }
    }
}
