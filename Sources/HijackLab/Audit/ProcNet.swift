import Foundation
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
        ("/proc/net/tcp", .tcp), ("/proc/net/tcp6", .tcp), ("/proc/net/udp", .udp), ("/proc/net/udp6", .udp),
    ]

    /// Parses one file's text. The header and any malformed row are skipped; `skipped` counts the latter.
    public static func parse(_ text: String, transport: Transport) -> (entries: [ProcNetEntry], skipped: Int) {
        var entries: [ProcNetEntry] = []
        var skipped = 0
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 10,
                  let (local, port) = endpoint(fields[1]),
                  let (remote, remotePort) = endpoint(fields[2]),
                  let state = UInt8(fields[3], radix: 16),
                  let uid = UInt32(fields[7]),
                  let inode = UInt64(fields[9]) else {
                skipped += 1
                continue
            }
            entries.append(ProcNetEntry(transport: transport, local: local, port: port, remote: remote, remotePort: remotePort,
                                        state: state, uid: uid, inode: inode))
        }
        return (entries, skipped)
    }

    /// "0100007F:1F90" → ("127.0.0.1", 8080). The kernel prints each 32-bit word of the
    /// address as a number in host byte order (little-endian here), and the port as a number.
    static func endpoint(_ text: Substring) -> (String, UInt16)? {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1], radix: 16) else { return nil }
        let hex = parts[0]
        guard hex.count == 8 || hex.count == 32 else { return nil }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 8)
            guard let word = UInt32(hex[index..<next], radix: 16) else { return nil }
            // The word's bytes as they lay in kernel memory: the address in network order.
            withUnsafeBytes(of: word) { bytes += $0 }
            index = next
        }
        return SocketAddress(networkOrder: bytes, port: port).map { ($0.host, port) }
    }

    /// The whole text of a /proc file. /proc files report size 0 and are generated a page
    /// at a time, so they are read in a loop until end of file, never by their size.
    public static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                bytes += chunk[..<count]
            } else if count == 0 {
                return String(decoding: bytes, as: UTF8.self)
            } else if errno != EINTR {
                return nil
            }
        }
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
        var owners: [UInt64: [SocketOwner]] = [:]
        var complete = true
        guard !inodes.isEmpty, let proc = opendir("/proc") else { return ([:], inodes.isEmpty) }
        defer { closedir(proc) }
        var link = [CChar](repeating: 0, count: 64)
        while let entry = readdir(proc) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = Int32(name) else { continue }
            guard let fds = opendir("/proc/\(pid)/fd") else {
                if errno == EACCES { complete = false }
                continue
            }
            var command: String?
            while let fd = readdir(fds) {
                let fdName = withUnsafeBytes(of: fd.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard fdName.first?.isNumber == true else { continue }
                let count = readlink("/proc/\(pid)/fd/\(fdName)", &link, link.count - 1)
                guard count > 8 else { continue }
                let target = String(decoding: link[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                guard target.hasPrefix("socket:["), let inode = UInt64(target.dropFirst(8).dropLast()), inodes.contains(inode) else { continue }
                if command == nil {
                    command = ProcNet.read("/proc/\(pid)/comm").map(commandName) ?? "?"
                }
                let owner = SocketOwner(pid: pid, command: command!)
                if owners[inode]?.contains(owner) != true { owners[inode, default: []].append(owner) }
            }
            closedir(fds)
        }
        return (owners, complete)
    }

    /// A process's name as /proc/PID/comm holds it, less the one newline the kernel appends.
    /// Nothing else is trimmed: any user can name a process " sshd" or "sshd\n", and the
    /// audit shows (escaped) what is there, not a cleaner name it could be mistaken for.
    static func commandName(_ comm: String) -> String {
        var scalars = comm.unicodeScalars
        if scalars.last == "\n" { scalars.removeLast() }
        return String(scalars)
    }

    /// The pids from `pid` up to init.
    public static func ancestors(of pid: Int32) -> [Int32] {
        var chain: [Int32] = []
        var current = pid
        while current > 1, chain.count < 64,
              let status = ProcNet.read("/proc/\(current)/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("PPid:") }),
              let parent = Int32(line.dropFirst(5).trimmingCharacters(in: .whitespaces)) {
            chain.append(parent)
            current = parent
        }
        return chain
    }

    /// Whether one of the two processes started the other (directly or further up).
    public static func lineage(_ one: Int32, _ other: Int32) -> Bool {
        ancestors(of: one).contains(other) || ancestors(of: other).contains(one)
    }

    /// Whether two processes belong to one service: one started the other, or one parent
    /// (other than init) started both, as a master starts its workers.
    public static func related(_ one: Int32, _ other: Int32) -> Bool {
        let first = ancestors(of: one)
        let second = ancestors(of: other)
        if first.contains(other) || second.contains(one) { return true }
        guard let parent = first.first, parent > 1 else { return false }
        return second.first == parent
    }
}
