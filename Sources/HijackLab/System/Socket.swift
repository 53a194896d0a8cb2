import Glibc

/// The transport of a lab socket.
public enum Transport: String, Codable, Sendable, CaseIterable {
    case tcp
    case udp

    package var socketType: Int32 {
        switch self {
        case .tcp: Int32(SOCK_STREAM.rawValue)
        case .udp: Int32(SOCK_DGRAM.rawValue)
        }
    }
}

/// One socket descriptor, with one thin method per system call.
///
/// Every failure is a `SystemError` that names the call and the errno. The descriptor is
/// closed exactly once: by `close()`, or when the owner lets go of it.
public final class Socket {
    public let fd: Int32
    private var isClosed = false

    /// `nonBlocking` sockets never wait in a call: a client that runs many connections at
    /// once polls them all (`startConnect`, `finishConnect`, `readNow`).
    public init(family: Int32, transport: Transport, nonBlocking: Bool = false) throws(SystemError) {
        let flags = transport.socketType | Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        fd = try retryingOnInterrupt("socket") { Glibc.socket(family, flags, 0) }
    }

    private init(adopting fd: Int32) {
        self.fd = fd
    }

    deinit {
        if !isClosed { try? Syscall.close(fd) }
    }

    public func set(_ option: SocketOption) throws(SystemError) {
        try option.apply(to: fd)
    }

    public func bind(to address: SocketAddress) throws(SystemError) {
        try address.withSockAddr { (pointer, length) throws(SystemError) in
            try retryingOnInterrupt("bind") { Glibc.bind(fd, pointer, length) }
        }
    }

    public func listen(backlog: Int32 = 128) throws(SystemError) {
        try retryingOnInterrupt("listen") { Glibc.listen(fd, backlog) }
    }

    /// Accepts one pending connection; the caller polls for readiness first.
    public func accept() throws(SystemError) -> (connection: Socket, peer: SocketAddress?) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let accepted = try withUnsafeMutablePointer(to: &storage) { (pointer) throws(SystemError) -> Int32 in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (address) throws(SystemError) -> Int32 in
                try retryingOnInterrupt("accept") { Glibc.accept(fd, address, &length) }
            }
        }
        let connection = Socket(adopting: accepted)
        try Syscall.nothingOrErrno("fcntl(F_SETFD, FD_CLOEXEC)") { fcntl(accepted, F_SETFD, FD_CLOEXEC) }
        return (connection, SocketAddress(storage: storage))
    }

    /// Connects, giving up at the deadline with ETIMEDOUT. Loopback answers at once; a peer
    /// in another namespace may not, so the wait is bounded rather than left to the kernel.
    public func connect(to address: SocketAddress, until deadline: Deadline) throws(SystemError) {
        let flags = try Syscall.valueOrErrno("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
        try Syscall.nothingOrErrno("fcntl(F_SETFL, O_NONBLOCK)") { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
        // Back to blocking for the reads that follow; a failure would show in them.
        defer { _ = try? Syscall.valueOrErrno("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, flags) } }
        if try startConnect(to: address) { return }
        guard try waitFor(fd, events: Int16(POLLOUT), until: deadline) else {
            throw SystemError(call: "connect", code: ETIMEDOUT)
        }
        try finishConnect()
    }

    /// Starts a connect on a non-blocking socket: true when it completed at once, false when
    /// it is in progress (poll for POLLOUT, then `finishConnect`).
    public func startConnect(to address: SocketAddress) throws(SystemError) -> Bool {
        let started = try address.withSockAddr { (pointer, length) throws(SystemError) in Glibc.connect(fd, pointer, length) }
        if started == 0 { return true }
        guard errno == EINPROGRESS || errno == EINTR else { throw SystemError.last("connect") }
        return false
    }

    /// How a connect in progress ended, once poll reported the socket: its error, if any, thrown.
    public func finishConnect() throws(SystemError) {
        var pending: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        try retryingOnInterrupt("getsockopt") { getsockopt(fd, SOL_SOCKET, SO_ERROR, &pending, &length) }
        if pending != 0 { throw SystemError(call: "connect", code: pending) }
    }

    public func localAddress() throws(SystemError) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        try withUnsafeMutablePointer(to: &storage) { pointer in
            Result { () throws(SystemError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (address) throws(SystemError) in
                    try Syscall.nothingOrErrno("getsockname") { getsockname(fd, address, &length) }
                }
            }
        }.get()
        guard let address = SocketAddress(storage: storage) else { throw SystemError(call: "getsockname", code: EAFNOSUPPORT) }
        return address
    }

    /// Writes all of `text`; used for the short identity line an agent sends.
    public func write(_ text: String) throws(SystemError) {
        let bytes = Array(text.utf8)
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(SystemError) in try writeAll(buffer, call: "send") { Glibc.send(fd, $0, $1, Int32(MSG_NOSIGNAL)) } }
        }.get()
    }

    /// Reads until a newline or end of stream, within the deadline. Returns what arrived, without the newline.
    public func readLine(until deadline: Deadline, limit: Int = 512) throws(SystemError) -> String {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while line.count < limit {
            guard try waitFor(fd, events: Int16(POLLIN), until: deadline) else { throw SystemError(call: "read", code: ETIMEDOUT) }
            let count = try retryingOnInterrupt("read") { Glibc.read(fd, &byte, 1) }
            if count == 0 || byte == UInt8(ascii: "\n") { break }
            line.append(byte)
        }
        return String(decoding: line, as: UTF8.self)
    }

    /// What is queued now, at most `limit` bytes: nil when nothing is (EAGAIN), empty at the
    /// end of the stream. For non-blocking sockets, after poll said readable.
    public func readNow(limit: Int) throws(SystemError) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: max(1, limit))
        do throws(SystemError) {
            let count = try Syscall.read(fd, into: &buffer)
            return Array(buffer[..<count])
        } catch where error.code == EAGAIN || error.code == EWOULDBLOCK {
            return nil
        }
    }

    /// Sends one datagram to `address`.
    public func send(_ text: String, to address: SocketAddress) throws(SystemError) {
        let bytes = Array(text.utf8)
        try address.withSockAddr { (pointer, length) throws(SystemError) in
            try Syscall.nothingOrErrno("sendto") {
                bytes.withUnsafeBytes { Glibc.sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), pointer, length) }
            }
        }
    }

    /// One datagram and its sender, or nil when none arrives by the deadline.
    public func receive(until deadline: Deadline) throws(SystemError) -> (text: String, from: SocketAddress?)? {
        guard try waitFor(fd, events: Int16(POLLIN), until: deadline) else { return nil }
        return try receiveNow()
    }

    /// One datagram if one is queued now (the socket is non-blocking or was polled), else nil.
    public func receiveNow() throws(SystemError) -> (text: String, from: SocketAddress?)? {
        var buffer = [UInt8](repeating: 0, count: 2048)
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let count: Int
        do throws(SystemError) {
            count = try Syscall.valueOrErrno("recvfrom") {
                buffer.withUnsafeMutableBytes { raw in
                    withUnsafeMutablePointer(to: &storage) { pointer in
                        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.recvfrom(fd, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT), $0, &length) }
                    }
                }
            }
        } catch where error.code == EAGAIN || error.code == EWOULDBLOCK {
            return nil
        }
        return (String(decoding: buffer[..<count], as: UTF8.self), SocketAddress(storage: storage))
    }

    /// Closes the descriptor once. A failed close is reported but never retried.
    public func close() throws(SystemError) {
        guard !isClosed else { return }
        isClosed = true
        try Syscall.close(fd)
    }
}
