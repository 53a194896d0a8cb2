/// The one place a syscall result becomes text and back: in reports ("bind EADDRINUSE"),
/// in the lab's JSON output (`"bind" : "ok"`), and on the agent wire. The strings are a
/// public interface: `all --json` and `matrix --json` keep them.
extension SyscallResult: Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    private static let okText = "ok"
    private static let notAttemptedText = "not-attempted"
    private static let notApplicableText = "not-applicable"

    public var text: String {
        switch self {
        case .ok: Self.okText
        case .errno(let name): name
        case .toolFailed(let status): status
        case .notAttempted: Self.notAttemptedText
        case .notApplicable: Self.notApplicableText
        }
    }

    public init(text: String) {
        switch text {
        case Self.okText: self = .ok
        case Self.notAttemptedText: self = .notAttempted
        case Self.notApplicableText: self = .notApplicable
        case _ where text.hasPrefix("exit ") || text.hasPrefix("signal "): self = .toolFailed(text)
        default: self = .errno(text)
        }
    }

    /// For tests and fixtures, which name results as the reports write them.
    public init(stringLiteral text: String) { self.init(text: text) }

    public var description: String { text }

    public init(from decoder: any Decoder) throws {
        self.init(text: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}
