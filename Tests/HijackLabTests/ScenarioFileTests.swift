import Foundation
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

@Suite("Scenario files")
struct ScenarioFileTests {
    static let minimal = """
    {"name": "fixture", "title": "t", "story": "s", "lesson": "l", "transport": "tcp",
     "sockets": [{"id": "victim", "role": "victim", "address": "wildcard4"},
                 {"id": "attacker", "role": "attacker", "address": "127.0.0.1", "options": ["SO_REUSEPORT"]}],
     "probes": [{"id": "local", "to": "loopback4", "connections": 8}],
     "expect": {"verdict": "blocked",
                "sockets": {"victim": {"bind": "ok", "listen": "ok"}, "attacker": {"bind": "EADDRINUSE", "listen": "not-attempted"}},
                "probes": {"local": {"receivedBy": ["victim"]}}}}
    """

    func parse(_ text: String) throws(ScenarioError) -> Scenario {
        try ScenarioFile.parse(Data(text.utf8), file: "dir/fixture.json")
    }

    /// The catalog is whatever scenarios/ holds: no count is pinned, so adding a scenario
    /// needs no test change.
    @Test("Every catalog file parses, its name is its file name, and names are unique")
    func catalogParses() throws {
        let loaded = try ScenarioFile.loadDirectory(TestLab.scenariosDirectory)
        #expect(loaded.errors.isEmpty, "\(loaded.errors)")
        let files = try FileManager.default.contentsOfDirectory(atPath: TestLab.scenariosDirectory).filter { $0.hasSuffix(".json") }
        #expect(!files.isEmpty)
        #expect(loaded.scenarios.map { "\($0.name).json" }.sorted() == files.sorted())
        #expect(Set(loaded.scenarios.map(\.name)).count == loaded.scenarios.count)
        for scenario in loaded.scenarios {
            #expect(scenario.probes.allSatisfy { $0.connections >= 8 }, "\(scenario.name) has a probe under 8 connections")
        }
    }

    @Test("A minimal file becomes the model, with default steps")
    func minimalFile() throws {
        let scenario = try parse(Self.minimal)
        #expect(scenario.name == "fixture")
        #expect(scenario.sockets.map(\.id) == ["victim", "attacker"])
        #expect(scenario.sockets[0].address == .symbol(.wildcard4))
        #expect(scenario.sockets[1].address == .literal("127.0.0.1"))
        #expect(scenario.sockets[1].options == [.reusePort])
        #expect(scenario.probes[0].closes == .clientFirst)
        #expect(scenario.probes[0].from == .host)
        #expect(scenario.steps == [.bind("victim"), .listen("victim"), .bind("attacker"), .listen("attacker"), .probe("local")])
        #expect(scenario.expectation.verdict == .blocked)
        #expect(scenario.expectation.sockets["attacker"] == SocketExpectation(bind: "EADDRINUSE", listen: "not-attempted"))
        #expect(scenario.expectation.probes["local"]?.receivedBy == ["victim"])
    }

    /// Each bad variant must name the field and say what was expected.
    @Test("Malformed files name the file, the field and what was expected", arguments: [
        ("\"SO_REUSEPORT\"]", "\"SO_REUSE\"]", "sockets[1].options[0]", "one of \"SO_REUSEADDR\""),
        ("\"role\": \"attacker\"", "\"role\": \"thief\"", "sockets[1].role", "one of \"victim\", \"attacker\", \"defender\", \"server\""),
        ("\"address\": \"127.0.0.1\"", "\"address\": \"8.8.8.8\"", "sockets[1].address", "an address symbol"),
        ("\"address\": \"127.0.0.1\"", "\"adress\": \"127.0.0.1\"", "sockets[1].adress", "only the fields"),
        ("\"connections\": 8", "\"connections\": 0", "probes[0].connections", "a whole number from 1 to 1000"),
        ("\"connections\": 8", "\"connections\": \"8\"", "probes[0].connections", "a whole number"),
        ("\"transport\": \"tcp\"", "\"transport\": \"sctp\"", "transport", "one of \"tcp\""),
        ("\"name\": \"fixture\"", "\"name\": \"other-name\"", "name", "the file's own name"),
        ("\"verdict\": \"blocked\"", "\"verdict\": \"pwned\"", "expect.verdict", "one of \"hijacked\""),
        ("\"bind\": \"EADDRINUSE\"", "\"bind\": \"EADDRINUZE\"", "expect.sockets.attacker.bind", "an errno name"),
        ("\"receivedBy\": [\"victim\"]", "\"receivedBy\": [\"mallory\"]", "expect.probes.local.receivedBy[0]", "a socket id"),
        ("\"attacker\": {\"bind\": \"EADDRINUSE\", \"listen\": \"not-attempted\"}", "\"intruder\": {\"bind\": \"ok\", \"listen\": \"ok\"}",
         "expect.sockets.intruder", "only the fields victim, attacker"),
        (", \"attacker\": {\"bind\": \"EADDRINUSE\", \"listen\": \"not-attempted\"}", "", "expect.sockets.attacker", "this field is required"),
        ("\"to\": \"loopback4\"", "\"to\": \"wildcard4\"", "probes[0].to", "not a wildcard"),
        ("\"to\": \"loopback4\"", "\"to\": \"0::0\"", "probes[0].to", "not a wildcard"),
    ])
    func malformed(original: String, replacement: String, field: String, expected: String) throws {
        let text = Self.minimal.replacingOccurrences(of: original, with: replacement)
        #expect(text != Self.minimal, "the fixture no longer contains \(original)")
        let error = #expect(throws: ScenarioError.self) { try parse(text) }
        #expect(error?.file == "dir/fixture.json")
        #expect(error?.field == field)
        #expect(error?.expected.contains(expected) == true, "\(String(describing: error))")
        #expect(error?.description.contains("dir/fixture.json: field `\(field)`: expected") == true)
    }

    @Test("Address symbols, names and implied options", arguments: [
        ("wildcard6-only", AddressSpec.symbol(.wildcard6Only)),
        ("v4mapped-loopback", .symbol(.v4mappedLoopback)),
        ("lab-interface6", .symbol(.labInterface6)),
        ("localhost", .name("localhost")),
        ("::ffff:127.0.0.1", .literal("::ffff:127.0.0.1")),
        ("127.0.0.2", .literal("127.0.0.2")),
    ])
    func addressSpecs(text: String, spec: AddressSpec) {
        #expect(AddressSpec(parsing: text) == spec)
    }

    @Test("wildcard6-only sets IPV6_V6ONLY; a socket cannot bind a name; UDP listen is not applicable")
    func impliedAndTransport() throws {
        let v6only = Self.minimal.replacingOccurrences(of: "\"address\": \"wildcard4\"", with: "\"address\": \"wildcard6-only\"")
        #expect(try parse(v6only).sockets[0].options == [.ipv6Only])
        let named = Self.minimal.replacingOccurrences(of: "\"address\": \"wildcard4\"", with: "\"address\": \"localhost\"")
        let error = #expect(throws: ScenarioError.self) { try parse(named) }
        #expect(error?.field == "sockets[0].address")
        let udp = Self.minimal.replacingOccurrences(of: "\"transport\": \"tcp\"", with: "\"transport\": \"udp\"")
        let udpError = #expect(throws: ScenarioError.self) { try parse(udp) }
        #expect(udpError?.field == "expect.sockets.victim.listen")
        let fixed = udp.replacingOccurrences(of: "\"listen\": \"ok\"", with: "\"listen\": \"not-applicable\"")
            .replacingOccurrences(of: ", \"listen\": \"not-attempted\"", with: "")
        #expect(try parse(fixed).expectation.sockets["attacker"]?.listen == "not-applicable")
    }

    @Test("A v4-mapped peer and an unconnected UDP client are recognised as the same endpoint")
    func samePeer() {
        #expect(SocketAddress(host: "::ffff:127.0.0.1", port: 9)?.unmapped == SocketAddress(host: "127.0.0.1", port: 9))
        #expect(SocketAddress.samePeer(server: "[::ffff:127.0.0.1]:4000", client: "127.0.0.1:4000"))
        #expect(SocketAddress.samePeer(server: "127.0.0.1:4000", client: "0.0.0.0:4000"))
        #expect(!SocketAddress.samePeer(server: "127.0.0.1:4001", client: "0.0.0.0:4000"))
        #expect(!SocketAddress.samePeer(server: "127.0.0.2:4000", client: "127.0.0.1:4000"))
    }

    @Test("Invalid JSON is reported with its line and column and what was expected there")
    func invalidJSON() {
        let error = #expect(throws: ScenarioError.self) { try parse("{\"name\": \"fixture\",") }
        #expect(error?.line == 1)
        #expect(error?.column == 20)
        #expect(error?.expected == "a member name in double quotes after ','")
        #expect(error?.found == "the end of the file")
    }

    @Test("Steps are checked: known ids, bind before listen, every probe once")
    func badSteps() {
        let withSteps = { (steps: String) in
            Self.minimal.replacingOccurrences(of: "\"expect\":", with: "\"steps\": \(steps), \"expect\":")
        }
        let cases: [(String, String)] = [
            ("[{\"do\": \"listen\", \"socket\": \"victim\"}]", "steps[0].socket"),
            ("[{\"do\": \"bind\", \"socket\": \"ghost\"}]", "steps[0].socket"),
            ("[{\"do\": \"dance\", \"socket\": \"victim\"}]", "steps[0].do"),
            ("[{\"do\": \"bind\", \"socket\": \"victim\"}, {\"do\": \"bind\", \"socket\": \"attacker\"}]", "steps"),
            // Both sockets listen, so leaving out a listen step is an error, not a silent non-listener.
            ("[{\"do\": \"bind\", \"socket\": \"victim\"}, {\"do\": \"bind\", \"socket\": \"attacker\"}, {\"do\": \"probe\", \"probe\": \"local\"}]", "steps"),
            ("[{\"do\": 5}]", "steps[0].do"),
        ]
        for (steps, field) in cases {
            let error = #expect(throws: ScenarioError.self) { try parse(withSteps(steps)) }
            #expect(error?.field == field, "for \(steps): \(String(describing: error))")
        }
        let numeric = #expect(throws: ScenarioError.self) { try parse(withSteps("[{\"do\": 5}]")) }
        #expect(numeric?.found == "5")
    }

    @Test("A listen step on a socket that says \"listen\": false is refused")
    func listenStepOnNonListener() {
        let text = Self.minimal
            .replacingOccurrences(of: "\"address\": \"wildcard4\"}", with: "\"address\": \"wildcard4\", \"listen\": false}")
            .replacingOccurrences(of: "\"expect\":", with: """
                "steps": [{"do": "bind", "socket": "victim"}, {"do": "listen", "socket": "victim"},
                          {"do": "bind", "socket": "attacker"}, {"do": "listen", "socket": "attacker"}, {"do": "probe", "probe": "local"}],
                "expect":
                """)
        let error = #expect(throws: ScenarioError.self) { try parse(text) }
        #expect(error?.field == "steps[1].socket")
        #expect(error?.expected.contains("a socket that listens") == true)
    }

    @Test("Numbers no integer can hold are reported, not trapped on")
    func hugeNumbers() {
        let error = #expect(throws: ScenarioError.self) { try parse(Self.minimal.replacingOccurrences(of: "\"connections\": 8", with: "\"connections\": 1e300")) }
        #expect(error?.field == "probes[0].connections")
        #expect(error?.found == "1e300")
    }

    @Test("A bad file in a directory does not stop the good ones")
    func mixedDirectory() throws {
        let loaded = try ScenarioFile.loadDirectory(TestLab.fixtures + "/mixed")
        #expect(loaded.scenarios.map(\.name) == ["good-one"])
        #expect(loaded.errors.count == 1)
        #expect(loaded.errors.first?.field == "sockets[1].options[0]")
        #expect(loaded.errors.first?.file.hasSuffix("broken-one.json") == true)
    }
}
