import Glibc

/// One wrapper per raw call the agent makes, in swift-system's `valueOrErrno` style: -1
/// becomes a SystemError naming the call and its errno. Calls that the kernel restarts
/// safely are retried after EINTR; `close` never is (the descriptor may already be gone
/// and its number reused).
package enum Syscall {
    /// The result, or the errno as an error; EINTR retried when `retryingOnInterrupt`.
    @inline(__always)
    package static func valueOrErrno<T: FixedWidthInteger>(_ call: @autoclosure () -> String, retryingOnInterrupt: Bool = true,
                                                           _ body: () -> T) throws(SystemError) -> T {
        while true {
            let result = body()
            if result != -1 { return result }
            if retryingOnInterrupt && errno == EINTR { continue }
            throw SystemError.last(call())
        }
    }

    /// A call whose only success value is 0 (or any value but -1).
    @inline(__always)
    package static func nothingOrErrno<T: FixedWidthInteger>(_ call: @autoclosure () -> String, retryingOnInterrupt: Bool = true,
                                                             _ body: () -> T) throws(SystemError) {
        _ = try valueOrErrno(call(), retryingOnInterrupt: retryingOnInterrupt, body)
    }

    package static func open(_ path: String, _ flags: Int32) throws(SystemError) -> Int32 {
        try valueOrErrno("open(\(path))") { Glibc.open(path, flags | O_CLOEXEC) }
    }

    /// Closes once; a failure is reported, never retried.
    package static func close(_ fd: Int32) throws(SystemError) {
        try nothingOrErrno("close", retryingOnInterrupt: false) { Glibc.close(fd) }
    }

    /// Up to `buffer.count` bytes; 0 at end of file.
    package static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try valueOrErrno("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// Up to `bytes.count` bytes into the array's storage; 0 at end of file.
    package static func read(_ fd: Int32, into bytes: inout [UInt8]) throws(SystemError) -> Int {
        try bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(SystemError) in try read(fd, into: buffer) }
        }.get()
    }

    /// Waits for any of `descriptors`; the number ready. An interrupted wait with no
    /// timeout is simply waited again.
    package static func poll(_ descriptors: inout [pollfd], timeoutMilliseconds: Int32) throws(SystemError) -> Int32 {
        let count = nfds_t(descriptors.count)
        return try descriptors.withUnsafeMutableBufferPointer { buffer in
            Result { () throws(SystemError) in try valueOrErrno("poll") { Glibc.poll(buffer.baseAddress, count, timeoutMilliseconds) } }
        }.get()
    }

    /// O_NONBLOCK on, both fcntl calls checked.
    package static func setNonBlocking(_ fd: Int32) throws(SystemError) {
        let flags = try valueOrErrno("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
        try nothingOrErrno("fcntl(F_SETFL, O_NONBLOCK)") { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }
}
