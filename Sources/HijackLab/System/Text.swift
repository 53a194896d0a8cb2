import Glibc

// The few text operations the Foundation-free layers need, written against the standard library.

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and line breaks (the ASCII ones /proc writes).
    package var trimmed: SubSequence {
        let isBlank = { (c: Character) in c == " " || c == "\t" || c == "\n" || c == "\r" }
        guard let first = firstIndex(where: { !isBlank($0) }) else { return self[endIndex...] }
        let last = lastIndex(where: { !isBlank($0) })!
        return self[first...last]
    }
}

extension String {
    /// Padded with spaces to `length` UTF-16 units, as Foundation's `padding(toLength:)` counts,
    /// or cut to that length; the tables have always been laid out that way.
    package func padded(toUTF16Length length: Int) -> String {
        let units = utf16.count
        if units == length { return self }
        if units < length { return self + String(repeating: " ", count: length - units) }
        // Never half a surrogate pair: a cut inside one moves back before it.
        var cut = length
        while cut > 0, String(utf16.prefix(cut)) == nil { cut -= 1 }
        let kept = String(utf16.prefix(cut)) ?? ""
        return kept + String(repeating: " ", count: length - cut)
    }
}

/// `value` with exactly `decimals` digits after the point, as printf's `%.Nf` writes it: never
/// an exponent, which Prometheus accepts but people misread.
package func fixedPoint(_ value: Double, decimals: Int) -> String {
    // %.Nf of the largest double is 309 digits before the point.
    var buffer = [CChar](repeating: 0, count: 330 + decimals)
    let written = withVaList([value]) { vsnprintf(&buffer, buffer.count, "%.\(decimals)f", $0) }
    guard written > 0, Int(written) < buffer.count else { return String(value) }
    return String(decoding: buffer[..<Int(written)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A moment on the real-time clock, for timestamps people and collectors read (the monotonic
/// `Deadline` measures durations).
package struct WallTime: Sendable, Equatable {
    package var secondsSince1970: Double

    package init(secondsSince1970: Double) { self.secondsSince1970 = secondsSince1970 }

    package static func now() -> WallTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return WallTime(secondsSince1970: Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9)
    }

    /// RFC 3339 in UTC with milliseconds: `2025-06-01T12:00:00.123Z`.
    package var rfc3339: String {
        var whole = time_t(secondsSince1970.rounded(.down))
        var milliseconds = Int(((secondsSince1970 - Double(whole)) * 1000).rounded())
        if milliseconds == 1000 { whole += 1; milliseconds = 0 }
        var parts = tm()
        gmtime_r(&whole, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let millis = milliseconds < 10 ? "00\(milliseconds)" : milliseconds < 100 ? "0\(milliseconds)" : "\(milliseconds)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(millis)Z"
    }
}
