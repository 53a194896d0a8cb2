import Foundation

/// A JSON document as JSONDecoder reads it, kept generic so that validation can name
/// the exact field that is wrong and reject fields nobody reads.
enum JSONValue: Decodable, Sendable, Equatable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    /// How a value is described in an error: `"SO_REUSE"`, `a number (3)`, `an object`.
    var summary: String {
        switch self {
        case .string(let text): "\"\(text.count > 60 ? String(text.prefix(57)) + "..." : text)\""
        case .number(let number): "a number (\(Int(exactly: number).map(String.init) ?? String(number)))"
        case .bool(let flag): "\(flag)"
        case .null: "null"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// A scenario file that cannot be used, with the field that is wrong and what was expected.
public struct ScenarioError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    /// A path into the document, like `sockets[1].options[0]`; empty for the whole file.
    public var field: String
    public var expected: String
    public var found: String?

    public var description: String {
        let place = field.isEmpty ? file : "\(file): field `\(field)`"
        return "\(place): expected \(expected)" + (found.map { "; found \($0)" } ?? "")
    }
}
