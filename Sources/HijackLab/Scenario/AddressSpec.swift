import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation

/// An address as a scenario writes it: a symbol the topology resolves, or a literal.
public enum AddressSpec: Sendable, Equatable, CustomStringConvertible {
    case symbol(AddressSymbol)
    case literal(String)
    /// A host name a probe resolves from the lab's own hosts file, in a client's order (LabHosts), e.g. "localhost".
    case name(String)

    public init(parsing text: String) {
        if let symbol = AddressSymbol(rawValue: text) {
            self = .symbol(symbol)
        } else if SocketAddress(host: text, port: 0) == nil, TextPattern.hostName.matches(text) {
            self = .name(text)
        } else {
            self = .literal(text)
        }
    }

    public var description: String {
        switch self {
        case .symbol(let symbol): symbol.rawValue
        case .literal(let text), .name(let text): text
        }
    }
}

