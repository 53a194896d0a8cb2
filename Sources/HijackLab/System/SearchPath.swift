import Glibc

/// Finds a program the way a careful shell would, for a run that may be root's: on PATH, then
/// in the usual system folders. A PATH entry that is not UTF-8 is skipped, never decoded: its
/// decoded spelling (with U+FFFD) names another folder, perhaps one another user made. So is
/// a relative entry (an empty one means the current folder), which would make what runs
/// depend on where the run was started.
public enum SearchPath {
    public static let systemFolders = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]

    /// PATH's folders that can be named exactly, in order, then the system folders.
    public static func folders(path: [UInt8]? = raw("PATH")) -> [String] {
        let entries = (path ?? []).split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
        let named = entries.compactMap { String(validating: $0, as: UTF8.self) }.filter { $0.hasPrefix("/") }
        return named + systemFolders
    }

    /// The first `folder/name` that this process may execute.
    public static func find(_ name: String, path: [UInt8]? = raw("PATH")) -> String? {
        folders(path: path).map { $0 + "/" + name }.first { access($0, X_OK) == 0 }
    }

    /// An environment variable's bytes, as the process got them.
    public static func raw(_ name: String) -> [UInt8]? {
        guard let value = getenv(name) else { return nil }
        return Array(UnsafeBufferPointer(start: UnsafeRawPointer(value).assumingMemoryBound(to: UInt8.self), count: strlen(value)))
    }
}
