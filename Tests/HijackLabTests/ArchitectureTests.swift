import Foundation
import Testing

/// ARCHITECTURE.md's rule, checked on the source tree: dependencies point one way. Between the
/// layer modules the compiler holds it; inside HijackLab, whose folders share one module, this
/// test does: no folder names a type that a folder above it declares.
@Suite("Architecture: one direction")
struct ArchitectureTests {
    static let sources = TestLab.packageRoot.appendingPathComponent("Sources/HijackLab").path
    /// HijackLab's folders, lowest first.
    static let layers = ["Model", "Scenario", "Lab", "Matrix", "Kernels", "Report", "Commands"]
    /// The modules that must link no Foundation, so that the front and the agents stay small.
    static let foundationFree = ["System", "Audit", "Agent", "CLI"]

    static func swiftFiles(in folder: String) -> [String] {
        let path = sources + "/" + folder
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.filter { $0.hasSuffix(".swift") }.sorted().map { path + "/" + $0 }
    }

    /// The code of a file without its comments and string literals, where words that are
    /// only text ("## Topology", a doc comment about a Scenario) would look like uses.
    static func code(_ text: String) -> String {
        var out = ""
        var index = text.startIndex
        func starts(_ prefix: String) -> Bool { text[index...].hasPrefix(prefix) }
        while index < text.endIndex {
            if starts("//") {
                index = text[index...].firstIndex(of: "\n") ?? text.endIndex
            } else if starts("/*") {
                index = text[index...].range(of: "*/")?.upperBound ?? text.endIndex
            } else if starts("\"\"\"") {
                let after = text.index(index, offsetBy: 3)
                index = text[after...].range(of: "\"\"\"")?.upperBound ?? text.endIndex
                out += "\"\""
            } else if starts("\"") {
                var scan = text.index(after: index)
                while scan < text.endIndex, text[scan] != "\"", text[scan] != "\n" {
                    scan = text[scan] == "\\" ? text.index(scan, offsetBy: 2, limitedBy: text.endIndex) ?? text.endIndex : text.index(after: scan)
                }
                index = scan < text.endIndex ? text.index(after: scan) : text.endIndex
                out += "\"\""
            } else {
                out.append(text[index])
                index = text.index(after: index)
            }
        }
        return out
    }

    /// The types a folder declares at its files' top level.
    static func declaredTypes(in folder: String) throws -> Set<String> {
        let declaration = try NSRegularExpression(pattern: #"(?m)^(?:public |package )?(?:final )?(?:struct|enum|class|protocol|actor) ([A-Z][A-Za-z0-9]*)"#)
        var names: Set<String> = []
        for file in swiftFiles(in: folder) {
            let text = code(try String(contentsOfFile: file, encoding: .utf8))
            for match in declaration.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                if let range = Range(match.range(at: 1), in: text) { names.insert(String(text[range])) }
            }
        }
        return names
    }

    @Test("Each layer folder exists and declares something: the list below is the tree's")
    func layersExist() throws {
        for folder in Self.layers + Self.foundationFree {
            #expect(!Self.swiftFiles(in: folder).isEmpty, "Sources/HijackLab/\(folder) has no Swift file")
        }
    }

    @Test("No folder of HijackLab names a type that a folder above it declares", arguments: layers.indices)
    func noUpwardReference(_ position: Int) throws {
        let folder = Self.layers[position]
        var above: [String: String] = [:]
        for higher in Self.layers[(position + 1)...] {
            for type in try Self.declaredTypes(in: higher) { above[type] = higher }
        }
        let words = try NSRegularExpression(pattern: #"\b[A-Z][A-Za-z0-9]*\b"#)
        for file in Self.swiftFiles(in: folder) {
            let text = Self.code(try String(contentsOfFile: file, encoding: .utf8))
            var found: Set<String> = []
            for match in words.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                if let range = Range(match.range, in: text), let owner = above[String(text[range])] {
                    found.insert("\(text[range]) (\(owner))")
                }
            }
            #expect(found.isEmpty, "\((file as NSString).lastPathComponent) in \(folder)/ names \(found.sorted().joined(separator: ", ")), from above it")
        }
    }

    @Test("The layers below HijackLab import no Foundation, and none imports HijackLab", arguments: foundationFree)
    func foundationFreeLayers(_ folder: String) throws {
        for file in Self.swiftFiles(in: folder) {
            let imports = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").filter { $0.hasPrefix("import ") || $0.hasPrefix("@preconcurrency import ") }
            let forbidden = imports.filter { $0.contains("Foundation") || $0.hasSuffix(" HijackLab") }
            #expect(forbidden.isEmpty, "\((file as NSString).lastPathComponent) in \(folder)/: \(forbidden.joined(separator: "; "))")
        }
    }
}
