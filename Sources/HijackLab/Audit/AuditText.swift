import HijackSystem

/// The audit for people: an ss-like table of receiving sockets, then one line per finding,
/// each with its fix and evidence lines under it.
public enum AuditText {
    /// `name(for:)` may replace a pid by a name (the report uses scenario socket ids);
    /// `portText` replaces port numbers (the report writes PORT).
    ///
    /// Process, user and device names come from /proc and the password database, and any
    /// local user can choose them: each cell and each finding line is escaped for the
    /// terminal here, after every substitution, so that `name` returns raw text and no
    /// caller can forget it. The report's findings keep the raw names, for the JSON.
    public static func render(_ report: AuditReport, minimum: AuditFinding.Severity = .info,
                              name: (SocketOwner) -> String = { "\($0.pid)/\($0.command)" },
                              portText: @escaping @Sendable (UInt16) -> String = { String($0) }) -> String {
        var pieces: [String] = []
        write(report, minimum: minimum, name: name, portText: portText) { pieces.append($0) }
        return pieces.joined(separator: "\n")
    }

    /// The text of `render`, handed to `emit` in pieces of whole lines (about 64 KB, without
    /// the last newline), so that 50,000 rows never stand in memory twice: a caller that
    /// prints each piece as a line (`console.out`) prints exactly `render`'s text.
    public static func write(_ report: AuditReport, minimum: AuditFinding.Severity = .info,
                             name: (SocketOwner) -> String = { "\($0.pid)/\($0.command)" },
                             portText: @escaping @Sendable (UInt16) -> String = { String($0) }, to emit: (String) -> Void) {
        // Every finding is at least info: then the report's own array, not a copy.
        let shown = minimum == .info ? report.findings : report.findings.filter { $0.severity >= minimum }
        let byInode = FindingIndex(shown)
        withoutActuallyEscaping(emit) { emit in
            var output = Lines(emit: emit)
            write(report, shown: shown, byInode: byInode, minimum: minimum, name: name, portText: portText, to: &output)
            output.flush()
        }
    }

    private static func write(_ report: AuditReport, shown: [AuditFinding], byInode: FindingIndex, minimum: AuditFinding.Severity,
                              name: (SocketOwner) -> String, portText: @escaping @Sendable (UInt16) -> String, to output: inout Lines) {

        // Two passes over the rows, the first for the columns' widths, the second to write:
        // the cells are made twice, and the table (5 MB at 50,000 sockets) is never held.
        // The options' column only where the audit read them (not with --no-options).
        let optionsShown = report.sockets.contains { $0.options != nil }
        let header = ["PROTO", "LOCAL ADDRESS", "PORT"] + (optionsShown ? ["OPTIONS"] : []) + ["UID/USER", "PID/COMMAND", "FINDING"]
        // One text per process, not per socket: a server's thousands of sockets share it.
        var ownerCells: [SocketOwner: String] = [:]
        let ownerNames = report.sockets.map { socket -> String in
            guard socket.owners.count == 1 else { return socket.owners.map(name).joined(separator: ",") }
            if let known = ownerCells[socket.owners[0]] { return known }
            let text = name(socket.owners[0])
            ownerCells[socket.owners[0]] = text
            return text
        }
        let rows = order(report.sockets, ownerNames: ownerNames)
        let rowCells = RowCells(report: report, shown: shown, byInode: byInode, ownerNames: ownerNames, optionsShown: optionsShown, portText: portText)
        var table = Table(header: header)
        // Many rows: two threads, each measuring half and then formatting every other chunk,
        // the second's chunk written after the first's, so the text is the same and at most
        // one chunk waits in memory.
        let parallel = rows.count >= 2 * rowChunk
        if parallel {
            let half = rows.count / 2
            let secondHalf = Array(rows[half...])
            let (other, _) = onSecondThread({ () -> Table in
                var widths = Table(header: header)
                rowCells.measure(secondHalf[...], into: &widths)
                return widths
            }, while: { rowCells.measure(rows[..<half], into: &table) })
            table.widen(to: other)
        } else {
            rowCells.measure(rows[...], into: &table)
        }
        table.write(header, to: &output)
        var start = 0
        while start < rows.count {
            let firstEnd = min(start + rowChunk, rows.count)
            let secondEnd = min(firstEnd + rowChunk, rows.count)
            guard parallel, secondEnd > firstEnd else {
                rowCells.write(rows[start..<firstEnd], with: &table, to: &output)
                start = firstEnd
                continue
            }
            let second = Array(rows[firstEnd..<secondEnd])
            let widths = table
            let (pieces, _) = onSecondThread({ () -> [String] in
                var pieces: [String] = []
                var own = widths
                var lines = Lines { pieces.append($0) }
                rowCells.write(second[...], with: &own, to: &lines)
                lines.flush()
                return pieces
            }, while: { rowCells.write(rows[start..<firstEnd], with: &table, to: &output) })
            for piece in pieces { output.line(piece) }
            start = secondEnd
        }

        output.line("")
        if shown.isEmpty {
            output.line(report.findings.isEmpty ? "No findings." : "No findings at \(minimum.rawValue) or above (\(report.findings.count) below).")
        }
        // Only the sockets a shown finding names: at 50,000 sockets, a map of all is 2 MB.
        var socketByInode: [UInt64: Int] = [:]
        for (index, socket) in report.sockets.enumerated() where byInode.contains(socket.inode) && socketByInode[socket.inode] == nil {
            socketByInode[socket.inode] = index
        }
        for finding in shown {
            // Only the finding's own sockets can be named in its explanation, fix and evidence.
            let port = portText(finding.port)
            func substituted(_ original: String) -> String {
                var text = original
                if port != String(finding.port) {
                    text = replacing("port \(finding.port)", with: "port \(port)", in: replacing(":\(finding.port)", with: ":\(port)", in: text))
                }
                for inode in finding.inodes {
                    for owner in socketByInode[inode].map({ report.sockets[$0].owners }) ?? [] {
                        text = replacing("pid \(owner.pid)/\(owner.command)", with: name(owner), in: text)
                    }
                }
                return text
            }
            output.line("[\(finding.severity.rawValue)] \(finding.kind.rawValue) \(finding.transport.rawValue)/\(port): \(terminal(substituted(finding.explanation)))")
            // What to do next, and the command that shows it, under the finding.
            if let fix = finding.fix { output.line("  fix: " + terminal(substituted(fix))) }
            if let evidence = finding.evidence { output.line("  evidence: " + terminal(substituted(evidence))) }
        }
        if !report.ownersComplete {
            output.line("Some owners are shown as ?: their processes belong to other users. Root sees more.")
        } else if report.sockets.contains(where: { $0.owners.isEmpty }) {
            output.line("Some owners are shown as ?: no process visible here holds them (one in another PID namespace, or one that just closed them).")
        }
        if !report.socketDetails {
            output.line("This kernel gave no sock_diag answer: IPV6_V6ONLY and bound devices are unknown, and a lone [::] is read as dual-stack.")
        }
        if report.skippedRows > 0 { output.line("\(report.skippedRows) rows of /proc/net could not be read and were skipped.") }
    }

    /// Rows a thread formats at a time, when two share the table.
    package static let rowChunk = 2048

    /// The cells of the table's rows: what either thread needs to make them.
    package struct RowCells: Sendable {
        let report: AuditReport
        let shown: [AuditFinding]
        let byInode: FindingIndex
        let ownerNames: [String]
        let optionsShown: Bool
        let portText: @Sendable (UInt16) -> String

        /// The cells of a row, into one reused array; the last (FINDING), never padded, only
        /// where `finding` (the first pass measures the others).
        func fill(_ index: Int, finding: Bool, into cells: inout [String]) {
            let socket = report.sockets[index]
            cells.removeAll(keepingCapacity: true)
            var address = socket.address
            if let device = socket.device { address += "%" + device }
            if socket.v6only == true { address += " v6only" }
            if let remote = socket.remote { address += " -> " + remote }
            cells.append(socket.transport.rawValue)
            cells.append(address)
            cells.append(portText(socket.port))
            if optionsShown { cells.append(socket.options?.compact ?? "-") }
            cells.append("\(socket.uid)/\(socket.user)")
            cells.append(socket.owners.isEmpty ? "?" : ownerNames[index])
            guard finding else { return }
            let involved = byInode.positions(of: socket.inode)
            cells.append(involved.isEmpty ? "-" : involved.map { role(of: socket, in: shown[$0]) }.joined(separator: ", "))
        }

        func measure(_ rows: ArraySlice<Int>, into table: inout Table) {
            var cells: [String] = []
            cells.reserveCapacity(8)
            for index in rows {
                fill(index, finding: false, into: &cells)
                table.measure(cells)
            }
        }

        func write(_ rows: ArraySlice<Int>, with table: inout Table, to output: inout Lines) {
            var cells: [String] = []
            cells.reserveCapacity(8)
            for index in rows {
                fill(index, finding: true, into: &cells)
                table.write(cells, to: &output)
            }
        }
    }

    /// Which findings name each inode: (inode, position) pairs sorted by inode, one array for
    /// all of them (a dictionary of arrays was one allocation per socket named).
    package struct FindingIndex: Sendable {
        private var pairs: [(inode: UInt64, position: Int32)] = []

        package init(_ findings: [AuditFinding]) {
            pairs.reserveCapacity(findings.reduce(0) { $0 + $1.inodes.count })
            for (position, finding) in findings.enumerated() {
                for inode in finding.inodes { pairs.append((inode, Int32(position))) }
            }
            // By inode, then position: each inode's findings in the report's order.
            pairs.sort { ($0.inode, $0.position) < ($1.inode, $1.position) }
        }

        /// The positions of the findings that name `inode`, in the report's order.
        package func positions(of inode: UInt64) -> [Int] {
            var low = 0
            var high = pairs.count
            while low < high {
                let middle = (low + high) / 2
                if pairs[middle].inode < inode { low = middle + 1 } else { high = middle }
            }
            var found: [Int] = []
            while low < pairs.count && pairs[low].inode == inode {
                found.append(Int(pairs[low].position))
                low += 1
            }
            return found
        }

        package func contains(_ inode: UInt64) -> Bool { !positions(of: inode).isEmpty }
    }

    /// The table's order: the audit's, with ties (one address, device and uid) broken by the
    /// owner's name as shown, not by the inode, so that a table that names owners stably (the
    /// report's socket ids) reads the same every run. `Audit.run` already sorts its sockets,
    /// so mostly only the ties are sorted here.
    package static func order(_ sockets: [AuditSocket], ownerNames: [String]) -> [Int] {
        var order = Array(sockets.indices)
        if !sockets.indices.dropFirst().allSatisfy({ !AuditSocket.precedes(sockets[$0], sockets[$0 - 1]) }) {
            order.sort { AuditSocket.precedes(sockets[$0], sockets[$1]) }
        }
        var start = 0
        while start < order.count {
            var end = start + 1
            while end < order.count && AuditSocket.tied(sockets[order[start]], sockets[order[end]]) { end += 1 }
            if end - start > 1 { order[start..<end].sort { (ownerNames[$0], sockets[$0].inode) < (ownerNames[$1], sockets[$1].inode) } }
            start = end
        }
        return order
    }

    /// What this socket is in the finding: the one that takes traffic, or the one that loses it.
    package static func role(of socket: AuditSocket, in finding: AuditFinding) -> String {
        switch finding.kind {
        case .interception, .shadowing:
            let role = finding.inodes.first == socket.inode ? "takes" : "loses"
            return "\(finding.kind.rawValue) (\(role)\(finding.likelyIntruder == socket.inode ? ", likely intruder" : ""))"
        case .loadBalancing, .exposure, .takeable, .unexpectedOwner:
            return finding.kind.rawValue
        }
    }

    /// Whether every byte is printable ASCII other than the backslash: text the terminal
    /// escape leaves as it is, one column per byte.
    package static func isPlain(_ text: String) -> Bool {
        text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\\") }
    }

    package static func terminal(_ text: String) -> String { isPlain(text) ? text : UntrustedText.terminal(text) }

    /// `text.replacing(target, with: replacement)`, by bytes where both are printable ASCII:
    /// there each character is one byte and one grapheme, and the standard library's search
    /// by whole characters (canonical equivalence) finds exactly what a byte search finds.
    package static func replacing(_ target: String, with replacement: String, in text: String) -> String {
        var target = target
        var text = text
        // Both printable ASCII and no match, the common case: the text itself, found by one
        // pass over its bytes and no copy of them.
        let plain = target.withUTF8 { needle in
            text.withUTF8 { bytes -> Bool? in
                guard !needle.isEmpty, needle.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else { return nil }
                var printable = true
                var found = false
                var index = 0
                while index < bytes.count {
                    let byte = bytes[index]
                    if byte < 0x20 || byte >= 0x7f { printable = false; break }
                    if !found, byte == needle[0], index + needle.count <= bytes.count,
                       UnsafeBufferPointer(rebasing: bytes[index..<index + needle.count]).elementsEqual(needle) { found = true }
                    index += 1
                }
                return printable ? found : nil
            }
        }
        switch plain {
        case false?: return text
        case nil: return text.replacing(target, with: replacement)
        case true?: break
        }
        let bytes = Array(text.utf8)
        let needle = Array(target.utf8)
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count + replacement.utf8.count)
        var start = 0
        var index = 0
        while index + needle.count <= bytes.count {
            if bytes[index] == needle[0] && bytes[index..<index + needle.count].elementsEqual(needle) {
                result += bytes[start..<index]
                result += replacement.utf8
                index += needle.count
                start = index
            } else {
                index += 1
            }
        }
        result += bytes[start...]
        return String(decoding: result, as: UTF8.self)
    }

    /// The table's columns: each cell escaped, padded to its column's widest but the last,
    /// two spaces between columns.
    package struct Table: Sendable {
        private var widths: [Int]
        private var line: [UInt8] = []

        package init(header: [String]) {
            widths = Array(repeating: 0, count: header.count)
            measure(header)
        }

        /// Each column as wide as the wider of the two measures.
        package mutating func widen(to other: Table) {
            for column in widths.indices { widths[column] = max(widths[column], other.widths[column]) }
        }

        package mutating func measure(_ row: [String]) {
            for (column, cell) in row.enumerated() {
                // Plain ASCII is as wide as its bytes; anything else is measured in the UTF-16 units it
                // is padded in, so that no cell is ever cut (an emoji is one character but two units).
                widths[column] = max(widths[column], AuditText.isPlain(cell) ? cell.utf8.count : UntrustedText.terminal(cell).utf16.count)
            }
        }

        package mutating func write(_ row: [String], to output: inout Lines) {
            line.removeAll(keepingCapacity: true)
            for (column, cell) in row.enumerated() {
                let last = column == row.count - 1
                if column > 0 { line += [0x20, 0x20] }
                if AuditText.isPlain(cell) {
                    var cell = cell
                    cell.withUTF8 { line.append(contentsOf: $0) }
                    if !last { line.append(contentsOf: repeatElement(0x20, count: widths[column] - cell.utf8.count)) }
                } else {
                    // Padded in UTF-16 units, as Foundation's padding counted, to a width measured the same way.
                    let escaped = UntrustedText.terminal(cell)
                    line += (last ? escaped : escaped.padded(toUTF16Length: widths[column])).utf8
                }
            }
            output.line(line)
        }
    }

    /// Lines gathered into pieces of about 64 KB, joined by newlines, each piece handed on.
    package struct Lines {
        package let emit: (String) -> Void
        private var piece: [UInt8] = []
        private var empty = true

        package init(emit: @escaping (String) -> Void) { self.emit = emit }

        package mutating func line(_ text: String) {
            if !empty { piece.append(0x0a) }
            var text = text
            text.withUTF8 { piece.append(contentsOf: $0) }
            empty = false
            if piece.count >= 65_536 { flush() }
        }

        package mutating func line(_ bytes: [UInt8]) {
            if !empty { piece.append(0x0a) }
            piece += bytes
            empty = false
            if piece.count >= 65_536 { flush() }
        }

        package mutating func flush() {
            guard !empty else { return }
            emit(String(decoding: piece, as: UTF8.self))
            piece.removeAll(keepingCapacity: true)
            empty = true
        }
    }
}
