import Glibc

/// The one write-all loop: hands `write` what is left until every byte is written,
/// retrying after EINTR and short writes. `write` is write(2), send(2) or the like.
package func writeAll(_ bytes: UnsafeRawBufferPointer, call: String = "write",
                      using write: (UnsafeRawPointer, Int) -> Int) throws(SystemError) {
    guard let base = bytes.baseAddress else { return }
    var offset = 0
    while offset < bytes.count {
        let count = write(base + offset, bytes.count - offset)
        if count < 0 {
            if errno == EINTR { continue }
            throw SystemError.last(call)
        }
        if count == 0 { throw SystemError(call: call, code: EIO) }
        offset += count
    }
}

/// Every byte to `fd` with write(2).
package func writeAll(_ fd: Int32, bytes: [UInt8]) throws(SystemError) {
    try bytes.withUnsafeBytes { buffer in
        Result { () throws(SystemError) in try writeAll(buffer) { Glibc.write(fd, $0, $1) } }
    }.get()
}

/// Writes every byte, retrying after EINTR and short writes. Returns nil, or the errno.
package func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32? {
    do throws(SystemError) {
        try writeAll(fd, bytes: bytes)
        return nil
    } catch {
        return error.code
    }
}
