import HijackAgent
import HijackAudit
import HijackSystem

/// A command-line mistake: the message says what was wrong and what was expected.
package struct UsageError: Error {
    package var message: String

    package init(message: String) { self.message = message }
}

/// One option a command takes. `value` names its argument (`FILE`), nil for a flag.
package struct OptionSpec: Sendable {
    package let name: String
    package let value: String?
    package let help: String
    /// May be given more than once (`kernels --kernel-package A --kernel-package B`); `allValues(_:)` reads them all.
    package var repeatable = false

    package init(_ name: String, _ value: String? = nil, _ help: String, repeatable: Bool = false) {
        self.name = name
        self.value = value
        self.help = help
        self.repeatable = repeatable
    }

    /// The help line: `  --json FILE        write …`.
    package var helpLine: String {
        let left = "  " + name + (value.map { " " + $0 } ?? "")
        let padded = left.count < 24 ? left + String(repeating: " ", count: 24 - left.count) : left + "\n" + String(repeating: " ", count: 24)
        return padded + help
    }
}

/// The arguments of one command, read against the options it declares: `--name value`,
/// `--name=value`, flags, `-h`/`--help`, and `--` before operands that start with a dash.
/// Every option may be given once.
package struct Arguments {
    package let command: String
    package private(set) var values: [String: String] = [:]
    package private(set) var repeated: [String: [String]] = [:]
    package private(set) var flags: Set<String> = []
    package private(set) var operands: [String] = []
    package private(set) var help = false

    package init(_ arguments: [String], command: String, options: [OptionSpec]) throws(UsageError) {
        self.command = command
        var index = 0
        var onlyOperands = false
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if onlyOperands || argument == "-" || !argument.hasPrefix("-") {
                operands.append(argument)
                continue
            }
            if argument == "--" { onlyOperands = true; continue }
            if argument == "-h" || argument == "--help" { help = true; continue }
            var name = argument
            var inline: String?
            if let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inline = String(argument[argument.index(after: equals)...])
            }
            guard let spec = options.first(where: { $0.name == name }) else {
                var message = "unknown option \(UntrustedText.terminal(name)) for \(command)"
                if let close = Suggestion.closest(to: name, among: options.map(\.name)) { message += "; did you mean \(close)?" }
                if options.isEmpty { message += " (it takes no options)" }
                throw UsageError(message: message)
            }
            if !spec.repeatable, values[name] != nil || flags.contains(name) { throw UsageError(message: "\(name) is given twice") }
            guard let valueName = spec.value else {
                if inline != nil { throw UsageError(message: "\(name) takes no value") }
                flags.insert(name)
                continue
            }
            if let inline {
                values[name] = inline
                repeated[name, default: []].append(inline)
            } else {
                // A value may be "-" (stdout), but not the next option.
                guard index < arguments.count, arguments[index] == "-" || !arguments[index].hasPrefix("--") else {
                    throw UsageError(message: "\(name) needs a value (\(valueName))")
                }
                values[name] = arguments[index]
                repeated[name, default: []].append(arguments[index])
                index += 1
            }
        }
    }

    package func value(_ name: String) -> String? { values[name] }

    /// Every value of a repeatable option, in the order given.
    package func allValues(_ name: String) -> [String] { repeated[name] ?? [] }

    package func flag(_ name: String) -> Bool { flags.contains(name) }

    /// A decimal number of seconds in `range`. Only decimal digits with an optional fraction:
    /// `0x10`, `1e3`, `inf` and `nan`, which Double(String) would take, are refused.
    package func seconds(_ name: String, default fallback: Double, range: ClosedRange<Double>) throws(UsageError) -> Double {
        guard let text = values[name] else { return fallback }
        guard let number = Self.decimal(text), range.contains(number) else {
            throw UsageError(message: "\(name) expects seconds, a decimal number from \(Self.show(range.lowerBound)) to \(Self.show(range.upperBound)); got \"\(UntrustedText.terminal(text))\"")
        }
        return number
    }

    /// A whole decimal number in `range`.
    package func integer(_ name: String, range: ClosedRange<Int>) throws(UsageError) -> Int? {
        guard let text = values[name] else { return nil }
        guard text.allSatisfy({ $0.isASCII && $0.isNumber }), !text.isEmpty, text.count < 10, let number = Int(text), range.contains(number) else {
            throw UsageError(message: "\(name) expects a whole number from \(range.lowerBound) to \(range.upperBound); got \"\(UntrustedText.terminal(text))\"")
        }
        return number
    }

    /// One of `choices`, with a suggestion when it is close to one.
    package func choice<T>(_ name: String, _ choices: [(String, T)]) throws(UsageError) -> T? {
        guard let text = values[name] else { return nil }
        if let match = choices.first(where: { $0.0 == text }) { return match.1 }
        var message = "\(name) expects " + choices.map(\.0).joined(separator: ", ") + "; got \"\(UntrustedText.terminal(text))\""
        if let close = Suggestion.closest(to: text, among: choices.map(\.0)) { message += "; did you mean \(close)?" }
        throw UsageError(message: message)
    }

    package static func decimal(_ text: String) -> Double? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }),
              text.count <= 20 else { return nil }
        return Double(text)
    }

    private static func show(_ number: Double) -> String {
        number == number.rounded() ? String(Int(number)) : String(number)
    }
}

/// "Did you mean …?": the closest known word by edit distance, when it is close enough
/// to be a slip of the keyboard rather than another word.
package enum Suggestion {
    package static func closest(to word: String, among candidates: [String]) -> String? {
        let scored = candidates.map { ($0, distance(word.lowercased(), $0.lowercased())) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        let allowed = max(1, min(3, best.0.count / 3))
        return best.1 <= allowed ? best.0 : nil
    }

    /// Levenshtein distance, with a transposition of neighbours counted as one edit.
    package static func distance(_ left: String, _ right: String) -> Int {
        let a = Array(left), b = Array(right)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var previous2 = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + [Int](repeating: 0, count: b.count)
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { current[j] = min(current[j], previous2[j - 2] + 1) }
            }
            previous2 = previous
            previous = current
        }
        return previous[b.count]
    }
}
