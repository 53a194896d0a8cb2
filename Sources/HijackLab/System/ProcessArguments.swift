import CHijackLab
import Glibc

/// The process's argv as the kernel gave it, kept by a constructor that runs before the Swift
/// runtime (hl_early.h). Swift's CommandLine reads /proc/self/cmdline, which a guest's init
/// does not have, and replaces bytes that are not UTF-8.
public enum ProcessArguments {
    /// argv[1...], decoded as UTF-8 (with replacement) for the command line reader.
    public static var commandLine: [String] {
        guard let argv = hl_saved_argv() else { return Array(CommandLine.arguments.dropFirst()) }
        return (1..<Int(hl_saved_argc())).compactMap { argv[$0].map { String(cString: $0) } }
    }

    /// argv[1...] decoded strictly: nil for an argument that is not UTF-8, where a decoded
    /// spelling would name something else (a program to run, say).
    public static var exactCommandLine: [String?] {
        guard let argv = hl_saved_argv() else { return Array(CommandLine.arguments.dropFirst()) }
        return (1..<Int(hl_saved_argc())).compactMap { index in
            argv[index].map { String(validating: UnsafeBufferPointer(start: UnsafeRawPointer($0).assumingMemoryBound(to: UInt8.self), count: strlen($0)), as: UTF8.self) }
        }
    }

    /// The argv vector itself, for an exec that passes it on byte for byte.
    public static var unsafeArgv: UnsafePointer<UnsafeMutablePointer<CChar>?> {
        guard let argv = hl_saved_argv() else { return UnsafePointer(CommandLine.unsafeArgv) }
        return UnsafeRawPointer(argv).assumingMemoryBound(to: UnsafeMutablePointer<CChar>?.self)
    }
}

/// C strings for one call: `strings` as a NULL-terminated `char *const[]`, freed afterwards.
package enum CStrings {
    package static func withArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        let copies = strings.map { strdup($0) } + [nil]
        defer { for copy in copies { free(copy) } }
        return copies.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
