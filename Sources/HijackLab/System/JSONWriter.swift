/// JSON written by hand, byte for byte as Foundation's JSONEncoder writes it with
/// [.sortedKeys, .withoutEscapingSlashes] (and .prettyPrinted when `pretty`), without
/// Foundation: the layers below HijackLab link none. Callers write keys in sorted order.
///
/// Output is handed to `emit` in pieces of about 64 KB, so that a large document can stream
/// to a file instead of being held whole.
package struct JSONWriter {
    package let emit: (UnsafeRawBufferPointer) -> Void
    /// Pretty: a line per value, two spaces per level, `"key" : value`. Compact: `"key":value`.
    package let pretty: Bool
    private var bytes: [UInt8] = []

    package init(pretty: Bool = true, emit: @escaping (UnsafeRawBufferPointer) -> Void) {
        self.emit = emit
        self.pretty = pretty
        bytes.reserveCapacity(70_000)
    }

    /// One whole document as bytes.
    package static func bytes(pretty: Bool = true, _ body: (inout JSONWriter) -> Void) -> [UInt8] {
        var document: [UInt8] = []
        withoutActuallyEscaping({ (piece: UnsafeRawBufferPointer) in document += piece }) { emit in
            var writer = JSONWriter(pretty: pretty, emit: emit)
            body(&writer)
            writer.flush()
        }
        return document
    }

    package mutating func flush() {
        bytes.withUnsafeBytes(emit)
        bytes.removeAll(keepingCapacity: true)
    }

    package mutating func newline(level: Int) {
        guard pretty else { return }
        bytes.append(0x0a)
        bytes += repeatElement(0x20, count: 2 * level)
        if bytes.count >= 65_536 { flush() }
    }

    package mutating func object(level: Int, _ body: (inout JSONWriter) -> Void) {
        bytes.append(UInt8(ascii: "{"))
        body(&self)
        newline(level: level)
        bytes.append(UInt8(ascii: "}"))
        if !pretty, bytes.count >= 65_536 { flush() }
    }

    package mutating func array<S: Collection>(_ elements: S, level: Int, _ each: (inout JSONWriter, S.Element) -> Void) {
        bytes.append(UInt8(ascii: "["))
        if elements.isEmpty, pretty { bytes.append(0x0a) }
        var first = true
        for element in elements {
            if !first { bytes.append(UInt8(ascii: ",")) }
            first = false
            newline(level: level + 1)
            each(&self, element)
        }
        newline(level: level)
        bytes.append(UInt8(ascii: "]"))
    }

    package mutating func key(_ name: StaticString, first: Bool = false, level: Int) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        newline(level: level)
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes += $0 }
        bytes += pretty ? [UInt8(ascii: "\""), 0x20, UInt8(ascii: ":"), 0x20] : [UInt8(ascii: "\""), UInt8(ascii: ":")]
    }

    /// A key that is data (a dictionary's), escaped like any string.
    package mutating func key(text name: String, first: Bool = false, level: Int) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        newline(level: level)
        string(name)
        bytes += pretty ? [0x20, UInt8(ascii: ":"), 0x20] : [UInt8(ascii: ":")]
    }

    package mutating func number<Value: BinaryInteger>(_ value: Value) {
        bytes += String(value).utf8
    }

    /// Shortest round-trip text, as Swift's description gives it; whole values without `.0`, as JSONEncoder writes them.
    package mutating func number(_ value: Double) {
        if value.isFinite, value == value.rounded(), abs(value) < 1e15 {
            bytes += String(Int64(value)).utf8
        } else {
            bytes += String(value).utf8
        }
    }

    package mutating func bool(_ value: Bool) {
        bytes += (value ? "true" : "false").utf8
    }

    package mutating func null() {
        bytes += "null".utf8
    }

    /// Text already written as JSON (a nested document), copied as it is.
    package mutating func raw(_ json: some Sequence<UInt8>) {
        bytes += json
    }

    /// Quotes and backslashes escaped, control characters as \n, \t, … or \u001b; the
    /// rest (slashes, DEL, every non-ASCII character) as it is, like JSONEncoder.
    package mutating func string(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        defer { bytes.append(UInt8(ascii: "\"")) }
        // Most text (addresses, names, explanations) needs no escape: copied whole.
        if !text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            bytes += text.utf8
            return
        }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): bytes += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x08: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
            case 0x09: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0x0a: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0c: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
            case 0x0d: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x00..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes += [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0x0f)]]
            default: bytes.append(byte)
            }
        }
    }
}
