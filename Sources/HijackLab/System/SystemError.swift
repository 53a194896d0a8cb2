import CHijackLab
import Glibc

/// A failed system call: which call, and the errno it set.
///
/// The errno's symbolic name is the evidence this project reports, so `name` is
/// `EADDRINUSE`, never only the strerror text.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    public var call: String
    public var code: Int32

    public init(call: String, code: Int32) {
        self.call = call
        self.code = code
    }

    /// The errno in force right after `call` failed.
    package static func last(_ call: String) -> SystemError {
        SystemError(call: call, code: errno)
    }

    public var name: String { SystemError.name(of: code) }

    public var description: String {
        "\(call): \(name) (\(String(cString: strerror(code))))"
    }

    /// "EADDRINUSE" for EADDRINUSE; "errno 999" for a value glibc has no name for.
    public static func name(of code: Int32) -> String {
        guard let name = hl_errno_name(code) else { return "errno \(code)" }
        return String(cString: name)
    }

    /// The inverse of `name(of:)`, for errno names read back from agents and files.
    public static func code(named name: String) -> Int32? {
        (1..<200).first { hl_errno_name($0).map { String(cString: $0) } == name }.map { Int32($0) }
    }
}

/// Runs a call that returns -1 on failure, retrying while it is interrupted by a signal.
/// Never use this for `close`, where a retry may close someone else's descriptor.
@discardableResult
package func retryingOnInterrupt<T: FixedWidthInteger>(_ call: String, _ body: () -> T) throws(SystemError) -> T {
    try Syscall.valueOrErrno(call, body)
}
