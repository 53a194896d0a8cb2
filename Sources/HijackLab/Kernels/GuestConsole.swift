import HijackSystem

/// The guest's console (qemu's serial port, on qemu's stdout) as the host keeps it: the last
/// 256 KiB in a fixed ring, never a file, so a guest that writes one endless line costs no more
/// than that. Kernel messages and the init's own words arrive here.
struct ConsoleRing {
    static let capacity = 256 * 1024
    /// Lines an excerpt shows, and the characters kept of each.
    static let excerptLines = 15
    static let lineWidth = 240

    private var storage: [UInt8]
    /// Where the next byte goes, once the ring is full: the oldest byte.
    private var next = 0
    private var full = false
    private(set) var total = 0

    init(capacity: Int = ConsoleRing.capacity) {
        storage = []
        storage.reserveCapacity(capacity)
        self.capacity = capacity
    }

    private let capacity: Int

    mutating func append(_ bytes: [UInt8]) {
        total += bytes.count
        var slice = bytes[...]
        if slice.count >= capacity {
            storage = Array(slice.suffix(capacity))
            next = 0
            full = true
            return
        }
        if !full {
            let room = capacity - storage.count
            storage += slice.prefix(room)
            slice = slice.dropFirst(room)
            if storage.count == capacity { full = true; next = 0 }
        }
        // Two copies at most: up to the end of the storage, then from its start.
        while !slice.isEmpty {
            let count = min(slice.count, capacity - next)
            storage.replaceSubrange(next..<next + count, with: slice.prefix(count))
            slice = slice.dropFirst(count)
            next = (next + count) % capacity
        }
    }

    /// What the ring holds, oldest first.
    var bytes: [UInt8] { full ? Array(storage[next...] + storage[..<next]) : storage }

    /// The held text's lines (CR LF as LF); the first is partial when older bytes were dropped.
    var lines: [String] {
        String(decoding: bytes, as: UTF8.self).replacing("\r\n", with: "\n").replacing("\r", with: "\n")
            .split(separator: "\n").map(String.init)
    }

    /// The last lines, each cut at `lineWidth` characters (raw text: escape it where it is shown).
    func excerpt(_ count: Int = ConsoleRing.excerptLines) -> [String] {
        lines.suffix(count).map(Self.cut)
    }

    static func cut(_ line: String) -> String {
        line.count > lineWidth ? String(line.prefix(lineWidth)) + "…" : line
    }
}

/// What the guest's init said before it failed, from the console and the results port: its
/// own lines (GuestInit writes them with `prefix`), a Swift runtime's fatal error, and the
/// kernel's panic when pid 1 exited, decoded into the exit status or signal.
enum InitLastWords {
    static let prefix = GuestInit.complaintPrefix

    /// The init's own lines first, then a runtime crash, then the kernel's account of its exit:
    /// the kernel's panic may reach the console before the init's last write does.
    static func find(console: [String], notes: [String] = []) -> [String] {
        var own: [String] = []
        var crashes: [String] = []
        var exits: [String] = []
        for line in notes + console {
            if let range = line.range(of: prefix) {
                own.append(String(line[range.lowerBound...]))
            } else if line.contains("Fatal error") {
                // The runtime writes `FILE:LINE: Fatal error: MESSAGE`.
                crashes.append("the init crashed: " + line.trimmingSpaces())
            } else if let exit = panicExitCode(line) {
                exits.append("the init (pid 1) " + describe(exit) + " (the kernel: Attempted to kill init! exitcode=0x" + String(exit, radix: 16) + ")")
            }
        }
        var words: [String] = []
        for said in own.suffix(8) + crashes.suffix(2) + exits.suffix(2) where !words.contains(ConsoleRing.cut(said)) {
            words.append(ConsoleRing.cut(said))
        }
        return words
    }

    /// `Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000300` → 0x300.
    static func panicExitCode(_ line: String) -> Int32? {
        guard line.contains("Attempted to kill init!"), let range = line.range(of: "exitcode=0x") else { return nil }
        let digits = line[range.upperBound...].prefix { $0.isHexDigit }
        return Int32(digits, radix: 16)
    }

    /// A wait status as words: `exited with status 3`, `was killed by signal 11 (SIGSEGV)`.
    static func describe(_ status: Int32) -> String {
        let signal = status & 0x7f
        guard signal != 0 else { return "exited with status \((status >> 8) & 0xff)" }
        let names: [Int32: String] = [1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE",
                                      9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM"]
        return "was killed by signal \(signal)" + (names[signal].map { " (\($0))" } ?? "") + (status & 0x80 != 0 ? ", core dumped" : "")
    }
}

private extension String {
    func trimmingSpaces() -> String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
