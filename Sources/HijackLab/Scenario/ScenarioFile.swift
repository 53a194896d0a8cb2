import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation
import Glibc

/// The largest scenario the lab accepts. A scenario is a page of data that a person wrote
/// and reads; these bounds keep a hostile or mistaken file from costing the host memory,
/// processes or stack (a 10,000-socket file would start 10,000 agents). The CLI's help and
/// the README quote these values.
public enum ScenarioLimits {
    /// Checked with fstat before reading, and again while reading (the file may grow).
    public static let fileBytes = 1 << 20
    /// Each socket is an agent process.
    public static let sockets = 64
    public static let probes = 64
    public static let connectionsPerProbe = 1000
    /// A scenario's name, in characters (all ASCII, so bytes too): it is a file name, a
    /// heading and an anchor in the report, and a column of the progress lines, which show
    /// it whole up to this length.
    public static let nameCharacters = 64
    /// Arrays and objects inside one another; a scenario needs five.
    public static let nestingDepth = JSONParser.maximumDepth

    /// One line per limit, for help text and documentation.
    public static let summary: [String] = [
        "a scenario file is at most 1 MiB (\(fileBytes) bytes), a regular file",
        "a scenario's name is at most \(nameCharacters) characters",
        "at most \(sockets) sockets and \(probes) probes per scenario",
        "at most \(connectionsPerProbe) connections per probe, written as a whole number in digits",
        "JSON nested at most \(nestingDepth) arrays and objects deep; each key once per object",
    ]
}

/// Reads scenario files into validated `Scenario` values.
public enum ScenarioFile {
    public static func load(path: String) throws(ScenarioError) -> Scenario {
        try parse(bytes: try read(path: path), file: path)
    }

    public static func parse(_ data: Data, file: String) throws(ScenarioError) -> Scenario {
        try parse(bytes: [UInt8](data), file: file)
    }

    static func parse(bytes: [UInt8], file: String) throws(ScenarioError) -> Scenario {
        guard bytes.count <= ScenarioLimits.fileBytes else { throw tooLarge(file, found: "\(bytes.count) bytes") }
        let document: JSONValue
        do throws(JSONParseError) {
            document = try JSONParser.parse(bytes)
        } catch {
            throw ScenarioError(file: file, field: error.field, expected: error.expected, found: error.found, line: error.line, column: error.column)
        }
        return try ScenarioReader(file: file).scenario(document)
    }

    /// The file's bytes, refusing anything that is not a regular file of at most
    /// `ScenarioLimits.fileBytes` before reading more than that.
    static func read(path: String) throws(ScenarioError) -> [UInt8] {
        func failure(_ expected: String, _ found: String) -> ScenarioError {
            ScenarioError(file: path, field: "", expected: expected, found: found)
        }
        // stat before open: opening a FIFO waits for a writer, and opening a device can act on it.
        var status = stat()
        guard stat(path, &status) == 0 else {
            let code = errno
            throw failure("a readable file", code == ENOENT ? "no such file" : code == EACCES ? "no permission to read it (EACCES)" : "stat: \(SystemError.name(of: code))")
        }
        if let kind = nonRegularKind(status.st_mode) { throw failure("a regular file", kind) }
        let descriptor: Int32
        do throws(SystemError) {
            // O_NONBLOCK: should the path become a FIFO after the stat, open still returns.
            descriptor = try retryingOnInterrupt("open") { open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK) }
        } catch {
            throw failure("a readable file", "\(error.call): \(error.name)")
        }
        defer { close(descriptor) }
        guard fstat(descriptor, &status) == 0 else { throw failure("a readable file", "fstat: \(SystemError.name(of: errno))") }
        if let kind = nonRegularKind(status.st_mode) { throw failure("a regular file", kind) }
        if status.st_size > ScenarioLimits.fileBytes { throw tooLarge(path, found: "\(status.st_size) bytes") }
        // One byte more than the limit tells a file at the limit from one that grew past it.
        var buffer = [UInt8](repeating: 0, count: ScenarioLimits.fileBytes + 1)
        var count = 0
        while count < buffer.count {
            let received = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress! + count, $0.count - count) }
            if received == 0 { break }
            if received < 0 {
                if errno == EINTR { continue }
                throw failure("a readable file", "read: \(SystemError.name(of: errno))")
            }
            count += received
        }
        if count > ScenarioLimits.fileBytes { throw tooLarge(path, found: "more than \(ScenarioLimits.fileBytes) bytes") }
        return Array(buffer[..<count])
    }

    private static func tooLarge(_ file: String, found: String) -> ScenarioError {
        ScenarioError(file: file, field: "", expected: "a scenario file of at most 1 MiB (\(ScenarioLimits.fileBytes) bytes)", found: found)
    }

    private static func nonRegularKind(_ mode: mode_t) -> String? {
        switch mode & S_IFMT {
        case S_IFREG: nil
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        default: "a file that is not a regular file"
        }
    }

    /// Loads every `*.json` in a directory, sorted by file name. Bad files do not stop the good
    /// ones; a directory with none is an error.
    public static func loadDirectory(_ directory: String) throws(ScenarioError) -> (scenarios: [Scenario], errors: [ScenarioError]) {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw ScenarioError(file: directory, field: "", expected: "a directory of scenario files (*.json)", found: "no such directory")
        }
        // A folder with nothing to run is a mistake (a wrong path, an unpacked archive's parent),
        // never a silent success.
        guard names.contains(where: { $0.hasSuffix(".json") }) else {
            throw ScenarioError(file: directory, field: "", expected: "scenario files (*.json) in it", found: "no scenario files in \(directory)")
        }
        var scenarios: [Scenario] = []
        var errors: [ScenarioError] = []
        for name in names.sorted() where name.hasSuffix(".json") {
            do throws(ScenarioError) {
                scenarios.append(try load(path: directory + "/" + name))
            } catch {
                errors.append(contentsOf: error.all)
            }
        }
        return (scenarios, errors)
    }
}

/// Walks the JSON tree, keeping the path so each error names its field. It reads the whole
/// file: each part that fails is recorded and the reading goes on with the next, so `check`
/// names every mistake at once; the scenario is thrown out if any part failed.
final class ScenarioReader {
    let file: String
    /// What failed so far, one error per field.
    private(set) var problems: [ScenarioError] = []
    /// Fields already accounted for by another error: a required field that a misspelt one
    /// stands for ("titel" for "title") is one mistake, not two.
    private var accountedFor: Set<String> = []

    init(file: String) { self.file = file }

    func fail(_ field: String, _ expected: String, _ found: JSONValue?) -> ScenarioError {
        ScenarioError(file: file, field: field, expected: expected, found: found?.summary ?? "nothing (the field is missing)")
    }

    /// Keeps `error`, unless its field already has one (a missing field is not also a wrong one).
    func record(_ error: ScenarioError) {
        guard !accountedFor.contains(error.field), !problems.contains(where: { $0.field == error.field }) else { return }
        problems.append(error)
    }

    /// `body`'s value, or nil with its error recorded.
    func collect<T>(_ body: () throws(ScenarioError) -> T) -> T? {
        do throws(ScenarioError) {
            return try body()
        } catch {
            record(error)
            return nil
        }
    }

    /// An object's members. An unknown field (with the known one it most likely meant) and a
    /// missing required one are recorded, and the members are returned all the same.
    func object(_ value: JSONValue?, _ field: String, required: [String], optional: [String] = []) throws(ScenarioError) -> JSONObject {
        guard case .object(let members)? = value else { throw fail(field, "an object", value) }
        let known = required + optional
        for key in members.keys.sorted() where !known.contains(key) {
            let guess = Suggestion.closest(to: key, among: known)
            record(ScenarioError(file: file, field: join(field, key), expected: "only the fields \(known.joined(separator: ", "))",
                                 found: guess.map { "an unknown field (did you mean \"\($0)\"?)" } ?? "an unknown field"))
            if let guess, members[guess] == nil { accountedFor.insert(join(field, guess)) }
        }
        for key in required where members[key] == nil {
            record(fail(join(field, key), "a value (this field is required)", nil))
        }
        return members
    }

    func string(_ value: JSONValue?, _ field: String, pattern: TextPattern? = nil) throws(ScenarioError) -> String {
        guard case .string(let text)? = value, !text.isEmpty else { throw fail(field, "a non-empty string", value) }
        // The whole text must match, so "attacker\n" never reaches headings, tables and diagrams.
        if let pattern, !pattern.matches(text) {
            throw fail(field, "a string matching \(pattern.pattern)", value)
        }
        return text
    }

    func choice<T: RawRepresentable>(_ value: JSONValue?, _ field: String, as: T.Type, among cases: [T]) throws(ScenarioError) -> T where T.RawValue == String {
        let expected = "one of " + cases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
        guard case .string(let text)? = value, let parsed = T(rawValue: text) else { throw fail(field, expected, value) }
        return parsed
    }

    func array(_ value: JSONValue?, _ field: String, nonEmpty: Bool = true) throws(ScenarioError) -> [JSONValue] {
        guard case .array(let items)? = value, !(nonEmpty && items.isEmpty) else {
            throw fail(field, nonEmpty ? "a non-empty array" : "an array", value)
        }
        return items
    }

    func join(_ field: String, _ key: String) -> String { field.isEmpty ? key : "\(field).\(key)" }

    func scenario(_ document: JSONValue) throws(ScenarioError) -> Scenario {
        let top = try object(document, "", required: ["name", "title", "story", "lesson", "transport", "sockets", "probes", "expect"], optional: ["steps", "audit", "port"])
        let name = collect { () throws(ScenarioError) -> String in
            let name = try string(top["name"], "name", pattern: .scenarioName)
            guard name.count <= ScenarioLimits.nameCharacters else {
                throw ScenarioError(file: file, field: "name", expected: "a name of at most \(ScenarioLimits.nameCharacters) characters",
                                    found: "\(name.count) characters")
            }
            let base = (file as NSString).lastPathComponent
            if base.hasSuffix(".json"), base != "\(name).json" {
                throw fail("name", "the file's own name, \"\(UntrustedText.terminal(String(base.dropLast(5))))\" (readers look scenarios up by name)", top["name"])
            }
            return name
        }
        let title = collect { () throws(ScenarioError) in try string(top["title"], "title") }
        let story = collect { () throws(ScenarioError) in try string(top["story"], "story") }
        let lesson = collect { () throws(ScenarioError) in try string(top["lesson"], "lesson") }
        let transport = collect { () throws(ScenarioError) in try choice(top["transport"], "transport", as: Transport.self, among: Transport.allCases) }
        let beforeParts = problems.count
        var sockets: [SocketSpec] = []
        var socketItems = collect { () throws(ScenarioError) in try array(top["sockets"], "sockets") } ?? []
        // Counted before any is read: each socket becomes an agent process.
        if socketItems.count > ScenarioLimits.sockets {
            record(ScenarioError(file: file, field: "sockets", expected: "at most \(ScenarioLimits.sockets) sockets (each one is an agent process)", found: "\(socketItems.count) sockets"))
            socketItems = []
        }
        for (index, item) in socketItems.enumerated() {
            if let socket = collect({ () throws(ScenarioError) in try socket(item, "sockets[\(index)]", earlier: sockets) }) { sockets.append(socket) }
        }
        var probes: [ProbeSpec] = []
        var probeItems = collect { () throws(ScenarioError) in try array(top["probes"], "probes") } ?? []
        if probeItems.count > ScenarioLimits.probes {
            record(ScenarioError(file: file, field: "probes", expected: "at most \(ScenarioLimits.probes) probes", found: "\(probeItems.count) probes"))
            probeItems = []
        }
        for (index, item) in probeItems.enumerated() {
            guard let probe = collect({ () throws(ScenarioError) in try probe(item, "probes[\(index)]") }) else { continue }
            guard !probes.contains(where: { $0.id == probe.id }), sockets.allSatisfy({ $0.id != probe.id }) else {
                record(fail("probes[\(index)].id", "an id not used by another socket or probe", .string(probe.id)))
                continue
            }
            probes.append(probe)
        }
        // What follows refers to the sockets and probes by id: with one of them unreadable, its
        // own error says what is wrong, and these would only add echoes of it.
        let complete = problems.count == beforeParts
        let steps = !complete ? nil : collect { () throws(ScenarioError) -> [Step] in
            try top["steps"].map { (value) throws(ScenarioError) in try self.steps(value, sockets: sockets, probes: probes) } ?? Step.defaults(for: sockets, probes: probes)
        }
        let expectation = complete ? collect { () throws(ScenarioError) in
            try self.expectation(top["expect"], sockets: sockets, probes: probes, transport: transport ?? .tcp)
        } : nil
        let audit = collect { () throws(ScenarioError) -> Bool in
            try top["audit"].map { (value) throws(ScenarioError) -> Bool in
                guard case .bool(let flag) = value else { throw fail("audit", "true or false", value) }
                return flag
            } ?? false
        }
        let port = collect { () throws(ScenarioError) in
            try top["port"].map { (value) throws(ScenarioError) in try choice(value, "port", as: PortKind.self, among: PortKind.allCases) } ?? .ordinary
        }
        guard problems.isEmpty, let name, let title, let story, let lesson, let transport, let steps, let expectation, let audit, let port else {
            var first = problems.first ?? fail("", "a scenario", document)
            first.more = Array(problems.dropFirst())
            throw first
        }
        return Scenario(name: name, title: title, story: story, lesson: lesson, transport: transport, sockets: sockets, probes: probes,
                        steps: steps, expectation: expectation, file: file, audit: audit, port: port)
    }

    func address(_ value: JSONValue?, _ field: String, namesAllowed: Bool) throws(ScenarioError) -> AddressSpec {
        let text = try string(value, field)
        let spec = AddressSpec(parsing: text)
        let symbols = AddressSymbol.allCases.map(\.rawValue).joined(separator: ", ")
        if case .name = spec, !namesAllowed {
            let guess = Suggestion.closest(to: text, among: AddressSymbol.allCases.map(\.rawValue)).map { " (did you mean \"\($0)\"?)" } ?? ""
            throw fail(field, "an address symbol (\(symbols)) or a numeric address; a socket binds addresses, names are for probes\(guess)", value)
        }
        // Names mean only what the lab's own hosts file says: nothing outside the lab is asked.
        if case .name(let name) = spec, LabHosts.lab.addresses(for: name).isEmpty {
            let guess = Suggestion.closest(to: text, among: AddressSymbol.allCases.map(\.rawValue) + LabHosts.lab.names).map { " (did you mean \"\($0)\"?)" } ?? ""
            throw fail(field, "an address symbol (\(symbols)), a name in the lab's hosts file (\(LabHosts.lab.names.joined(separator: ", "))) or an address\(guess)", value)
        }
        if case .literal = spec, let refusal = LabAddressPolicy.refusal(for: text, labRangesAllowed: true) {
            throw ScenarioError(file: file, field: field, expected: "an address symbol (\(symbols)) or a numeric lab address", found: "\"\(text)\", \(refusal)")
        }
        return spec
    }

    func socket(_ value: JSONValue, _ field: String, earlier: [SocketSpec]) throws(ScenarioError) -> SocketSpec {
        let members = try object(value, field, required: ["id", "role", "address"], optional: ["options", "device", "user", "listen", "restarts"])
        let id = try string(members["id"], join(field, "id"), pattern: .identifier)
        if earlier.contains(where: { $0.id == id }) { throw fail(join(field, "id"), "an id not used by another socket", members["id"]) }
        let address = try address(members["address"], join(field, "address"), namesAllowed: false)
        // A symbol that stands for an option (wildcard6-only) sets it first.
        var options: [SocketOption] = if case .symbol(let symbol) = address { symbol.impliedOptions } else { [] }
        if let list = members["options"] {
            for (index, item) in try array(list, join(field, "options"), nonEmpty: false).enumerated() {
                let optionField = "\(join(field, "options"))[\(index)]"
                let expected = "one of " + SocketOption.namesInFiles.map { "\"\($0)\"" }.joined(separator: ", ") + " (SO_BINDTODEVICE is the field \"device\")"
                guard case .string(let name) = item, let option = SocketOption(name: name) else { throw fail(optionField, expected, item) }
                if options.contains(option) {
                    if case .symbol(let symbol) = address, symbol.impliedOptions.contains(option) { continue }
                    throw fail(optionField, "each option at most once", item)
                }
                options.append(option)
            }
        }
        var listens = true
        if let flag = members["listen"] {
            guard case .bool(let value) = flag else { throw fail(join(field, "listen"), "true or false", flag) }
            listens = value
        }
        var restarts: String?
        if let target = members["restarts"] {
            let targetID = try string(target, join(field, "restarts"))
            guard earlier.contains(where: { $0.id == targetID }) else {
                throw fail(join(field, "restarts"), "the id of an earlier socket (" + earlier.map(\.id).joined(separator: ", ") + ")", target)
            }
            restarts = targetID
        }
        return SocketSpec(
            id: id,
            role: try choice(members["role"], join(field, "role"), as: Role.self, among: Role.allCases),
            address: address,
            options: options,
            device: try members["device"].map { (value) throws(ScenarioError) in try string(value, join(field, "device"), pattern: .device) },
            user: try members["user"].map { (value) throws(ScenarioError) in try choice(value, join(field, "user"), as: SocketUser.self, among: [.same, .other]) } ?? .same,
            listens: listens,
            restarts: restarts
        )
    }

    func probe(_ value: JSONValue, _ field: String) throws(ScenarioError) -> ProbeSpec {
        let members = try object(value, field, required: ["id", "to", "connections"], optional: ["from", "closes"])
        let to = try address(members["to"], join(field, "to"), namesAllowed: true)
        let isWildcard: Bool
        switch to {
        case .symbol(let symbol): isWildcard = symbol.isWildcard
        case .literal(let text): isWildcard = ["0.0.0.0", "::"].contains(SocketAddress(host: text, port: 0)?.host ?? text)
        case .name: isWildcard = false
        }
        if isWildcard {
            throw fail(join(field, "to"), "a destination a client can connect to, not a wildcard", members["to"])
        }
        let limit = ScenarioLimits.connectionsPerProbe
        guard case .number(let number)? = members["connections"], let count = number.wholeNumber(in: 1...limit) else {
            throw fail(join(field, "connections"), "a whole number from 1 to \(limit), in digits", members["connections"])
        }
        return ProbeSpec(
            id: try string(members["id"], join(field, "id"), pattern: .identifier),
            from: try members["from"].map { (value) throws(ScenarioError) in try choice(value, join(field, "from"), as: ProbeClient.self, among: [.host, .peer]) } ?? .host,
            to: to,
            connections: count,
            closes: try members["closes"].map { (value) throws(ScenarioError) in
                try choice(value, join(field, "closes"), as: CloseOrder.self, among: [.clientFirst, .serverFirst, .clientReset])
            } ?? .clientFirst
        )
    }

    func steps(_ value: JSONValue, sockets: [SocketSpec], probes: [ProbeSpec]) throws(ScenarioError) -> [Step] {
        var steps: [Step] = []
        var bound: Set<String> = []
        var ended: Set<String> = []
        var probed: Set<String> = []
        var listening: Set<String> = []
        for (index, item) in try array(value, "steps").enumerated() {
            let field = "steps[\(index)]"
            guard case .object(let members) = item, case .string(let action)? = members["do"] else {
                let found: JSONValue? = if case .object(let members) = item { members["do"] } else { item }
                throw fail(join(field, "do"), "one of \"bind\", \"listen\", \"probe\", \"close\", \"exit\", \"add-address\"", found)
            }
            if action == "probe" {
                let id = try string(try object(item, field, required: ["do", "probe"])["probe"], join(field, "probe"))
                guard probes.contains(where: { $0.id == id }) else { throw fail(join(field, "probe"), "a probe id (" + probes.map(\.id).joined(separator: ", ") + ")", .string(id)) }
                guard probed.insert(id).inserted else { throw fail(join(field, "probe"), "each probe run once", .string(id)) }
                steps.append(.probe(id))
                continue
            }
            if action == "add-address" {
                let members = try object(item, field, required: ["do", "address"])
                guard case .string(AddressSymbol.labInterfaceAdded.rawValue)? = members["address"] else {
                    throw fail(join(field, "address"), "\"\(AddressSymbol.labInterfaceAdded.rawValue)\", the one address the lab adds", members["address"])
                }
                guard !steps.contains(.addAddress(.labInterfaceAdded)) else { throw fail(join(field, "do"), "one add-address step", .string(action)) }
                steps.append(.addAddress(.labInterfaceAdded))
                continue
            }
            let id = try string(try object(item, field, required: ["do", "socket"])["socket"], join(field, "socket"))
            guard sockets.contains(where: { $0.id == id }) else { throw fail(join(field, "socket"), "a socket id (" + sockets.map(\.id).joined(separator: ", ") + ")", .string(id)) }
            switch action {
            case "bind":
                guard bound.insert(id).inserted else { throw fail(join(field, "socket"), "a socket not bound before (a restart is a new socket with \"restarts\")", .string(id)) }
                steps.append(.bind(id))
            case "listen", "close", "exit":
                guard bound.contains(id), !ended.contains(id) else { throw fail(join(field, "socket"), "a socket bound by an earlier step and not closed yet", .string(id)) }
                if action == "listen" {
                    guard sockets.first(where: { $0.id == id })?.listens == true else {
                        throw fail(join(field, "socket"), "a socket that listens (this one says \"listen\": false)", .string(id))
                    }
                    guard listening.insert(id).inserted else { throw fail(join(field, "socket"), "one listen step per socket", .string(id)) }
                }
                if action == "listen" { steps.append(.listen(id)) } else { ended.insert(id); steps.append(action == "close" ? .close(id) : .exit(id)) }
            default:
                throw fail(join(field, "do"), "one of \"bind\", \"listen\", \"probe\", \"close\", \"exit\", \"add-address\"", .string(action))
            }
        }
        if let missing = sockets.first(where: { !bound.contains($0.id) }) { throw fail("steps", "a bind step for every socket", .string(missing.id)) }
        if let missing = probes.first(where: { !probed.contains($0.id) }) { throw fail("steps", "a probe step for every probe", .string(missing.id)) }
        if let missing = sockets.first(where: { $0.listens && !listening.contains($0.id) }) {
            throw fail("steps", "a listen step for every socket that listens (\"listen\": false for one that only binds)", .string(missing.id))
        }
        return steps
    }

    func expectation(_ value: JSONValue?, sockets: [SocketSpec], probes: [ProbeSpec], transport: Transport) throws(ScenarioError) -> Expectation {
        let members = try object(value, "expect", required: ["verdict", "sockets", "probes"])
        let socketIDs = sockets.map(\.id)
        let socketResults = try object(members["sockets"], "expect.sockets", required: socketIDs)
        var socketExpectations: [String: SocketExpectation] = [:]
        for id in socketIDs {
            let field = "expect.sockets.\(id)"
            // UDP has no listen(): its "listen" is not applicable, and may be left out.
            let result = try object(socketResults[id], field, required: transport == .tcp ? ["bind", "listen"] : ["bind"], optional: transport == .tcp ? [] : ["listen"])
            let listen: String
            if transport == .udp {
                guard result["listen"] == nil || result["listen"] == .string("not-applicable") else {
                    throw fail(join(field, "listen"), "\"not-applicable\" or nothing: UDP sockets do not listen", result["listen"])
                }
                listen = "not-applicable"
            } else {
                listen = try outcomeName(result["listen"], join(field, "listen"), allowNotAttempted: true)
            }
            socketExpectations[id] = SocketExpectation(bind: try outcomeName(result["bind"], join(field, "bind"), allowNotAttempted: false), listen: listen)
        }
        let probeResults = try object(members["probes"], "expect.probes", required: probes.map(\.id))
        var probeExpectations: [String: ProbeExpectation] = [:]
        for probe in probes {
            let field = "expect.probes.\(probe.id)"
            let result = try object(probeResults[probe.id], field, required: ["receivedBy"])
            var receivers: [String] = []
            for (index, item) in try array(result["receivedBy"], join(field, "receivedBy"), nonEmpty: false).enumerated() {
                let receiver = try string(item, "\(join(field, "receivedBy"))[\(index)]")
                guard socketIDs.contains(receiver), !receivers.contains(receiver) else {
                    throw fail("\(join(field, "receivedBy"))[\(index)]", "a socket id, once (" + socketIDs.joined(separator: ", ") + ")", item)
                }
                receivers.append(receiver)
            }
            probeExpectations[probe.id] = ProbeExpectation(receivedBy: receivers)
        }
        return Expectation(
            verdict: try choice(members["verdict"], "expect.verdict", as: Verdict.self, among: Verdict.allCases),
            sockets: socketExpectations,
            probes: probeExpectations
        )
    }

    /// "ok", an errno name the C library knows, or for listen "not-attempted".
    func outcomeName(_ value: JSONValue?, _ field: String, allowNotAttempted: Bool) throws(ScenarioError) -> String {
        let expected = "\"ok\", an errno name such as \"EADDRINUSE\"" + (allowNotAttempted ? ", or \"not-attempted\"" : "")
        guard case .string(let text)? = value else { throw fail(field, expected, value) }
        if text == "ok" || (allowNotAttempted && text == "not-attempted") || SystemError.code(named: text) != nil { return text }
        throw fail(field, expected, value)
    }
}
