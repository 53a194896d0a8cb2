import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

/// MATRIX.md and its pictures, rendered from results built by hand: no root, no sockets.
@Suite("Matrix report: contents, take-overs, pictures")
struct MatrixReportTests {
    static let destinations = ["127.0.0.1", "::1", "lab-interface"]

    static func endpoint(_ label: String) -> MatrixEndpoint { MatrixEndpoint.standard.first { $0.label == label }! }

    /// A case that ran. `letters` is the grid cell: `B` or `L` when the second socket failed,
    /// else one of V, A, S, - per destination.
    static func outcome(_ first: String, _ second: String?, cell letters: String, options: (first: MatrixOptions, second: MatrixOptions) = (.none, .none),
                        transport: Transport = .tcp, user: SocketUser = .same) -> MatrixCaseOutcome {
        let (firstOptions, secondOptions) = options
        var outcome = MatrixCaseOutcome(matrixCase: MatrixCase(transport: transport, first: endpoint(first), firstOptions: firstOptions,
                                                               second: second.map(endpoint), secondOptions: secondOptions, secondUser: user), status: .ran)
        outcome.firstBind = "ok"
        if transport == .tcp { outcome.firstListen = "ok" }
        guard letters != "B", letters != "L" else {
            outcome.secondBind = letters == "B" ? "EADDRINUSE" : "ok"
            if letters == "L" { outcome.secondListen = "EADDRINUSE" }
            outcome.deliveries = destinations.map { MatrixDelivery(destination: $0, sent: 1, first: 1, second: 0, nobody: 0, lost: 0) }
            return outcome
        }
        if second != nil {
            outcome.secondBind = "ok"
            if transport == .tcp { outcome.secondListen = "ok" }
        }
        outcome.deliveries = zip(destinations, letters).map { destination, letter in
            MatrixDelivery(destination: destination, sent: 16, first: "VS".contains(letter) ? 8 : 0, second: "AS".contains(letter) ? 8 : 0,
                           nobody: letter == "-" ? 16 : 0, lost: 0)
        }
        return outcome
    }

    static func result(_ cases: [MatrixCaseOutcome], baselines: [MatrixCaseOutcome], kernel: String = "Linux 6") -> MatrixResult {
        MatrixResult(environment: .init(kernel: kernel, uid: 0, topology: .netns, topologyReason: "t", date: "d"),
                     destinations: destinations, cases: cases, baselines: baselines)
    }

    /// Every case of the full matrix, each given one of the cells a real run shows, and a
    /// baseline per first socket: enough to fill every square of every picture.
    static var fullResult: MatrixResult {
        let cells = ["VAV", "B", "S-S", "V--", "AV-", "L"]
        let cases = MatrixFilter().cases.enumerated().map { index, c -> MatrixCaseOutcome in
            if index % 97 == 0 { return MatrixCaseOutcome(matrixCase: c, status: .skipped, skipReason: "needs root") }
            let cell = cells[index % cells.count]
            return outcome(c.first.label, c.second!.label, cell: c.transport == .udp && cell == "L" ? "V-V" : cell,
                           options: (c.firstOptions, c.secondOptions), transport: c.transport, user: c.secondUser)
        }
        let baselines = MatrixFilter().baselines.map { outcome($0.first.label, nil, cell: "V-V", options: ($0.firstOptions, .none), transport: $0.transport) }
        return result(cases, baselines: baselines)
    }

    /// What an SVG holds, as an XML parser reads it: every case square, every legend entry.
    final class SVGContents: NSObject, XMLParserDelegate {
        var cases: [String] = []
        var outcomes: [String: String] = [:]
        var legend: [String: String] = [:]
        var allText = ""
        private var legendClass: String?
        private var depthInLegend = 0

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
            if let id = attributes["data-case"] {
                cases.append(id)
                outcomes[id] = attributes["data-outcome"]
            }
            if let name = attributes["data-legend-class"] {
                legendClass = name
                legend[name] = ""
            }
            if legendClass != nil { depthInLegend += 1 }
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            guard legendClass != nil else { return }
            depthInLegend -= 1
            if depthInLegend == 0 { legendClass = nil }
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            allText += string
            if let legendClass { legend[legendClass, default: ""] += string + " " }
        }

        static func parse(_ svg: String) throws -> SVGContents {
            let contents = SVGContents()
            let parser = XMLParser(data: Data(svg.utf8))
            parser.delegate = contents
            let parsed = parser.parse()
            try #require(parsed, "not well-formed: \(parser.parserError.map { "\($0)" } ?? "")")
            return contents
        }
    }

    @Test("A destination's letter: a lost probe makes it X unless what arrived already shows a share")
    func lostLetters() {
        func letter(first: Int, second: Int, nobody: Int = 0, lost: Int) -> String {
            MatrixDelivery(destination: "127.0.0.1", sent: first + second + nobody + lost, first: first, second: second, nobody: nobody, lost: lost).letter
        }
        #expect(letter(first: 16, second: 0, lost: 0) == "V")
        #expect(letter(first: 0, second: 16, lost: 0) == "A")
        #expect(letter(first: 0, second: 0, nobody: 16, lost: 0) == "-")
        // The one lost connection might have gone to the second socket: V is not known.
        #expect(letter(first: 15, second: 0, lost: 1) == "X")
        #expect(letter(first: 0, second: 0, nobody: 15, lost: 1) == "X")
        #expect(letter(first: 8, second: 7, lost: 1) == "S")
    }

    @Test("One picture per transport and user, one square per case, each class in the legend")
    func pictures() throws {
        let result = Self.fullResult
        let pictures = MatrixSVG.render(result)
        #expect(pictures.map(\.fileName) == ["matrix-tcp-same.svg", "matrix-tcp-other.svg", "matrix-udp-same.svg", "matrix-udp-other.svg"])
        #expect(pictures.map(\.fileName) == MatrixFilter().transports.flatMap { t in MatrixFilter().users.map { MatrixSVG.fileName(t, $0) } })
        let classes = result.classes
        for picture in pictures {
            let contents = try SVGContents.parse(picture.svg)
            let slice = result.cases.filter { picture.fileName == "matrix-\($0.matrixCase.transport.rawValue)-\($0.matrixCase.secondUser.rawValue).svg" }
            #expect(contents.cases.count == slice.count, "\(picture.fileName)")
            #expect(Set(contents.cases).count == slice.count, "each case has its own square")
            #expect(Set(contents.legend.keys) == Set(MatrixOutcomeClass.allCases.map(\.rawValue)))
            // Made from the same run as MATRIX.md: its environment line names the run's kernel.
            #expect(contents.allText.contains("kernel \(result.environment.kernel)"), "\(picture.fileName)")
            for outcomeClass in MatrixOutcomeClass.allCases {
                let entry = try #require(contents.legend[outcomeClass.rawValue])
                #expect(entry.contains(outcomeClass.label) && entry.contains(outcomeClass.letter), "\(outcomeClass)")
            }
            // The squares are coloured by the very classes the report computes.
            for outcome in slice {
                let c = outcome.matrixCase
                let id = "\(c.transport.rawValue) \(c.secondUser.rawValue) \(c.first.label) \(c.firstOptions.rawValue) \(c.second!.label) \(c.secondOptions.rawValue)"
                #expect(contents.outcomes[id] == classes[c]?.rawValue, "\(id)")
            }
        }
        #expect(Set(classes.values) == Set(MatrixOutcomeClass.allCases), "the synthetic matrix shows every class")
    }

    @Test("A filtered run draws only what ran: rows, columns and option squares")
    func filteredPicture() throws {
        var filter = MatrixFilter()
        filter.transports = [.udp]
        filter.users = [.other]
        filter.addresses = [Self.endpoint("0.0.0.0"), Self.endpoint("::1")]
        filter.options = [.none, .reuseAddress]
        let cases = filter.cases.map { Self.outcome($0.first.label, $0.second!.label, cell: "VAV", options: ($0.firstOptions, $0.secondOptions), transport: .udp, user: .other) }
        let result = Self.result(cases, baselines: filter.baselines.map { Self.outcome($0.first.label, nil, cell: "V-V", options: ($0.firstOptions, .none), transport: .udp) })
        let pictures = MatrixSVG.render(result, baseName: "filtered")
        #expect(pictures.map(\.fileName) == ["filtered-udp-other.svg"])
        let contents = try SVGContents.parse(#require(pictures.first).svg)
        #expect(contents.cases.count == 2 * 2 * 2 * 2)
    }

    @Test("Text in a picture is XML-escaped, control characters included")
    func escaping() throws {
        let kernel = "Linux <script>&\"'\u{1}\u{7F}</svg>"
        let result = Self.result([Self.outcome("0.0.0.0", "::1", cell: "VAV")], baselines: [Self.outcome("0.0.0.0", nil, cell: "V-V")], kernel: kernel)
        let picture = try #require(MatrixSVG.render(result).first)
        #expect(!picture.svg.contains("<script>"))
        let contents = try SVGContents.parse(picture.svg)
        #expect(contents.allText.contains("Linux <script>&\"'\u{FFFD}\u{FFFD}</svg>"))
        #expect(MatrixSVG.xml("a<b>&\"'") == "a&lt;b&gt;&amp;&quot;&apos;")
    }

    @Test("Family gaps are take-overs: the second socket takes the other loopback family of the first's service; the pictures draw them apart")
    func familyGaps() throws {
        let cases = [
            // [::] with V6ONLY receives ::1 only; 0.0.0.0 beside it takes 127.0.0.1.
            Self.outcome("[::]v6only", "0.0.0.0", cell: "AVA"),
            Self.outcome("0.0.0.0", "::1", cell: "VAV"),
            Self.outcome("127.0.0.1", "[::]v6only", cell: "VA-"),
            Self.outcome("::1", "::ffff:127.0.0.1", cell: "AV-"),
            // Not a take-over: the lab interface is no destination of a service on 127.0.0.1.
            Self.outcome("127.0.0.1", "lab-interface", cell: "V-A"),
            Self.outcome("lab-interface", "127.0.0.1", cell: "A-V"),
        ]
        let baselines = [Self.outcome("[::]v6only", nil, cell: "-V-"), Self.outcome("0.0.0.0", nil, cell: "V-V"), Self.outcome("127.0.0.1", nil, cell: "V--"),
                         Self.outcome("::1", nil, cell: "-V-"), Self.outcome("lab-interface", nil, cell: "--V")]
        let result = Self.result(cases, baselines: baselines)
        let takeovers = result.takeovers
        #expect(takeovers.map { "\($0.outcome.matrixCase.first.label) \($0.outcome.matrixCase.second!.label)" }
            == ["[::]v6only 0.0.0.0", "0.0.0.0 ::1", "127.0.0.1 [::]v6only", "::1 ::ffff:127.0.0.1"])
        let gap = try #require(takeovers.first)
        // 127.0.0.1 through the gap; the lab interface is not counted, since the first never served it.
        #expect(gap.destinations == ["127.0.0.1"] && gap.familyGaps == ["127.0.0.1"] && !gap.shared)
        // In the pictures a gap is its own class (G, yellow), apart from a take of the first's own family.
        #expect((0..<4).map { result.classes[cases[$0].matrixCase] } == Array(repeating: .familyGap, count: 4))
        #expect(result.classes[cases[4].matrixCase] == .keeps)
        let both = Self.outcome("0.0.0.0", "[::]", cell: "AAV")
        #expect(Self.result([both], baselines: baselines).classes[both.matrixCase] == .takes, "127.0.0.1 is the first's own: a take-over, gap or not")
        #expect(MatrixOutcomeClass.familyGap.letter != MatrixOutcomeClass.takes.letter && MatrixSVG.style(.familyGap).fill != MatrixSVG.style(.takes).fill)

        let text = MatrixReport.render(result)
        #expect(text.contains(MatrixReport.takeoverRule))
        #expect(text.contains("| tcp | same user | `[::]v6only` | `0.0.0.0` | `127.0.0.1` | all of it | none / none | family gap: the first socket is IPv6-only (V6ONLY), so 127.0.0.1 was free for anyone"))
        #expect(text.contains("| tcp | same user | `0.0.0.0` | `::1` | `::1` | all of it | none / none | family gap: the first socket is IPv4-only, so ::1 was free for anyone"))
        #expect(!text.contains("| `127.0.0.1` | `lab-interface` |"))
        // One line of why per listed row.
        let rows = text.split(separator: "\n").filter { $0.hasPrefix("| tcp |") }
        #expect(rows.count == 4)
        #expect(rows.allSatisfy { $0.split(separator: "|").last?.trimmingCharacters(in: .whitespaces).isEmpty == false })
    }

    @Test("The take-over list shortens option pairs and says why a more specific socket wins")
    func takeoverRows() {
        let options = MatrixOptions.allCases
        #expect(MatrixReport.optionPairs(options.flatMap { f in options.map { (f, $0) } }, options: options) == "any / any")
        #expect(MatrixReport.optionPairs([(.reusePort, .reusePort), (.reusePort, .both), (.both, .reusePort), (.both, .both)], options: options)
            == "REUSEPORT set / REUSEPORT set")
        #expect(MatrixReport.optionPairs([(.reuseAddress, .reuseAddress), (.both, .reuseAddress)], options: options) == "REUSEADDR set / REUSEADDR")
        let cases = [Self.outcome("0.0.0.0", "127.0.0.1", cell: "A-V", options: (.reuseAddress, .reuseAddress), transport: .udp)]
        let text = MatrixReport.render(Self.result(cases, baselines: [Self.outcome("0.0.0.0", nil, cell: "V-V", options: (.reuseAddress, .none), transport: .udp)]))
        #expect(text.contains("more specific address: `127.0.0.1` matches 127.0.0.1 exactly"))
    }

    @Test("Headings are ASCII and unique; the contents link every grid and section by GitHub's anchor")
    func contents() throws {
        #expect(MatrixReport.anchor("tcp, second socket same user: first SO_REUSEPORT, second none") == "tcp-second-socket-same-user-first-so_reuseport-second-none")
        #expect(MatrixReport.anchor("udp, second socket another user (uid 65534): first SO_REUSEADDR and SO_REUSEPORT, second none")
            == "udp-second-socket-another-user-uid-65534-first-so_reuseaddr-and-so_reuseport-second-none")
        let result = Self.fullResult
        let pictures = MatrixSVG.render(result)
        let text = MatrixReport.render(result, pictures: pictures)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let headings = lines.filter { $0.hasPrefix("#") }
        #expect(headings.allSatisfy { $0.unicodeScalars.allSatisfy(\.isASCII) }, "\(headings.filter { !$0.unicodeScalars.allSatisfy(\.isASCII) })")
        let anchors = headings.map { MatrixReport.anchor($0.drop { $0 == "#" }.trimmingCharacters(in: .whitespaces)) }
        #expect(Set(anchors).count == anchors.count, "GitHub would suffix a repeated heading")
        let grids = headings.filter { $0.hasPrefix("### ") }
        #expect(grids.count == 2 * 2 * 4 * 4)
        let start = try #require(lines.firstIndex(of: "## Contents"))
        let end = try #require(lines[(start + 1)...].firstIndex { $0.hasPrefix("## ") })
        let contents = lines[start..<end].joined(separator: "\n")
        for heading in headings where heading != "## Contents" && heading.hasPrefix("##") {
            let anchor = MatrixReport.anchor(String(heading.drop { $0 == "#" }).trimmingCharacters(in: .whitespaces))
            #expect(contents.contains("](#\(anchor))") || heading == "## About this run", "\(heading)")
        }
        // The pictures lead, embedded by the very names the caller writes.
        let picturesAt = try #require(lines.firstIndex(of: "## Pictures"))
        #expect(picturesAt < lines.firstIndex(of: "## About this run")!)
        for picture in pictures { #expect(text.contains("](\(picture.fileName))")) }
        #expect(!MatrixReport.render(result).contains("!["), "no picture is embedded unless the caller writes it")
    }
}
