import Foundation
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

@Suite("Other systems: documented behaviour, not run here")
struct OtherSystemsTests {
    /// Table rows of the rendered section: lines that start with "| " after the header and rule.
    static func rows(_ section: String) -> [String] {
        let lines = section.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let rule = lines.firstIndex(of: "|---|---|---|---|") else { return [] }
        return Array(lines[(rule + 1)...].prefix { $0.hasPrefix("| ") })
    }

    @Test("Every entry names a system, says something, and cites at least one https source")
    func entriesAreComplete() throws {
        #expect(!OtherSystems.entries.isEmpty)
        let allowed: Set<String> = ["FreeBSD", "macOS", "Windows", "FreeBSD and macOS"]
        for entry in OtherSystems.entries {
            #expect(allowed.contains(entry.system.rawValue))
            #expect(!entry.claim.trimmingCharacters(in: .whitespaces).isEmpty)
            #expect(!entry.linuxComparison.trimmingCharacters(in: .whitespaces).isEmpty)
            #expect(!entry.sources.isEmpty, "\(entry.claim)")
            for source in entry.sources {
                #expect(!source.title.isEmpty)
                let url = try #require(URL(string: source.url), "\(source.url)")
                #expect(url.scheme == "https", "\(source.url)")
                #expect(url.host?.isEmpty == false, "\(source.url)")
            }
        }
    }

    @Test("Each of FreeBSD, macOS and Windows has at least one entry")
    func everySystemCovered() {
        let systems = Set(OtherSystems.entries.map(\.system))
        #expect(systems.isSuperset(of: [.freeBSD, .macOS, .windows]))
    }

    @Test("Entry text cannot break its table row")
    func textStaysInOneCell() {
        for entry in OtherSystems.entries {
            let texts = [entry.system.rawValue, entry.claim, entry.linuxComparison] + entry.sources.flatMap { [$0.title, $0.url] }
            for text in texts {
                #expect(!text.contains("|"), "\(text)")
                #expect(!text.contains("\n"), "\(text)")
            }
            for name in entry.linuxScenarios {
                #expect(name.wholeMatch(of: /[a-z][a-z0-9-]*/) != nil, "\(name)")
            }
        }
    }

    @Test("The section has its heading, one row per entry, and every row is marked and cited")
    func rendering() {
        let section = OtherSystems.markdownSection { _ in true }
        #expect(section.hasPrefix(OtherSystems.heading + "\n"))
        let rows = Self.rows(section)
        #expect(rows.count == OtherSystems.entries.count)
        for (row, entry) in zip(rows, OtherSystems.entries) {
            #expect(row.hasPrefix("| \(entry.system.rawValue) | "))
            #expect(row.hasSuffix("; documented, not run here |"))
            for source in entry.sources { #expect(row.contains("](\(source.url))")) }
            // Four cells: five pipes, none of them inside the text.
            #expect(row.filter { $0 == "|" }.count == 5, "\(row)")
        }
        #expect(section.contains("**Which system the seed article described**"))
    }

    @Test("A scenario is linked only when the run has it")
    func linksOnlyToPresentScenarios() throws {
        let all = Set(OtherSystems.entries.flatMap(\.linuxScenarios))
        let missing = try #require(all.sorted().first)
        let section = OtherSystems.markdownSection { $0 != missing }
        #expect(!section.contains("(#\(missing))"))
        #expect(!section.contains("[\(missing)]"))
        for name in all where name != missing { #expect(section.contains("[\(name)](#\(name))")) }

        let none = OtherSystems.markdownSection { _ in false }
        #expect(!none.contains("](#"))
        #expect(Self.rows(none).count == OtherSystems.entries.count)
    }

    @Test("Every scenario the section names exists in the scenarios folder")
    func namedScenariosExist() {
        // Guards against a renamed scenario silently dropping its link from REPORT.md.
        for name in Set(OtherSystems.entries.flatMap(\.linuxScenarios)) {
            #expect(FileManager.default.fileExists(atPath: "\(TestLab.scenariosDirectory)/\(name).json"), "\(name)")
        }
    }
}

@Suite("Other ways to take a port's traffic")
struct OtherWaysTests {
    @Test("Each way says what it does and who can use it, cites an https source, and is marked unless it links a scenario that ran")
    func rows() {
        for entry in OtherWays.entries {
            #expect(!entry.way.isEmpty && !entry.effect.isEmpty && !entry.privilege.isEmpty)
            #expect(!entry.sources.isEmpty && entry.sources.allSatisfy { $0.url.hasPrefix("https://") }, "\(entry.way)")
            for text in [entry.way, entry.effect, entry.privilege] { #expect(!text.contains("|") && !text.contains("\n"), "\(entry.way)") }
        }
        let none = OtherWays.markdownSection { _ in false }
        let rows = none.split(separator: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("| Way ") }
        #expect(rows.count == OtherWays.entries.count)
        #expect(rows.allSatisfy { $0.hasSuffix("\(OtherSystems.marker) |") })
        #expect(!none.contains("](#"))
        let all = OtherWays.markdownSection { _ in true }
        for name in Set(OtherWays.entries.flatMap(\.scenarios)) { #expect(all.contains("[\(name)](#\(name))")) }
        // The privileged ways say so: they are root's tools, not another user's bind.
        #expect(OtherWays.entries.filter { $0.privilege.contains("CAP_NET_ADMIN") }.count >= 2)
    }

    @Test("Every scenario the section names exists in the scenarios folder")
    func namedScenariosExist() {
        for name in Set(OtherWays.entries.flatMap(\.scenarios)) {
            #expect(FileManager.default.fileExists(atPath: "\(TestLab.scenariosDirectory)/\(name).json"), "\(name)")
        }
    }
}
