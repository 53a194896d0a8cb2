import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Glibc

/// An initramfs archive in the "newc" cpio format, the one the kernel unpacks
/// (Documentation/driver-api/early-userspace/buffer-format.rst): for each entry a 110-byte
/// ASCII header (magic 070701 and thirteen 8-digit hex fields), the NUL-terminated name padded
/// to a multiple of four, then the data padded to a multiple of four; `TRAILER!!!` ends it.
/// Uncompressed: every kernel accepts it, and no compressor is needed on the host.
struct CpioWriter {
    enum Kind {
        case directory
        case file
        case symlink
        case characterDevice(major: UInt32, minor: UInt32)

        var typeBits: UInt32 {
            switch self {
            case .directory: 0o040000
            case .file: 0o100000
            case .symlink: 0o120000
            case .characterDevice: 0o020000
            }
        }
    }

    private let fd: Int32
    private var inode: UInt32 = 1
    private var written = 0
    private var buffer: [UInt8] = []
    private(set) var failure: SystemError?
    /// Folders already in the archive, so that each parent is written once, before its children.
    private var folders: Set<String> = ["/"]

    /// Writes to `fd`, which the caller opened and closes.
    init(fd: Int32) { self.fd = fd }

    var size: Int { written + buffer.count }

    /// Adds `path` (absolute or relative, stored without the leading slash) and any missing parent folders.
    mutating func add(_ path: String, kind: Kind, permissions: UInt32, data: [UInt8] = []) {
        let clean = "/" + path.split(separator: "/").joined(separator: "/")
        addParents(of: clean)
        if case .directory = kind {
            guard folders.insert(clean).inserted else { return }
        }
        entry(name: String(clean.dropFirst()), mode: kind.typeBits | (permissions & 0o7777), kind: kind, data: data)
    }

    /// A folder, once; its parents first.
    mutating func addFolder(_ path: String) { add(path, kind: .directory, permissions: 0o755) }

    private mutating func addParents(of path: String) {
        var parent = ""
        for component in path.split(separator: "/").dropLast() {
            parent += "/" + component
            if !folders.contains(parent) {
                folders.insert(parent)
                entry(name: String(parent.dropFirst()), mode: Kind.directory.typeBits | 0o755, kind: .directory, data: [])
            }
        }
    }

    /// Ends the archive and flushes it. Returns the first write error, if any.
    mutating func finish() -> SystemError? {
        entry(name: "TRAILER!!!", mode: 0, kind: .file, data: [], inodeOverride: 0)
        flush()
        return failure
    }

    private mutating func entry(name: String, mode: UInt32, kind: Kind, data: [UInt8], inodeOverride: UInt32? = nil) {
        let nameBytes = Array(name.utf8) + [0]
        var rdevMajor: UInt32 = 0, rdevMinor: UInt32 = 0
        if case .characterDevice(let major, let minor) = kind { rdevMajor = major; rdevMinor = minor }
        let nlink: UInt32 = if case .directory = kind { 2 } else { 1 }
        let fields: [UInt32] = [inodeOverride ?? inode, mode, 0, 0, nlink, 0, UInt32(data.count), 0, 0, rdevMajor, rdevMinor, UInt32(nameBytes.count), 0]
        inode += 1
        var header = Array("070701".utf8)
        for field in fields { header += Self.hex8(field) }
        buffer += header
        buffer += nameBytes
        pad()
        buffer += data
        pad()
        if buffer.count >= 1 << 20 { flush() }
    }

    private mutating func pad() {
        while (written + buffer.count) % 4 != 0 { buffer.append(0) }
    }

    private mutating func flush() {
        guard failure == nil, !buffer.isEmpty else { written += buffer.count; buffer.removeAll(keepingCapacity: true); return }
        if let code = writeAll(fd, buffer) { failure = SystemError(call: "write", code: code) }
        written += buffer.count
        buffer.removeAll(keepingCapacity: true)
    }

    static func hex8(_ value: UInt32) -> [UInt8] {
        let digits = Array("0123456789ABCDEF".utf8)
        return (0..<8).reversed().map { digits[Int((value >> (UInt32($0) * 4)) & 0xf)] }
    }
}

/// Reads a newc archive back: the tests check the writer against the format with it.
enum CpioReader {
    struct Entry: Equatable {
        let name: String
        let mode: UInt32
        let rdevMajor: UInt32
        let rdevMinor: UInt32
        let data: [UInt8]
    }

    struct Malformed: Error, Equatable {
        let reason: String
    }

    static func entries(_ bytes: [UInt8]) throws(Malformed) -> [Entry] {
        var entries: [Entry] = []
        var offset = 0
        while true {
            guard offset + 110 <= bytes.count else { throw Malformed(reason: "truncated header at \(offset)") }
            guard Array(bytes[offset..<offset + 6]) == Array("070701".utf8) else { throw Malformed(reason: "bad magic at \(offset)") }
            var fields: [UInt32] = []
            for index in 0..<13 {
                let start = offset + 6 + index * 8
                guard let value = UInt32(String(decoding: bytes[start..<start + 8], as: UTF8.self), radix: 16) else {
                    throw Malformed(reason: "bad field \(index) at \(offset)")
                }
                fields.append(value)
            }
            let nameSize = Int(fields[11]), fileSize = Int(fields[6])
            let nameStart = offset + 110
            guard nameSize > 0, nameStart + nameSize <= bytes.count, bytes[nameStart + nameSize - 1] == 0 else { throw Malformed(reason: "bad name at \(offset)") }
            let name = String(decoding: bytes[nameStart..<nameStart + nameSize - 1], as: UTF8.self)
            let dataStart = (nameStart + nameSize + 3) & ~3
            guard dataStart + fileSize <= bytes.count else { throw Malformed(reason: "truncated data of \(name)") }
            if name == "TRAILER!!!" { return entries }
            entries.append(Entry(name: name, mode: fields[1], rdevMajor: fields[9], rdevMinor: fields[10], data: Array(bytes[dataStart..<dataStart + fileSize])))
            offset = (dataStart + fileSize + 3) & ~3
        }
    }
}
