/// The few shapes a scenario's names take, each checked over the whole text by a scan of its
/// bytes. `pattern` is the same rule as a regular expression, for error messages; the scan
/// needs no regex engine, which cost a Foundation program more than the parsing it guarded.
public struct TextPattern: Sendable {
    public let pattern: String
    private let test: @Sendable ([UInt8]) -> Bool

    private init(_ pattern: String, _ test: @escaping @Sendable ([UInt8]) -> Bool) {
        self.pattern = pattern
        self.test = test
    }

    /// Whether all of `text` has the shape; a line break anywhere fails it.
    public func matches(_ text: String) -> Bool { test(Array(text.utf8)) }

    /// A scenario's name: lowercase letters and digits in runs joined by single hyphens.
    public static let scenarioName = TextPattern("^[a-z0-9]+(-[a-z0-9]+)*$") { bytes in
        runs(bytes, separator: UInt8(ascii: "-")) { isLower($0) || isDigit($0) }
    }

    /// A socket's or a probe's id: a lowercase letter, then lowercase letters, digits and hyphens.
    public static let identifier = TextPattern("^[a-z][a-z0-9-]*$") { bytes in
        guard let first = bytes.first, isLower(first) else { return false }
        return bytes.dropFirst().allSatisfy { isLower($0) || isDigit($0) || $0 == UInt8(ascii: "-") }
    }

    /// A network device's name: 1 to 15 letters, digits, dots, underscores and hyphens.
    public static let device = TextPattern("^[A-Za-z0-9._-]{1,15}$") { bytes in
        (1...15).contains(bytes.count) && bytes.allSatisfy { isLetter($0) || isDigit($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    /// A host name: a letter first, then labels of letters, digits and hyphens joined by single dots.
    public static let hostName = TextPattern("^[A-Za-z][A-Za-z0-9-]*(\\.[A-Za-z0-9-]+)*$") { bytes in
        guard let first = bytes.first, isLetter(first) else { return false }
        return runs(bytes, separator: UInt8(ascii: ".")) { isLetter($0) || isDigit($0) || $0 == UInt8(ascii: "-") }
    }

    /// A Debian package's name: a lowercase letter or digit, then lowercase letters, digits, + - and dots.
    public static let packageName = TextPattern("^[a-z0-9][a-z0-9+.-]+$") { bytes in
        guard bytes.count >= 2, let first = bytes.first, isLower(first) || isDigit(first) else { return false }
        return bytes.allSatisfy { isLower($0) || isDigit($0) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
    }

    /// A file's name within the run's folder: letters, digits, dots, underscores and hyphens, not starting with a dot.
    public static let fileName = TextPattern("^[A-Za-z0-9_-][A-Za-z0-9._-]*$") { bytes in
        guard let first = bytes.first, first != UInt8(ascii: ".") else { return false }
        return bytes.allSatisfy { isLetter($0) || isDigit($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    /// Non-empty runs of bytes that pass `allowed`, joined by single separators.
    private static func runs(_ bytes: [UInt8], separator: UInt8, allowed: (UInt8) -> Bool) -> Bool {
        var runLength = 0
        for byte in bytes {
            if byte == separator {
                guard runLength > 0 else { return false }
                runLength = 0
            } else {
                guard allowed(byte) else { return false }
                runLength += 1
            }
        }
        return runLength > 0
    }

    private static func isLower(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") }
    private static func isLetter(_ byte: UInt8) -> Bool { isLower(byte) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) }
    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
}
