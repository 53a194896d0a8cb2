import Glibc

/// A socket option the lab sets before bind, as data rather than raw integers.
public enum SocketOption: Equatable, Hashable, Sendable, CustomStringConvertible {
    case reuseAddress
    case reusePort
    case ipv6Only
    /// SO_LINGER with the given timeout; 0 makes close() send RST and skip TIME_WAIT.
    case linger(seconds: Int32)
    case bindToDevice(String)

    /// The option names a scenario file may list in "options"; the device has its own field.
    public static let namesInFiles = ["SO_REUSEADDR", "SO_REUSEPORT", "IPV6_V6ONLY", "SO_LINGER"]

    public init?(name: String) {
        switch name {
        case "SO_REUSEADDR": self = .reuseAddress
        case "SO_REUSEPORT": self = .reusePort
        case "IPV6_V6ONLY": self = .ipv6Only
        case "SO_LINGER": self = .linger(seconds: 0)
        default: return nil
        }
    }

    public var name: String {
        switch self {
        case .reuseAddress: "SO_REUSEADDR"
        case .reusePort: "SO_REUSEPORT"
        case .ipv6Only: "IPV6_V6ONLY"
        case .linger: "SO_LINGER"
        case .bindToDevice: "SO_BINDTODEVICE"
        }
    }

    /// The value as a person reads it in a syscall trace.
    public var valueDescription: String {
        switch self {
        case .reuseAddress, .reusePort, .ipv6Only: "1"
        case .linger(let seconds): "{on, \(seconds)s}"
        case .bindToDevice(let device): "\"\(device)\""
        }
    }

    /// `setsockopt(SO_REUSEPORT, 1)`
    public var description: String { "setsockopt(\(name), \(valueDescription))" }

    package func apply(to fd: Int32) throws(SystemError) {
        switch self {
        case .reuseAddress: try Self.setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1)
        case .reusePort: try Self.setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1)
        case .ipv6Only: try Self.setInt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1)
        case .linger(let seconds):
            var value = Glibc.linger(l_onoff: 1, l_linger: seconds)
            try Self.set(fd, SOL_SOCKET, SO_LINGER, &value)
        case .bindToDevice(let device):
            var bytes = Array(device.utf8CString)
            try retryingOnInterrupt("setsockopt") {
                setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, &bytes, socklen_t(bytes.count))
            }
        }
    }

    private static func setInt(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws(SystemError) {
        var value = value
        try set(fd, level, name, &value)
    }

    private static func set<T: BitwiseCopyable>(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: inout T) throws(SystemError) {
        try Syscall.nothingOrErrno("setsockopt") {
            withUnsafeBytes(of: &value) { setsockopt(fd, level, name, $0.baseAddress, socklen_t($0.count)) }
        }
    }
}
