import HijackSystem
import CHijackLab
import Glibc

/// One row of /proc/net/{tcp,tcp6,udp,udp6}.
public struct ProcNetEntry: Codable, Sendable, Equatable {
    public var transport: Transport
    public var local: String
    public var port: UInt16
    public var remote: String
    public var remotePort: UInt16
    /// The kernel's TCP state number: 0x0A is LISTEN; UDP sockets that are only bound show 0x07.
    public var state: UInt8
    public var uid: UInt32
    public var inode: UInt64

    /// Sockets that take new traffic for their address: TCP listeners, and UDP sockets that
    /// are bound but not connected (a connected one only hears from its peer).
    public var isReceiving: Bool {
        transport == .tcp ? state == 0x0A : (state == 0x07 && remotePort == 0)
    }
}

public enum ProcNet {
    /// The four files of the current network namespace, with what they hold.
    public static let files: [(path: String, transport: Transport)] = [
        (net + "tcp", .tcp), (net + "tcp6", .tcp), (net + "udp", .udp), (net + "udp6", .udp),
    ]

    /// /proc/net is /proc/self/net, the namespace of the process's first thread. unshare and
    /// setns act on the calling thread, so a thread that entered another namespace (as sock_diag
    /// reads it) finds its own under /proc/thread-self (Linux 3.17 on).
    package static let net = access("/proc/thread-self/net", F_OK) == 0 ? "/proc/thread-self/net/" : "/proc/net/"

    /// Parses one file's text. The header and any malformed row are skipped; `skipped` counts the latter.
    public static func parse(_ text: String, transport: Transport) -> (entries: [ProcNetEntry], skipped: Int) {
        var rows = RowReader(protocol: transport.ipProtocol)
        var text = text
        text.withUTF8 { rows.feed(UnsafeRawBufferPointer($0)) }
        rows.finish()
        return (rows.sockets.map { ProcNetEntry($0) }, rows.skipped)
    }

    /// Every row of one /proc/net file, read 64 KB at a time and parsed as it arrives, so that
    /// the file's text (several MB with 50,000 sockets) is never held whole. Nil when the
    /// file cannot be read (no IPv6: no tcp6).
    package static func sockets(_ path: String, transport: Transport) -> (sockets: [hl_diag_socket], skipped: Int)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var rows = RowReader(protocol: transport.ipProtocol)
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 1)
        defer { chunk.deallocate() }
        while true {
            let count = Glibc.read(fd, chunk.baseAddress, chunk.count)
            if count > 0 {
                rows.feed(UnsafeRawBufferPointer(rebasing: chunk[..<count]))
            } else if count == 0 {
                rows.finish()
                return (rows.sockets, rows.skipped)
            } else if errno != EINTR {
                return nil
            }
        }
    }

    /// Cuts text that arrives in pieces into rows, the first (the header) skipped.
    package struct RowReader {
        package let `protocol`: UInt8
        package var sockets: [hl_diag_socket] = []
        package var skipped = 0
        private var pending: [UInt8] = []
        private var sawHeader = false

        package init(protocol: UInt8) { self.protocol = `protocol` }

        package mutating func feed(_ bytes: UnsafeRawBufferPointer) {
            var start = 0
            for index in 0..<bytes.count where bytes[index] == UInt8(ascii: "\n") {
                if pending.isEmpty {
                    row(UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
                } else {
                    pending += bytes[start..<index]
                    pending.withUnsafeBytes { row($0) }
                    pending.removeAll(keepingCapacity: true)
                }
                start = index + 1
            }
            pending += bytes[start...]
        }

        package mutating func finish() {
            if !pending.isEmpty { pending.withUnsafeBytes { row($0) } }
            pending = []
        }

        private mutating func row(_ line: UnsafeRawBufferPointer) {
            guard sawHeader else { sawHeader = true; return }
            // An empty line is no row: split(separator:) never yielded one.
            guard !line.isEmpty else { return }
            if let socket = ProcNet.row(line, protocol: `protocol`) { sockets.append(socket) } else { skipped += 1 }
        }
    }

    /// One row: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`, fields apart by spaces.
    package static func row(_ line: UnsafeRawBufferPointer, protocol: UInt8) -> hl_diag_socket? {
        var fields: [Range<Int>] = []
        fields.reserveCapacity(12)
        var index = 0
        while index < line.count, fields.count < 10 {
            while index < line.count, line[index] == UInt8(ascii: " ") { index += 1 }
            let start = index
            while index < line.count, line[index] != UInt8(ascii: " ") { index += 1 }
            if index > start { fields.append(start..<index) }
        }
        guard fields.count >= 10 else { return nil }
        var socket = hl_diag_socket()
        socket.protocol = `protocol`
        socket.v6only = -1
        guard let local = endpoint(UnsafeRawBufferPointer(rebasing: line[fields[1]]), into: &socket.local),
              let remote = endpoint(UnsafeRawBufferPointer(rebasing: line[fields[2]]), into: &socket.remote),
              local.family == remote.family,
              let state = number(UnsafeRawBufferPointer(rebasing: line[fields[3]]), radix: 16, limit: UInt64(UInt8.max)),
              let uid = number(UnsafeRawBufferPointer(rebasing: line[fields[7]]), radix: 10, limit: UInt64(UInt32.max)),
              let inode = number(UnsafeRawBufferPointer(rebasing: line[fields[9]]), radix: 10, limit: UInt64.max) else { return nil }
        socket.family = UInt8(local.family)
        socket.local_port = local.port
        socket.remote_port = remote.port
        socket.state = UInt8(state)
        socket.uid = UInt32(uid)
        socket.inode = inode
        return socket
    }

    /// "0100007F:1F90" → 127.0.0.1, 8080. The kernel prints each 32-bit word of the address
    /// as a number in host byte order (little-endian here), and the port as a number.
    package static func endpoint(_ text: UnsafeRawBufferPointer, into address: inout (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                                                                            UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8))
        -> (family: Int32, port: UInt16)? {
        guard let colon = text.firstIndex(of: UInt8(ascii: ":")), colon == 8 || colon == 32,
              let port = number(UnsafeRawBufferPointer(rebasing: text[(colon + 1)...]), radix: 16, limit: UInt64(UInt16.max)) else { return nil }
        var words: [UInt32] = []
        for start in stride(from: 0, to: colon, by: 8) {
            guard let word = number(UnsafeRawBufferPointer(rebasing: text[start..<start + 8]), radix: 16, limit: UInt64(UInt32.max)) else { return nil }
            words.append(UInt32(word))
        }
        // The words' bytes as they lay in kernel memory: the address in network order.
        withUnsafeMutableBytes(of: &address) { bytes in
            words.withUnsafeBytes { bytes.copyMemory(from: $0) }
        }
        return (colon == 8 ? AF_INET : AF_INET6, UInt16(port))
    }

    /// A number of one or more digits, nothing else, no greater than `limit`.
    package static func number(_ text: UnsafeRawBufferPointer, radix: UInt64, limit: UInt64) -> UInt64? {
        guard !text.isEmpty else { return nil }
        var value: UInt64 = 0
        for byte in text {
            let digit: UInt64
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt64(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f") where radix == 16: digit = UInt64(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F") where radix == 16: digit = UInt64(byte - UInt8(ascii: "A") + 10)
            default: return nil
            }
            let (shifted, overflow) = value.multipliedReportingOverflow(by: radix)
            guard !overflow, shifted <= limit - digit else { return nil }
            value = shifted + digit
        }
        return value
    }

    /// "0100007F:1F90" → ("127.0.0.1", 8080), the text of one endpoint.
    package static func endpoint(_ text: Substring) -> (String, UInt16)? {
        var text = String(text)
        var socket = hl_diag_socket()
        guard let (family, port) = text.withUTF8({ endpoint(UnsafeRawBufferPointer($0), into: &socket.local) }) else { return nil }
        socket.family = UInt8(family)
        return (socket.localHost, port)
    }

    /// The whole text of a /proc file. /proc files report size 0 and are generated a page
    /// at a time, so they are read in a loop until end of file, never by their size.
    public static func read(_ path: String) -> String? {
        guard case .success(let bytes) = readBytes(path) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Why a file's bytes could not be read: the call that failed, or more than `limit` bytes.
    package enum ReadFailure: Error {
        case failed(SystemError)
        case tooLarge
    }

    /// A file's bytes, read 16 KB at a time until end of file (never by its size), at most `limit` of them.
    package static func readBytes(_ path: String, limit: Int = .max) -> Result<[UInt8], ReadFailure> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(.failed(SystemError.last("open"))) }
        defer { Glibc.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                bytes += chunk[..<count]
                if bytes.count > limit { return .failure(.tooLarge) }
            } else if count == 0 {
                return .success(bytes)
            } else if errno != EINTR {
                return .failure(.failed(SystemError.last("read")))
            }
        }
    }
}

extension Transport {
    package var ipProtocol: UInt8 { self == .tcp ? UInt8(IPPROTO_TCP) : UInt8(IPPROTO_UDP) }
}

extension hl_diag_socket {
    package var transport: Transport { self.protocol == UInt8(IPPROTO_TCP) ? .tcp : .udp }

    /// Sockets that take new traffic for their address: TCP listeners, and UDP sockets that
    /// are bound but not connected (a connected one only hears from its peer).
    package var isReceiving: Bool {
        transport == .tcp ? state == 0x0A : (state == 0x07 && remote_port == 0)
    }

    package var localHost: String { Self.text(family: family, address: local) }
    package var remoteHost: String { Self.text(family: family, address: remote) }

    /// An address as inet_ntop writes it: "127.0.0.1", "::1", "::ffff:127.0.0.1".
    package static func text(family: UInt8, address: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                                              UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)) -> String {
        var address = address
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(INET6_ADDRSTRLEN)) { buffer in
            guard inet_ntop(family == UInt8(AF_INET6) ? AF_INET6 : AF_INET, &address, buffer.baseAddress, socklen_t(buffer.count)) != nil else { return "?" }
            return String(cString: buffer.baseAddress!)
        }
    }
}

extension ProcNetEntry {
    package init(_ socket: hl_diag_socket) {
        self.init(transport: socket.transport, local: socket.localHost, port: socket.local_port, remote: socket.remoteHost,
                  remotePort: socket.remote_port, state: socket.state, uid: socket.uid, inode: socket.inode)
    }
}

/// A process that holds a socket.
public struct SocketOwner: Codable, Sendable, Equatable, Hashable {
    public var pid: Int32
    public var command: String
}

public enum SocketOwners {
    /// Maps socket inodes to the processes that hold them, through /proc/PID/fd. Where a
    /// process's descriptors cannot be read (another user's, when not root), `complete` is false.
    public static func find(_ inodes: Set<UInt64>) -> (owners: [UInt64: [SocketOwner]], complete: Bool) {
        let sorted = inodes.sorted()
        let (owners, complete) = find(sorted: sorted)
        var found: [UInt64: [SocketOwner]] = [:]
        for (inode, holders) in zip(sorted, owners) where !holders.isEmpty { found[inode] = holders }
        return (found, complete)
    }

    /// The owners of each of `inodes` (sorted), at its position there: one pass over every
    /// process's descriptors, in C (a readlink each, as `ss -p` does), reporting only the
    /// sockets asked for. Each owner's name is read once, and the sockets that one process
    /// alone holds share one array, not one each.
    package static func find(sorted inodes: [UInt64]) -> (owners: [[SocketOwner]], complete: Bool) {
        let scan = scan(sorted: inodes, readingOptions: false)
        return (scan.owners, scan.complete)
    }

    /// What one pass over /proc finds: each inode's owners and, where asked, its options.
    package struct Scan {
        package var owners: [[SocketOwner]]
        package var complete: Bool
        /// One per inode, at its position; empty when the options were not asked for.
        package var options: [hl_socket_options] = []

        package init(owners: [[SocketOwner]], complete: Bool, options: [hl_socket_options] = []) {
            self.owners = owners
            self.complete = complete
            self.options = options
        }
    }

    /// `find(sorted:)`, and with `readingOptions` each socket's options from the socket
    /// itself, in the same pass: one pidfd per process that holds an inode asked for, one
    /// pidfd_getfd per such descriptor, a few getsockopt calls, and the copy closed at once.
    /// `families`: each inode's address family (AF_INET, AF_INET6) at its position, as
    /// sock_diag or /proc/net told it, which spares one getsockopt (SO_DOMAIN) per socket;
    /// empty, or 0 at a position, asks the socket.
    package static func scan(sorted inodes: [UInt64], readingOptions: Bool, families: [UInt8] = []) -> Scan {
        guard !inodes.isEmpty else { return Scan(owners: [], complete: true) }
        struct Found {
            package let inodes: [UInt64]
            package var owners: [[SocketOwner]]
            package var alone: [Int32: [SocketOwner]] = [:]
        }
        var found = Found(inodes: inodes, owners: Array(repeating: [], count: inodes.count))
        var options = readingOptions ? [hl_socket_options](repeating: hl_socket_options(), count: inodes.count) : []
        if readingOptions && families.count == inodes.count {
            for index in options.indices { options[index].domain = Int32(families[index]) }
        }
        let status = withUnsafeMutablePointer(to: &found) { pointer in
            inodes.withUnsafeBufferPointer { sorted in
                options.withUnsafeMutableBufferPointer { options in
                    hl_socket_owners_options(sorted.baseAddress, sorted.count, { pid, inode, comm, context in
                        let found = context!.assumingMemoryBound(to: Found.self)
                        let position = SocketOwners.position(of: inode, in: found.pointee.inodes)
                        let alone = found.pointee.alone[pid] ?? {
                            // The name the scan read beside the descriptors, not a later reader's.
                            let command = comm.map { SocketOwners.commandName(String(cString: $0)) } ?? "?"
                            found.pointee.alone[pid] = [SocketOwner(pid: pid, command: command)]
                            return found.pointee.alone[pid]!
                        }()
                        if found.pointee.owners[position].isEmpty {
                            found.pointee.owners[position] = alone
                        } else if !found.pointee.owners[position].contains(alone[0]) {
                            found.pointee.owners[position].append(alone[0])
                        }
                    }, pointer, readingOptions ? options.baseAddress : nil)
                }
            }
        }
        return Scan(owners: found.owners, complete: status == 1, options: options)
    }

    /// Where `inode` is (or would go) in `sorted`: the first position not below it.
    package static func position(of inode: UInt64, in sorted: [UInt64]) -> Int {
        var low = 0
        var high = sorted.count
        while low < high {
            let middle = (low + high) / 2
            if sorted[middle] < inode { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// A process's name as /proc/PID/comm holds it, less the one newline the kernel appends.
    /// Nothing else is trimmed: any user can name a process " sshd" or "sshd\n", and the
    /// audit shows (escaped) what is there, not a cleaner name it could be mistaken for.
    package static func commandName(_ comm: String) -> String {
        var scalars = comm.unicodeScalars
        if scalars.last == "\n" { scalars.removeLast() }
        return String(scalars)
    }

    /// The pids from `pid`'s parent up to init. A container's init counts as a parent like any
    /// other (it is often the service's own master, nginx as pid 1); which sockets two
    /// addresses' processes hold, not who started whom, decides whether they are one service.
    public static func ancestors(of pid: Int32) -> [Int32] { ancestors(of: pid, reading: ProcNet.read) }

    /// `ancestors(of:)` over any reader of /proc files.
    package static func ancestors(of pid: Int32, reading read: (String) -> String?) -> [Int32] {
        var chain: [Int32] = []
        var current = pid
        while current > 1, chain.count < 64,
              let status = read("/proc/\(current)/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("PPid:") }),
              let parent = Int32(line.dropFirst(5).trimmed) {
            chain.append(parent)
            current = parent
        }
        return chain
    }

    /// Whether two processes belong to one service: one started the other, or one parent
    /// (other than init) started both, as a master starts its workers.
    public static func related(_ one: Int32, _ other: Int32, ancestors: (Int32) -> [Int32] = ancestors(of:)) -> Bool {
        let first = ancestors(one)
        let second = ancestors(other)
        if first.contains(other) || second.contains(one) { return true }
        guard let parent = first.first, parent > 1 else { return false }
        return second.first == parent
    }
}
