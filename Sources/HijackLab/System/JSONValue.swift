
/// A JSON document as the scenario parser reads it, kept generic so that validation can
/// name the exact field that is wrong and reject fields nobody reads.
package enum JSONValue: Sendable, Equatable {
    case string(String)
    /// Kept as written, so that a range error shows `1e400` and not what a Double made of it.
    case number(JSONNumber)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object(JSONObject)

    /// How a value is described in an error: `"SO_REUSE"`, `1e400`, `an object`.
    package var summary: String {
        switch self {
        case .string(let text): "\"\(text.count > 60 ? String(text.prefix(57)) + "..." : text)\""
        case .number(let number): number.text.count > 60 ? String(number.text.prefix(57)) + "..." : number.text
        case .bool(let flag): "\(flag)"
        case .null: "null"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// A JSON number in its decimal text, checked against RFC 8259's grammar by the parser.
package struct JSONNumber: Sendable, Equatable {
    package let text: String

    /// The value, if the text is a whole number written in decimal digits only (no sign,
    /// fraction or exponent: `1000`, not `1e3` or `1000.0`) and lies in `range`. Counts in a
    /// scenario are written the way people count; anything else is a mistake worth naming.
    package func wholeNumber(in range: ClosedRange<Int>) -> Int? {
        guard !text.isEmpty, text.utf8.count <= 18, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let value = Int(text), range.contains(value) else { return nil }
        return value
    }
}

/// An object's members in file order. Keys are unique: the parser refuses a repeated key,
/// because two values for one field leave the reader to guess which one the author meant.
package struct JSONObject: Sendable, Equatable {
    package struct Member: Sendable, Equatable {
        package let key: String
        package let value: JSONValue
    }

    package let members: [Member]
    private let index: [String: Int]

    package init(_ members: [Member]) {
        self.members = members
        var index: [String: Int] = [:]
        for (position, member) in members.enumerated() where index[member.key] == nil { index[member.key] = position }
        self.index = index
    }

    package var keys: [String] { members.map(\.key) }

    package subscript(key: String) -> JSONValue? {
        index[key].map { members[$0].value }
    }

    package static func == (lhs: JSONObject, rhs: JSONObject) -> Bool { lhs.members == rhs.members }
}

/// Why a document is not JSON, or not JSON this lab accepts, and where: 1-based line and
/// column (columns count characters, so a tab or an "é" is one column).
package struct JSONParseError: Error, Sendable, Equatable {
    package var line: Int
    package var column: Int
    /// The path to the member or element being read, like `sockets[1].address`; empty at the top.
    package var field: String
    package var expected: String
    package var found: String?
}

/// A strict RFC 8259 parser over a file's bytes. Strict, because a scenario file is evidence:
/// whatever a lenient parser guesses (a repeated key, a trailing comma, a lone surrogate)
/// would be a fact about the run that nobody wrote down.
///
/// Beyond the RFC, it bounds nesting (a hostile file cannot exhaust the stack) and refuses a
/// repeated key in one object.
package struct JSONParser {
    /// Arrays and objects inside one another; a scenario needs five (ScenarioLimits.nestingDepth).
    package static let maximumDepth = 64

    private enum PathComponent {
        case key(String)
        case index(Int)
    }

    private let bytes: [UInt8]
    private var offset = 0
    private var depth = 0
    private var path: [PathComponent] = []

    private init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    package static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        if let invalid = firstInvalidUTF8(bytes) {
            throw parser.error(at: invalid, expected: "UTF-8 text", found: "the byte 0x" + hex(bytes[invalid]) + ", which is not valid UTF-8 here")
        }
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            throw parser.error(at: 0, expected: "a JSON value (a scenario file starts without a byte order mark)", found: "U+FEFF, a byte order mark")
        }
        parser.skipWhitespace()
        let value = try parser.value()
        parser.skipWhitespace()
        if parser.offset < bytes.count {
            throw parser.error(expected: "the end of the file after the top-level value", found: parser.foundHere())
        }
        return value
    }

    // MARK: - Values

    private mutating func value() throws(JSONParseError) -> JSONValue {
        guard offset < bytes.count else { throw error(expected: "a JSON value", found: "the end of the file") }
        switch bytes[offset] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default:
            throw error(expected: Self.anyValue, found: isWordByte(bytes[offset]) ? word(from: offset) : foundHere())
        }
    }

    private static let anyValue = "a JSON value (an object, array, string, number, true, false or null)"

    private mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > Self.maximumDepth {
            throw error(expected: "at most \(Self.maximumDepth) nested arrays and objects", found: "level \(depth)")
        }
    }

    private mutating func object() throws(JSONParseError) -> JSONValue {
        try enter()
        offset += 1
        var members: [JSONObject.Member] = []
        // Where each key was first written, so that a repeat can point back at it.
        var seen: [String: Int] = [:]
        skipWhitespace()
        if peek(UInt8(ascii: "}")) {
            offset += 1
            depth -= 1
            return .object(JSONObject(members))
        }
        while true {
            guard peek(UInt8(ascii: "\"")) else {
                throw error(expected: members.isEmpty ? "a member name in double quotes, or '}'" : "a member name in double quotes after ','", found: foundHere())
            }
            let keyOffset = offset
            let key = try string()
            path.append(.key(key))
            if let first = seen[key] {
                let (line, column) = position(of: first)
                throw error(at: keyOffset, expected: "each key once in an object",
                            found: "\"\(key)\" a second time (first at line \(line), column \(column))")
            }
            seen[key] = keyOffset
            skipWhitespace()
            guard peek(UInt8(ascii: ":")) else { throw error(expected: "':' after the member name", found: foundHere()) }
            offset += 1
            skipWhitespace()
            members.append(JSONObject.Member(key: key, value: try value()))
            skipWhitespace()
            // The member just read is named in this error: the separator belongs after it.
            guard peek(UInt8(ascii: ",")) || peek(UInt8(ascii: "}")) else {
                throw error(expected: "',' or '}' after an object member", found: foundHere())
            }
            path.removeLast()
            if peek(UInt8(ascii: ",")) {
                offset += 1
                skipWhitespace()
            } else {
                offset += 1
                depth -= 1
                return .object(JSONObject(members))
            }
        }
    }

    private mutating func array() throws(JSONParseError) -> JSONValue {
        try enter()
        offset += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if peek(UInt8(ascii: "]")) {
            offset += 1
            depth -= 1
            return .array(items)
        }
        while true {
            path.append(.index(items.count))
            items.append(try value())
            skipWhitespace()
            guard peek(UInt8(ascii: ",")) || peek(UInt8(ascii: "]")) else {
                throw error(expected: "',' or ']' after an array element", found: foundHere())
            }
            path.removeLast()
            if peek(UInt8(ascii: ",")) {
                offset += 1
                skipWhitespace()
                if peek(UInt8(ascii: "]")) { throw error(expected: "a JSON value after ',' (JSON has no trailing comma)", found: foundHere()) }
            } else {
                offset += 1
                depth -= 1
                return .array(items)
            }
        }
    }

    private mutating func literal(_ keyword: String) throws(JSONParseError) {
        let start = offset
        for expected in keyword.utf8 {
            guard offset < bytes.count, bytes[offset] == expected else { throw error(at: start, expected: Self.anyValue, found: word(from: start)) }
            offset += 1
        }
        if offset < bytes.count, isWordByte(bytes[offset]) {
            throw error(expected: "a delimiter after \(keyword)", found: foundHere())
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, kept as text.
    private mutating func number() throws(JSONParseError) -> JSONNumber {
        let start = offset
        if peek(UInt8(ascii: "-")) { offset += 1 }
        guard offset < bytes.count, isDigit(bytes[offset]) else { throw error(expected: "a digit after '-'", found: foundHere()) }
        if bytes[offset] == UInt8(ascii: "0") {
            offset += 1
            if offset < bytes.count, isDigit(bytes[offset]) {
                throw error(at: start, expected: "a number without leading zeros", found: "'" + numberText(from: start) + "'")
            }
        } else {
            while offset < bytes.count, isDigit(bytes[offset]) { offset += 1 }
        }
        if peek(UInt8(ascii: ".")) {
            offset += 1
            guard offset < bytes.count, isDigit(bytes[offset]) else { throw error(expected: "a digit after the decimal point", found: foundHere()) }
            while offset < bytes.count, isDigit(bytes[offset]) { offset += 1 }
        }
        if peek(UInt8(ascii: "e")) || peek(UInt8(ascii: "E")) {
            offset += 1
            if peek(UInt8(ascii: "+")) || peek(UInt8(ascii: "-")) { offset += 1 }
            guard offset < bytes.count, isDigit(bytes[offset]) else { throw error(expected: "a digit in the exponent", found: foundHere()) }
            while offset < bytes.count, isDigit(bytes[offset]) { offset += 1 }
        }
        return JSONNumber(text: String(decoding: bytes[start..<offset], as: UTF8.self))
    }

    /// Called with `offset` on the opening quote; leaves it after the closing one.
    private mutating func string() throws(JSONParseError) -> String {
        offset += 1
        var text: [UInt8] = []
        while true {
            guard offset < bytes.count else { throw error(expected: "'\"' to end the string", found: "the end of the file") }
            let byte = bytes[offset]
            switch byte {
            case UInt8(ascii: "\""):
                offset += 1
                // The whole buffer was checked to be UTF-8, and escapes add whole scalars.
                return String(decoding: text, as: UTF8.self)
            case UInt8(ascii: "\\"):
                let scalar = try escape()
                UTF8.encode(scalar) { text.append($0) }
            case 0x00..<0x20:
                throw error(expected: "an escape such as \\n or \\u0000 for a control character in a string", found: "the byte 0x" + Self.hex(byte))
            default:
                text.append(byte)
                offset += 1
            }
        }
    }

    /// Called with `offset` on the backslash; leaves it after the escape.
    private mutating func escape() throws(JSONParseError) -> Unicode.Scalar {
        let start = offset
        offset += 1
        guard offset < bytes.count else { throw error(expected: "an escape after the backslash", found: "the end of the file") }
        let letter = bytes[offset]
        offset += 1
        switch letter {
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "/"): return "/"
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            let first = try hexQuad(escapeStart: start)
            switch first {
            case 0xD800...0xDBFF:
                // A high surrogate is half of a character: the low half must follow at once.
                let second = offset
                guard peek(UInt8(ascii: "\\")), offset + 1 < bytes.count, bytes[offset + 1] == UInt8(ascii: "u") else {
                    throw error(at: start, expected: "a low surrogate (\\uDC00 to \\uDFFF) right after the high surrogate", found: "\\u" + Self.hex(first, width: 4) + " alone")
                }
                offset += 2
                let low = try hexQuad(escapeStart: second)
                guard (0xDC00...0xDFFF).contains(low) else {
                    throw error(at: second, expected: "a low surrogate (\\uDC00 to \\uDFFF) right after the high surrogate", found: "\\u" + Self.hex(low, width: 4))
                }
                return Unicode.Scalar(0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00))!
            case 0xDC00...0xDFFF:
                throw error(at: start, expected: "a high surrogate (\\uD800 to \\uDBFF) before a low surrogate", found: "\\u" + Self.hex(first, width: 4) + " alone")
            default:
                return Unicode.Scalar(first)!
            }
        default:
            offset -= 1
            throw error(at: start, expected: "one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX", found: "'\\" + foundCharacter() + "'")
        }
    }

    private mutating func hexQuad(escapeStart: Int) throws(JSONParseError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard offset < bytes.count, let digit = Self.hexValue(bytes[offset]) else {
                throw error(expected: "four hexadecimal digits after \\u", found: foundHere())
            }
            value = value << 4 | digit
            offset += 1
        }
        return value
    }

    // MARK: - Positions and messages

    private mutating func skipWhitespace() {
        while offset < bytes.count {
            switch bytes[offset] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): offset += 1
            default: return
            }
        }
    }

    private func peek(_ byte: UInt8) -> Bool { offset < bytes.count && bytes[offset] == byte }

    private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private func isWordByte(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || isDigit(byte) || byte == UInt8(ascii: "_")
    }

    /// The whole word that was written, such as `'True'` or `'nul'`, quoted.
    private func word(from start: Int) -> String {
        var end = start
        while end < bytes.count, end - start < 20, isWordByte(bytes[end]) { end += 1 }
        return "'" + String(decoding: bytes[start..<max(end, start + 1)], as: UTF8.self) + "'"
    }

    private func numberText(from start: Int) -> String {
        var end = start
        while end < bytes.count, end - start < 40, isDigit(bytes[end]) || "-+.eE".utf8.contains(bytes[end]) { end += 1 }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }

    /// The character at `offset`, quoted, or the end of the file.
    private func foundHere() -> String {
        offset < bytes.count ? "'" + foundCharacter() + "'" : "the end of the file"
    }

    private func foundCharacter() -> String {
        // The buffer is valid UTF-8, so the character is its lead byte and the continuations after it.
        var end = offset + 1
        while end < bytes.count, bytes[end] & 0xC0 == 0x80 { end += 1 }
        return String(decoding: bytes[offset..<end], as: UTF8.self)
    }

    /// 1-based line and column of a byte. Computed only for an error, so parsing tracks nothing.
    private func position(of target: Int) -> (line: Int, column: Int) {
        var line = 1
        var column = 1
        for byte in bytes[..<min(target, bytes.count)] {
            if byte == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {
                column += 1
            }
        }
        return (line, column)
    }

    private func fieldPath() -> String {
        var text = ""
        for component in path {
            switch component {
            case .key(let key): text += text.isEmpty ? key : "." + key
            case .index(let index): text += "[\(index)]"
            }
        }
        return text
    }

    private func error(at target: Int? = nil, expected: String, found: String?) -> JSONParseError {
        let (line, column) = position(of: target ?? offset)
        return JSONParseError(line: line, column: column, field: fieldPath(), expected: expected, found: found)
    }

    private static func hex<T: BinaryInteger>(_ value: T, width: Int = 2) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    private static func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// The offset of the first byte that does not start a well-formed UTF-8 sequence
    /// (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), or nil.
    package static func firstInvalidUTF8(_ bytes: [UInt8]) -> Int? {
        var index = 0
        while index < bytes.count {
            let lead = bytes[index]
            let length: Int
            var secondRange: ClosedRange<UInt8> = 0x80...0xBF
            switch lead {
            case 0x00...0x7F: index += 1; continue
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; secondRange = 0xA0...0xBF
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; secondRange = 0x80...0x9F
            case 0xF0: length = 4; secondRange = 0x90...0xBF
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; secondRange = 0x80...0x8F
            default: return index
            }
            guard index + length <= bytes.count, secondRange.contains(bytes[index + 1]) else { return index }
            for continuation in bytes[(index + 2)..<(index + length)] where continuation & 0xC0 != 0x80 { return index }
            index += length
        }
        return nil
    }
}

/// A scenario file that cannot be used, with the field that is wrong and what was expected.
public struct ScenarioError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    /// A path into the document, like `sockets[1].options[0]`; empty for the whole file.
    public var field: String
    public var expected: String
    /// What the file holds instead, as written there. It is the file's text, so the
    /// description makes it inert for a terminal; this stays as found.
    public var found: String?
    /// Where in the file, for errors found while reading its text (syntax, a repeated key).
    public var line: Int?
    public var column: Int?
    /// The file's other errors, found in the same reading: a file is checked whole, so one
    /// mistake does not hide the next.
    public var more: [ScenarioError] = []

    public init(file: String, field: String, expected: String, found: String?, line: Int? = nil, column: Int? = nil) {
        self.file = file
        self.field = field
        self.expected = expected
        self.found = found
        self.line = line
        self.column = column
    }

    /// This error and the file's others, each on its own.
    public var all: [ScenarioError] {
        var first = self
        first.more = []
        return [first] + more
    }

    /// One line per error.
    public var description: String {
        all.map { error in
            var place = UntrustedText.terminal(error.file)
            if let line = error.line, let column = error.column { place += ": line \(line), column \(column)" }
            if !error.field.isEmpty { place += ": field `\(UntrustedText.terminal(error.field))`" }
            return "\(place): expected \(error.expected)" + (error.found.map { "; found \(UntrustedText.terminal($0))" } ?? "")
        }.joined(separator: "\n")
    }
}
