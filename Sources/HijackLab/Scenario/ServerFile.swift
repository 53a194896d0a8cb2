import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation

/// Reads the servers/ catalog (issue 22): one JSON file per real server. servers/README.md
/// walks through every field.
public enum ServerFile {
    public static let fields = ["name", "title", "package", "program", "account", "startsAs", "unit", "port", "transports", "command", "ready", "request", "fix"]
    public static let optionalFields = ["environment", "config"]

    public static func load(path: String) throws(ScenarioError) -> ServerSpec {
        let bytes = try ScenarioFile.read(path: path)
        let document: JSONValue
        do throws(JSONParseError) {
            document = try JSONParser.parse(bytes)
        } catch {
            throw ScenarioError(file: path, field: error.field, expected: error.expected, found: error.found, line: error.line, column: error.column)
        }
        return try ScenarioReader(file: path).server(document)
    }

    /// Every `*.json` in the folder, by file name; a bad file does not stop the others.
    public static func loadDirectory(_ directory: String) throws(ScenarioError) -> (servers: [ServerSpec], errors: [ScenarioError]) {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw ScenarioError(file: directory, field: "", expected: "a directory of server files (*.json)", found: "no such directory")
        }
        guard names.contains(where: { $0.hasSuffix(".json") }) else {
            throw ScenarioError(file: directory, field: "", expected: "server files (*.json) in it", found: "no server files in \(directory)")
        }
        var servers: [ServerSpec] = []
        var errors: [ScenarioError] = []
        for name in names.sorted() where name.hasSuffix(".json") {
            do throws(ScenarioError) {
                servers.append(try load(path: directory + "/" + name))
            } catch {
                errors.append(contentsOf: error.all)
            }
        }
        return (servers, errors)
    }
}

extension ScenarioReader {
    func server(_ document: JSONValue) throws(ScenarioError) -> ServerSpec {
        let top = try object(document, "", required: ServerFile.fields, optional: ServerFile.optionalFields)
        let name = collect { () throws(ScenarioError) -> String in
            let name = try string(top["name"], "name", pattern: .scenarioName)
            let base = (file as NSString).lastPathComponent
            if base.hasSuffix(".json"), base != "\(name).json" {
                throw fail("name", "the file's own name, \"\(UntrustedText.terminal(String(base.dropLast(5))))\"", top["name"])
            }
            return name
        }
        let text = { (key: String) in self.collect { () throws(ScenarioError) in try self.string(top[key], key) } }
        let title = text("title")
        let package = collect { () throws(ScenarioError) in try string(top["package"], "package", pattern: .packageName) }
        let account = collect { () throws(ScenarioError) in try string(top["account"], "account", pattern: .identifier) }
        let unit = text("unit")
        let program = collect { () throws(ScenarioError) -> String in
            let program = try string(top["program"], "program")
            guard program.hasPrefix("/") else { throw fail("program", "an absolute path", top["program"]) }
            return program
        }
        let startsAs = collect { () throws(ScenarioError) in try choice(top["startsAs"], "startsAs", as: ServerSpec.StartsAs.self, among: ServerSpec.StartsAs.allCases) }
        let request = collect { () throws(ScenarioError) in try choice(top["request"], "request", as: ServerSpec.Request.self, among: ServerSpec.Request.allCases) }
        let port = collect { () throws(ScenarioError) -> UInt16 in
            guard case .number(let number)? = top["port"], let value = number.wholeNumber(in: 1...65535) else { throw fail("port", "a port number, 1 to 65535", top["port"]) }
            return UInt16(value)
        }
        let transports = collect { () throws(ScenarioError) -> [Transport] in
            let items = try array(top["transports"], "transports")
            var found: [Transport] = []
            for (index, item) in items.enumerated() {
                let transport = try choice(item, "transports[\(index)]", as: Transport.self, among: Transport.allCases)
                if found.contains(transport) { throw fail("transports[\(index)]", "each transport once", item) }
                found.append(transport)
            }
            return found
        }
        let command = collect { () throws(ScenarioError) in try strings(top["command"], "command") }
        let environment = top["environment"] == nil ? [] : collect { () throws(ScenarioError) -> [String] in
            let values = try strings(top["environment"], "environment")
            for (index, value) in values.enumerated() where !value.contains("=") {
                throw fail("environment[\(index)]", "NAME=VALUE", .string(value))
            }
            return values
        }
        var configFile: String?
        var config: String?
        if top["config"] != nil {
            _ = collect { () throws(ScenarioError) in
                let members = try object(top["config"], "config", required: ["file", "lines"])
                configFile = try string(members["file"], "config.file", pattern: .fileName)
                config = try lines(members["lines"], "config.lines")
            }
        }
        let ready = collect { () throws(ScenarioError) -> Int in
            let members = try object(top["ready"], "ready", required: ["sockets"])
            guard case .number(let number)? = members["sockets"], let value = number.wholeNumber(in: 1...64) else {
                throw fail("ready.sockets", "how many listening sockets of the server make it ready, 1 to 64", members["sockets"])
            }
            return value
        }
        var fixChange: String?
        var fixConfig: String?
        var fixCommand: [String]?
        var fixAgainst = ServerAttack.Who.allCases
        _ = collect { () throws(ScenarioError) in
            let members = try object(top["fix"], "fix", required: ["change"], optional: ["lines", "command", "against"])
            if members["against"] != nil {
                fixAgainst = try array(members["against"], "fix.against").enumerated().map { (index, item) throws(ScenarioError) in
                    try choice(item, "fix.against[\(index)]", as: ServerAttack.Who.self, among: ServerAttack.Who.allCases)
                }
            }
            fixChange = try string(members["change"], "fix.change")
            if members["lines"] != nil {
                guard configFile != nil else { throw fail("fix.lines", "a config to change (this server has none)", members["lines"]) }
                fixConfig = try lines(members["lines"], "fix.lines")
            }
            if members["command"] != nil { fixCommand = try strings(members["command"], "fix.command") }
            if fixConfig == nil && fixCommand == nil { throw fail("fix", "\"lines\" (the fixed configuration), \"command\" (the fixed command line), or both", top["fix"]) }
        }
        if let command, let first = command.first, let program, first != program {
            record(fail("command[0]", "the program, \"\(UntrustedText.terminal(program))\"", .string(first)))
        }
        guard problems.isEmpty, let name, let title, let package, let account, let unit, let program, let startsAs, let request, let port, let transports,
              let command, let environment, let ready, let fixChange else {
            var first = problems.first ?? fail("", "a server", document)
            first.more = Array(problems.dropFirst())
            throw first
        }
        var spec = ServerSpec(name: name, title: title, package: package, program: program, account: account, startsAs: startsAs, unit: unit, port: port,
                          transports: transports, command: command, environment: environment, configFile: configFile, config: config, readySockets: ready,
                          request: request, fixChange: fixChange, fixConfig: fixConfig, fixCommand: fixCommand, file: file)
        spec.fixAgainst = fixAgainst
        return spec
    }

    /// A non-empty array of non-empty strings.
    private func strings(_ value: JSONValue?, _ field: String) throws(ScenarioError) -> [String] {
        var found: [String] = []
        for (index, item) in try array(value, field).enumerated() {
            guard case .string(let text) = item, !text.isEmpty else { throw fail("\(field)[\(index)]", "a non-empty string", item) }
            found.append(text)
        }
        return found
    }

    /// A file's text as an array of lines (each may be empty), joined with newlines.
    private func lines(_ value: JSONValue?, _ field: String) throws(ScenarioError) -> String {
        var found: [String] = []
        for (index, item) in try array(value, field).enumerated() {
            guard case .string(let text) = item, !text.contains("\n") else { throw fail("\(field)[\(index)]", "one line of text", item) }
            found.append(text)
        }
        return found.joined(separator: "\n") + "\n"
    }
}
