import Glibc

/// Writes every byte, retrying after EINTR and short writes. Returns nil, or the errno.
package func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32? {
    var offset = 0
    while offset < bytes.count {
        let count = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if count < 0 {
            if errno == EINTR { continue }
            return errno
        }
        if count == 0 { return EIO }
        offset += count
    }
    return nil
}
