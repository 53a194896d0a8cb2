import Foundation
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

/// Issue 9: a bad scenario file is refused with the place, the field and what was expected,
/// and no file can make the lab spend unbounded memory, processes or stack.
@Suite("Input errors and limits")
struct InputErrorTests {
    static let minimal = ScenarioFileTests.minimal

    func parse(_ text: String) throws(ScenarioError) -> Scenario {
        try ScenarioFile.parse(Data(text.utf8), file: "dir/fixture.json")
    }

    func parseError(_ text: String) -> ScenarioError? {
        #expect(throws: ScenarioError.self) { try parse(text) }
    }

    /// A scratch directory removed when the test ends, whatever happens in it.
    func withTemporaryDirectory(_ body: (String) throws -> Void) throws {
        var template = Array((FileManager.default.temporaryDirectory.path + "/hijack-lab-input-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        let directory = try #require(made.map { String(cString: $0) })
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try body(directory)
    }

    // MARK: - Syntax

    @Test("A syntax error gives its line and column and what was expected there")
    func syntaxErrorPosition() throws {
        // The comma after "lesson" is gone; the error is where "transport" begins, line 2.
        let text = Self.minimal.replacingOccurrences(of: "\"lesson\": \"l\", \"transport\"", with: "\"lesson\": \"l\" \"transport\"")
        #expect(text != Self.minimal)
        let error = try #require(parseError(text))
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let line = try #require(lines.firstIndex { $0.contains("\"transport\"") })
        let column = try #require(lines[line].range(of: "\"transport\"")).lowerBound.utf16Offset(in: lines[line]) + 1
        #expect(error.line == line + 1)
        #expect(error.column == column)
        #expect(error.field == "lesson")
        #expect(error.expected == "',' or '}' after an object member")
        #expect(error.found == "'\"'")
        #expect(error.description.hasPrefix("dir/fixture.json: line \(line + 1), column \(column): field `lesson`: expected ',' or '}' after an object member"))
    }

    /// RFC 8259 and nothing more: each case is text, the line and column of the error,
    /// and a fragment of what was expected.
    @Test("Strict JSON: what a lenient parser would guess at is an error with its position", arguments: [
        ("", 1, 1, "a JSON value"),
        ("{\"a\": [1, 2,]}", 1, 13, "no trailing comma"),
        ("{\"a\": 1,}", 1, 9, "a member name in double quotes after ','"),
        ("{'a': 1}", 1, 2, "a member name in double quotes"),
        ("{\"a\": 01}", 1, 7, "without leading zeros"),
        ("{\"a\": 1.}", 1, 9, "a digit after the decimal point"),
        ("{\"a\": -}", 1, 8, "a digit after '-'"),
        ("{\"a\": 1e}", 1, 9, "a digit in the exponent"),
        ("{\"a\": True}", 1, 7, "true, false or null"),
        ("{\"a\": nul}", 1, 7, "true, false or null"),
        ("{\"a\": \"x\\qy\"}", 1, 9, "one of \\\""),
        ("{\"a\": \"\\uD800\"}", 1, 8, "a low surrogate"),
        ("{\"a\": \"\\uDC00\"}", 1, 8, "a high surrogate"),
        ("{\"a\": \"\\u12G4\"}", 1, 12, "four hexadecimal digits"),
        ("{\"a\": \"line\nbreak\"}", 1, 12, "an escape such as \\n"),
        ("{\"a\": \"open", 1, 12, "'\"' to end the string"),
        ("{\"a\": 1} {}", 1, 10, "the end of the file"),
        ("{\n  \"a\": 1\n  \"b\": 2\n}", 3, 3, "',' or '}' after an object member"),
        ("[\n\t1,\n\t2\n\t3]", 4, 2, "',' or ']' after an array element"),
        ("{\"é\": 1 x}", 1, 9, "',' or '}'"),
        ("\u{FEFF}{}", 1, 1, "without a byte order mark"),
    ])
    func strictJSON(text: String, line: Int, column: Int, expected: String) throws {
        let error = try #require(parseError(text))
        #expect(error.line == line, "\(error)")
        #expect(error.column == column, "\(error)")
        #expect(error.expected.contains(expected), "\(error)")
    }

    @Test("Escapes, surrogate pairs and every number form RFC 8259 allows are read as written")
    func validJSON() throws {
        let value = try JSONParser.parse(Array(#"{"s": "a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", "n": [0, -0, 1.5, -2e-3, 1E400], "t": [true, false, null]}"#.utf8))
        guard case .object(let object) = value else { Issue.record("not an object: \(value)"); return }
        #expect(object.keys == ["s", "n", "t"])
        #expect(object["s"] == .string("a\"\\/\u{08}\u{0C}\n\r\té😀"))
        #expect(object["n"] == .array(["0", "-0", "1.5", "-2e-3", "1E400"].map { .number(JSONNumber(text: $0)) }))
        #expect(object["t"] == .array([.bool(true), .bool(false), .null]))
    }

    @Test("Invalid UTF-8 is an error at the byte where it starts")
    func invalidUTF8() throws {
        var bytes = Array("{\"name\": \"fixture\",\n \"title\": \"t".utf8)
        bytes += [0xC3, 0x28] // a two-byte lead followed by '('
        bytes += Array("\"}".utf8)
        let error = #expect(throws: ScenarioError.self) { try ScenarioFile.parse(Data(bytes), file: "dir/fixture.json") }
        #expect(error?.line == 2)
        #expect(error?.column == 13)
        #expect(error?.expected == "UTF-8 text")
        #expect(error?.found?.contains("0xC3") == true)
        // Overlong forms, encoded surrogates and values above U+10FFFF are not UTF-8 either.
        for bad: [UInt8] in [[0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0xFF]] {
            #expect(JSONParser.firstInvalidUTF8(Array("\"ab".utf8) + bad + [0x22]) == 3, "\(bad)")
        }
        #expect(JSONParser.firstInvalidUTF8(Array("\"é€😀\"".utf8)) == nil)
    }

    @Test("Nesting is bounded, so a hostile file cannot exhaust the stack")
    func depthLimit() throws {
        let limit = ScenarioLimits.nestingDepth
        let deepest = String(repeating: "[", count: limit) + String(repeating: "]", count: limit)
        #expect(throws: Never.self) { try JSONParser.parse(Array(deepest.utf8)) }
        for depth in [limit + 1, 1_000_000] {
            let error = #expect(throws: JSONParseError.self) { try JSONParser.parse(Array((String(repeating: "[", count: depth)).utf8)) }
            #expect(error?.expected == "at most \(limit) nested arrays and objects")
            #expect(error?.line == 1)
            #expect(error?.column == limit + 1)
        }
        // Inside a scenario, the error names the field it happened in.
        let deepStory = Self.minimal.replacingOccurrences(of: "\"story\": \"s\"", with: "\"story\": " + String(repeating: "[", count: limit) + String(repeating: "]", count: limit))
        let error = try #require(parseError(deepStory))
        #expect(error.field == "story" + String(repeating: "[0]", count: limit - 1))
        #expect(error.expected.contains("at most \(limit) nested"))
    }

    // MARK: - Duplicate keys

    @Test("A key written twice in one object is refused, naming its field and both places")
    func duplicateKey() throws {
        let text = Self.minimal.replacingOccurrences(of: "\"address\": \"127.0.0.1\"", with: "\"address\": \"127.0.0.1\", \"address\": \"::1\"")
        let error = try #require(parseError(text))
        #expect(error.field == "sockets[1].address")
        #expect(error.expected == "each key once in an object")
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let line = try #require(lines.firstIndex { $0.contains("\"::1\"") })
        let first = try #require(lines[line].range(of: "\"address\"")).lowerBound.utf16Offset(in: lines[line]) + 1
        let second = try #require(lines[line].range(of: "\"address\": \"::1\"")).lowerBound.utf16Offset(in: lines[line]) + 1
        #expect(error.line == line + 1)
        #expect(error.column == second)
        #expect(error.found == "\"address\" a second time (first at line \(line + 1), column \(first))")
        // The same key in two different objects is no repeat.
        #expect(throws: Never.self) { try parse(Self.minimal) }
        let top = Self.minimal.replacingOccurrences(of: "\"title\": \"t\"", with: "\"title\": \"t\", \"title\": \"u\"")
        #expect(parseError(top)?.field == "title")
    }

    // MARK: - Numbers

    @Test("A count out of range names its own field and shows what was written", arguments: [
        "1e400", "1.5", "-3", "1e3", "1000.0", "1001", "0", "-0", "99999999999999999999999",
    ])
    func connectionsOutOfRange(written: String) throws {
        let error = try #require(parseError(Self.minimal.replacingOccurrences(of: "\"connections\": 8", with: "\"connections\": \(written)")))
        #expect(error.field == "probes[0].connections")
        #expect(error.expected.hasPrefix("a whole number from 1 to \(ScenarioLimits.connectionsPerProbe)"))
        #expect(error.found == written)
        #expect(error.description.contains("found \(written)"))
    }

    @Test("The largest count is accepted, written in digits")
    func connectionsAtLimit() throws {
        let scenario = try parse(Self.minimal.replacingOccurrences(of: "\"connections\": 8", with: "\"connections\": \(ScenarioLimits.connectionsPerProbe)"))
        #expect(scenario.probes[0].connections == ScenarioLimits.connectionsPerProbe)
    }

    // MARK: - Counts

    /// A valid scenario with `sockets` sockets and `probes` probes, all on loopback.
    static func scenario(sockets: Int, probes: Int) -> String {
        let ids = (0..<sockets).map { "s\($0)" }
        let probeIDs = (0..<probes).map { "p\($0)" }
        let socketList = ids.map { "{\"id\": \"\($0)\", \"role\": \"server\", \"address\": \"127.0.0.1\"}" }.joined(separator: ",\n ")
        let probeList = probeIDs.map { "{\"id\": \"\($0)\", \"to\": \"loopback4\", \"connections\": 1}" }.joined(separator: ",\n ")
        let socketResults = ids.map { "\"\($0)\": {\"bind\": \"ok\", \"listen\": \"ok\"}" }.joined(separator: ", ")
        let probeResults = probeIDs.map { "\"\($0)\": {\"receivedBy\": []}" }.joined(separator: ", ")
        return """
        {"name": "fixture", "title": "t", "story": "s", "lesson": "l", "transport": "tcp",
         "sockets": [\(socketList)],
         "probes": [\(probeList)],
         "expect": {"verdict": "blocked", "sockets": {\(socketResults)}, "probes": {\(probeResults)}}}
        """
    }

    @Test("At most 64 sockets and 64 probes; one more is refused before any is read")
    func socketAndProbeCounts() throws {
        let most = try parse(Self.scenario(sockets: ScenarioLimits.sockets, probes: ScenarioLimits.probes))
        #expect(most.sockets.count == ScenarioLimits.sockets)
        #expect(most.probes.count == ScenarioLimits.probes)

        let sockets = try #require(parseError(Self.scenario(sockets: ScenarioLimits.sockets + 1, probes: 1)))
        #expect(sockets.field == "sockets")
        #expect(sockets.expected.hasPrefix("at most \(ScenarioLimits.sockets) sockets"))
        #expect(sockets.found == "\(ScenarioLimits.sockets + 1) sockets")

        let probes = try #require(parseError(Self.scenario(sockets: 1, probes: ScenarioLimits.probes + 1)))
        #expect(probes.field == "probes")
        #expect(probes.found == "\(ScenarioLimits.probes + 1) probes")

        // Thousands of sockets used to start agents until the system refused; now it is one message.
        let huge = try #require(parseError(Self.scenario(sockets: 5_000, probes: 1)))
        #expect(huge.field == "sockets")
    }

    // MARK: - File size and kind

    @Test("A file over 1 MiB is refused from its size, without reading it")
    func oversizedFile() throws {
        try withTemporaryDirectory { directory in
            // A sparse 64 GiB file: reading it whole would need 64 GiB of memory.
            let path = directory + "/fixture.json"
            let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            try #require(descriptor >= 0)
            let size: off_t = 64 << 30
            let truncated = ftruncate(descriptor, size)
            close(descriptor)
            try #require(truncated == 0, "ftruncate: \(SystemError.name(of: errno))")
            let error = #expect(throws: ScenarioError.self) { try ScenarioFile.load(path: path) }
            #expect(error?.file == path)
            #expect(error?.field == "")
            #expect(error?.expected == "a scenario file of at most 1 MiB (\(ScenarioLimits.fileBytes) bytes)")
            #expect(error?.found == "\(size) bytes")
        }
    }

    @Test("A file of exactly 1 MiB loads; one byte more is refused")
    func sizeBoundary() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/fixture.json"
            let padding = ScenarioLimits.fileBytes - Self.minimal.utf8.count
            let atLimit = Self.minimal + String(repeating: " ", count: padding)
            #expect(FileManager.default.createFile(atPath: path, contents: Data(atLimit.utf8)))
            let atLimitScenario = try ScenarioFile.load(path: path)
            #expect(atLimitScenario.name == "fixture")
            #expect(FileManager.default.createFile(atPath: path, contents: Data((atLimit + " ").utf8)))
            let error = #expect(throws: ScenarioError.self) { try ScenarioFile.load(path: path) }
            #expect(error?.found == "\(ScenarioLimits.fileBytes + 1) bytes")
            let parsed = #expect(throws: ScenarioError.self) { try parse(atLimit + " ") }
            #expect(parsed?.expected.contains("at most 1 MiB") == true)
        }
    }

    @Test("A FIFO, a device or a directory is not a scenario file, and loading one does not block")
    func notRegularFiles() throws {
        try withTemporaryDirectory { directory in
            let fifo = directory + "/fifo.json"
            try #require(mkfifo(fifo, 0o600) == 0, "mkfifo: \(SystemError.name(of: errno))")
            let fifoError = #expect(throws: ScenarioError.self) { try ScenarioFile.load(path: fifo) }
            #expect(fifoError?.expected == "a regular file")
            #expect(fifoError?.found == "a FIFO")
            let folder = directory + "/folder.json"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
            #expect((#expect(throws: ScenarioError.self) { try ScenarioFile.load(path: folder) })?.found == "a directory")
            // In a directory listing, such entries are errors like any bad file.
            let loaded = try ScenarioFile.loadDirectory(directory)
            #expect(loaded.scenarios.isEmpty)
            #expect(loaded.errors.map(\.found) == ["a FIFO", "a directory"])
        }
        let device = #expect(throws: ScenarioError.self) { try ScenarioFile.load(path: "/dev/null") }
        #expect(device?.found == "a character device")
        let missing = #expect(throws: ScenarioError.self) { try ScenarioFile.load(path: "/nonexistent/fixture.json") }
        #expect(missing?.found == "no such file")
    }

    // MARK: - Every error at once

    @Test("check names every error of a file: a wrong file name, a misspelt field (with a guess) and a bad symbol (with the valid ones)")
    func everyError() throws {
        try withTemporaryDirectory { directory in
            // Three mistakes: the name is not the file's, "titel" for "title", and "loopbak4".
            let text = Self.minimal.replacingOccurrences(of: "\"title\": \"t\"", with: "\"titel\": \"t\"")
                .replacingOccurrences(of: "\"to\": \"loopback4\"", with: "\"to\": \"loopbak4\"")
            let path = directory + "/other-name.json"
            try text.write(toFile: path, atomically: false, encoding: .utf8)
            let error = try #require(#expect(throws: ScenarioError.self) { try ScenarioFile.load(path: path) })
            // "titel" is one mistake: the missing "title" it stands for is not a second.
            #expect(error.all.map(\.field) == ["titel", "name", "probes[0].to"], "\(error)")
            #expect(error.all[0].found == "an unknown field (did you mean \"title\"?)")
            #expect(error.all[2].expected.contains("wildcard4, loopback4,") && error.all[2].expected.contains("did you mean \"loopback4\"?"), "\(error.all[2].expected)")

            let captured = TestLab.Captured()
            #expect(CLI.run(["check", path], console: captured.console) == 2)
            let lines = captured.err.split(separator: "\n")
            #expect(lines.count == 3, "\(captured.err)")
            #expect(lines.allSatisfy { $0.hasPrefix(path + ": field `") }, "\(captured.err)")
            // In a folder too, each error is its own entry.
            let folder = try ScenarioFile.loadDirectory(directory)
            #expect(folder.errors.count == 3 && folder.scenarios.isEmpty)
        }
        let missing = TestLab.Captured()
        #expect(CLI.run(["check", "/nonexistent/fixture.json"], console: missing.console) == 2)
        #expect(missing.err.contains("/nonexistent/fixture.json: expected a readable file; found no such file"), "\(missing.err)")
    }

    // MARK: - Terminal safety

    @Test("Text from the file reaches a terminal inert: control characters are escaped in the description")
    func inertFoundText() throws {
        let role = try #require(parseError(Self.minimal.replacingOccurrences(of: "\"role\": \"attacker\"", with: "\"role\": \"\\u001b[2J\\u202e\"")))
        #expect(role.found == "\"\u{1b}[2J\u{202e}\"")
        #expect(role.description.contains("found \"\\x1b[2J\\u{202e}\""))
        let key = try #require(parseError(Self.minimal.replacingOccurrences(of: "\"address\": \"127.0.0.1\"", with: "\"\\u0007\\r\": \"127.0.0.1\"")))
        #expect(key.field == "sockets[1].\u{07}\r")
        #expect(key.description.contains("field `sockets[1].\\x07\\r`"))
        // The unknown field also leaves "address" missing: two errors, one line each.
        #expect(key.all.map(\.field) == ["sockets[1].\u{07}\r", "sockets[1].address"])
        for error in [role, key] {
            #expect(error.description.split(separator: "\n").count == error.all.count)
            for line in error.description.split(separator: "\n") {
                #expect(!line.unicodeScalars.contains { UntrustedText.isControl($0) }, "\(line)")
            }
        }
    }

    // MARK: - Address ranges

    @Test("Lab address ranges are checked on the address's bytes, whatever its spelling", arguments: [
        ("2001:db8:0:0:1::", true, nil as String?),
        ("2001:db8::ffff:ffff:ffff:ffff", true, nil),
        ("2001:db8:1::1", true, "outside"),
        ("2001:db8:0:1::", true, "outside"),
        ("2001:db8::1", false, "only in the netns topology"),
        ("::ffff:127.1.2.3", false, nil),
        ("::ffff:128.0.0.1", false, "outside"),
        ("::ffff:0.0.0.0", false, "outside"),
        ("::127.0.0.1", false, "outside"),
        ("0:0:0:0:0:0:0:1", false, nil),
        ("::2", false, "outside"),
        ("0::0", false, nil),
        ("127.255.255.255", false, nil),
        ("127.0.0.1", false, nil),
        ("0.0.0.0", false, nil),
        ("128.0.0.1", true, "outside"),
        ("126.255.255.255", true, "outside"),
        ("198.51.100.255", true, nil),
        ("198.51.100.1", false, "only in the netns topology"),
        ("198.51.101.1", true, "outside"),
        ("localhost", true, "not a numeric"),
    ])
    func addressPolicy(host: String, labRanges: Bool, refusal: String?) {
        let result = LabAddressPolicy.refusal(for: host, labRangesAllowed: labRanges)
        if let refusal {
            #expect(result?.contains(refusal) == true, "\(host): \(String(describing: result))")
        } else {
            #expect(result == nil, "\(host): \(String(describing: result))")
        }
    }

    @Test("A scenario may bind 2001:db8:0:0:1::, which is inside 2001:db8::/64")
    func scenarioLabAddress() throws {
        let text = Self.minimal.replacingOccurrences(of: "\"address\": \"127.0.0.1\"", with: "\"address\": \"2001:db8:0:0:1::\"")
        #expect(try parse(text).sockets[1].address == .literal("2001:db8:0:0:1::"))
        let outside = try #require(parseError(Self.minimal.replacingOccurrences(of: "\"address\": \"127.0.0.1\"", with: "\"address\": \"2001:db8:1::1\"")))
        #expect(outside.field == "sockets[1].address")
    }

    @Test("Address bytes are in network order")
    func networkOrderBytes() {
        #expect(SocketAddress(host: "198.51.100.7", port: 1)?.networkOrderBytes == [198, 51, 100, 7])
        #expect(SocketAddress(host: "2001:db8::1", port: 1)?.networkOrderBytes == [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [1])
    }

    @Test("An id, name or device must match its pattern whole: a trailing line break is refused", arguments: ["attacker\\n", "attacker\\u2028", "attacker\\r\\n"])
    func patternsMatchWhole(id: String) throws {
        let text = try String(contentsOfFile: TestLab.fixtures + "/mixed/good-one.json", encoding: .utf8)
        let hostile = text.replacingOccurrences(of: "\"id\": \"attacker\"", with: "\"id\": \"\(id)\"")
        #expect(hostile != text)
        #expect(throws: ScenarioError.self) { try ScenarioFile.parse(Data(hostile.utf8), file: "good-one.json") }
    }
}
