import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation

/// One picture of the matrix: a file to write next to MATRIX.md, which embeds it by name.
public struct MatrixPicture: Sendable, Equatable {
    /// A bare file name, no folder: `matrix-tcp-same.svg`.
    public var fileName: String
    /// What the picture shows, for the image's alt text.
    public var title: String
    public var svg: String
}

/// The matrix as heat maps, one SVG per transport and owner of the second socket: the first
/// socket's address in rows, the second's in columns, and inside each cell one square per
/// option pair, coloured and lettered by `MatrixOutcomeClass`.
///
/// Plain string building, no dependency. Every piece of text goes through `xml(_:)`, the
/// labels the lab wrote as much as the kernel release it did not.
public enum MatrixSVG {
    /// One picture per transport and user present in `result`, in MATRIX.md's order.
    /// `baseName` starts every file name, so two reports in one folder can keep their own.
    public static func render(_ result: MatrixResult, baseName: String = "matrix") -> [MatrixPicture] {
        let classes = result.classes
        var pictures: [MatrixPicture] = []
        for transport in Transport.allCases {
            for user in [SocketUser.same, .other] {
                let slice = result.cases.filter { $0.matrixCase.transport == transport && $0.matrixCase.secondUser == user }
                guard !slice.isEmpty else { continue }
                let title = MatrixReport.sliceTitle(transport, user)
                pictures.append(MatrixPicture(fileName: fileName(transport, user, baseName: baseName),
                                              title: "Heat map, \(title): first address x second address, one square per option pair",
                                              svg: svg(slice, title: title, kernel: result.environment.kernel, classes: classes)))
            }
        }
        return pictures
    }

    /// The file a picture goes to, known before anything runs, so that a caller can check
    /// that it can write every file next to the report before the first case starts.
    public static func fileName(_ transport: Transport, _ user: SocketUser, baseName: String = "matrix") -> String {
        "\(baseName)-\(transport.rawValue)-\(user.rawValue).svg"
    }

    /// Lightness falls from `keeps` to `takes` in clear steps (CIELAB L* about 97, 85, 74,
    /// 56, 35, 19), hues run cool for the safe classes and warm for the others, and every
    /// square carries its letter: no reader has to tell two hues apart.
    static func style(_ outcome: MatrixOutcomeClass) -> (fill: String, ink: String) {
        switch outcome {
        case .takes: ("#5c1500", "#ffffff")
        case .shares: ("#d9620b", "#000000")
        // Yellow, not the take-overs' red: the service's own family was not touched.
        case .familyGap: ("#f2d64b", "#000000")
        case .keeps: ("#f4f8fc", "#555555")
        case .bindRefused: ("#9db8e3", "#000000")
        case .listenRefused: ("#2f4f99", "#ffffff")
        case .incomplete: ("url(#hatch)", "#000000")
        }
    }

    static let square = 16
    static let gap = 8
    static let left = 132
    static let top = 150

    static func svg(_ cases: [MatrixCaseOutcome], title: String, kernel: String, classes: [MatrixCase: MatrixOutcomeClass]) -> String {
        var firsts: [MatrixEndpoint] = []
        var seconds: [MatrixEndpoint] = []
        for outcome in cases {
            if !firsts.contains(outcome.matrixCase.first) { firsts.append(outcome.matrixCase.first) }
            if let second = outcome.matrixCase.second, !seconds.contains(second) { seconds.append(second) }
        }
        let options = MatrixOptions.allCases.filter { option in cases.contains { $0.matrixCase.firstOptions == option || $0.matrixCase.secondOptions == option } }
        let cell = options.count * square
        let gridWidth = seconds.count * (cell + gap) - gap
        let gridHeight = firsts.count * (cell + gap) - gap
        let legendTop = top + gridHeight + 36
        let legendHeight = max(MatrixOutcomeClass.allCases.count * 22 + 24, 92 + options.count * square + 30)
        let width = max(left + gridWidth + 100, 720)
        let height = legendTop + legendHeight

        var out: [String] = []
        out.append("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" font-family=\"DejaVu Sans, Verdana, sans-serif\" font-size=\"12\">")
        out.append("<title>\(xml(title))</title>")
        out.append("<defs><pattern id=\"hatch\" width=\"4\" height=\"4\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">"
            + "<rect width=\"4\" height=\"4\" fill=\"#d4d4d4\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"4\" stroke=\"#8c8c8c\" stroke-width=\"1.5\"/></pattern></defs>")
        out.append("<rect width=\"\(width)\" height=\"\(height)\" fill=\"#ffffff\"/>")
        out.append("<text x=\"12\" y=\"24\" font-size=\"16\" font-weight=\"bold\">\(xml(title))</text>")
        out.append("<text x=\"12\" y=\"42\" fill=\"#444444\">\(xml("Who receives, first socket (rows) vs second socket (columns); kernel \(kernel)"))</text>")
        out.append("<text x=\"\(left - 8)\" y=\"\(top - 8)\" text-anchor=\"end\" fill=\"#444444\">\(xml("first \\ second"))</text>")

        for (column, second) in seconds.enumerated() {
            let x = left + column * (cell + gap) + cell / 2
            out.append("<text x=\"\(x)\" y=\"\(top - 8)\" transform=\"rotate(-40 \(x) \(top - 8))\" font-family=\"DejaVu Sans Mono, Menlo, monospace\">\(xml(second.label))</text>")
        }
        for (row, first) in firsts.enumerated() {
            let y = top + row * (cell + gap) + cell / 2 + 4
            out.append("<text x=\"\(left - 8)\" y=\"\(y)\" text-anchor=\"end\" font-family=\"DejaVu Sans Mono, Menlo, monospace\">\(xml(first.label))</text>")
        }

        out.append("<g font-size=\"10\" text-anchor=\"middle\" font-family=\"DejaVu Sans Mono, Menlo, monospace\">")
        for (row, first) in firsts.enumerated() {
            for (column, second) in seconds.enumerated() {
                let x0 = left + column * (cell + gap)
                let y0 = top + row * (cell + gap)
                out.append("<rect x=\"\(x0 - 1)\" y=\"\(y0 - 1)\" width=\"\(cell + 2)\" height=\"\(cell + 2)\" fill=\"#ffffff\" stroke=\"#8c8c8c\"/>")
                for outcome in cases where outcome.matrixCase.first == first && outcome.matrixCase.second == second {
                    let c = outcome.matrixCase
                    guard let subRow = options.firstIndex(of: c.firstOptions), let subColumn = options.firstIndex(of: c.secondOptions) else { continue }
                    let outcomeClass = classes[c] ?? .incomplete
                    let (fill, ink) = style(outcomeClass)
                    let x = x0 + subColumn * square
                    let y = y0 + subRow * square
                    let id = "\(c.transport.rawValue) \(c.secondUser.rawValue) \(first.label) \(c.firstOptions.rawValue) \(second.label) \(c.secondOptions.rawValue)"
                    let tip = "first \(first.label) \(MatrixCase.optionWords(c.firstOptions)), second \(second.label) \(MatrixCase.optionWords(c.secondOptions)): "
                        + "\(outcomeClass.label) (\(outcome.cell))"
                    out.append("<g data-case=\"\(xml(id))\" data-outcome=\"\(outcomeClass.rawValue)\"><title>\(xml(tip))</title>"
                        + "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(square)\" height=\"\(square)\" fill=\"\(fill)\" stroke=\"#ffffff\"/>"
                        + "<text x=\"\(x + square / 2)\" y=\"\(y + square / 2 + 4)\" fill=\"\(ink)\">\(xml(outcomeClass.letter))</text></g>")
                }
            }
        }
        out.append("</g>")

        out.append("<g data-legend=\"classes\">")
        out.append("<text x=\"12\" y=\"\(legendTop)\" font-weight=\"bold\">Each square is one case</text>")
        for (index, outcomeClass) in MatrixOutcomeClass.allCases.enumerated() {
            let y = legendTop + 12 + index * 22
            let (fill, ink) = style(outcomeClass)
            out.append("<g data-legend-class=\"\(outcomeClass.rawValue)\"><rect x=\"12\" y=\"\(y)\" width=\"\(square)\" height=\"\(square)\" fill=\"\(fill)\" stroke=\"#8c8c8c\"/>"
                + "<text x=\"\(12 + square / 2)\" y=\"\(y + square / 2 + 4)\" font-size=\"10\" text-anchor=\"middle\" fill=\"\(ink)\" font-family=\"DejaVu Sans Mono, Menlo, monospace\">\(xml(outcomeClass.letter))</text>"
                + "<text x=\"\(12 + square + 8)\" y=\"\(y + square / 2 + 4)\">\(xml(outcomeClass.label))</text></g>")
        }
        out.append("</g>")

        // The key: one empty cell naming its rows (first options) and columns (second options).
        let keyLeft = 320
        let keyCell = (x: keyLeft + 150, y: legendTop + 92)
        out.append("<g data-legend=\"options\" font-size=\"10\">")
        out.append("<text x=\"\(keyLeft)\" y=\"\(legendTop)\" font-size=\"12\" font-weight=\"bold\">Inside each cell</text>")
        out.append("<text x=\"\(keyLeft)\" y=\"\(legendTop + 18)\">\(xml("columns: the second socket's options"))</text>")
        for (index, option) in options.enumerated() {
            let name = option == .both ? "both" : option.short
            let x = keyCell.x + index * square + square / 2 + 4
            out.append("<text x=\"\(x)\" y=\"\(keyCell.y - 4)\" transform=\"rotate(-90 \(x) \(keyCell.y - 4))\">\(xml(name))</text>")
            out.append("<text x=\"\(keyCell.x - 6)\" y=\"\(keyCell.y + index * square + square / 2 + 4)\" text-anchor=\"end\">\(xml(name))</text>")
            for column in options.indices {
                out.append("<rect x=\"\(keyCell.x + column * square)\" y=\"\(keyCell.y + index * square)\" width=\"\(square)\" height=\"\(square)\" fill=\"#f4f8fc\" stroke=\"#8c8c8c\"/>")
            }
        }
        out.append("<text x=\"\(keyLeft)\" y=\"\(keyCell.y + options.count * square + 18)\">\(xml("rows: the first socket's options (both = SO_REUSEADDR and SO_REUSEPORT)"))</text>")
        out.append("</g>")
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    /// Text for an SVG element or attribute: the five XML entities escaped, and characters
    /// XML 1.0 cannot hold at all (control characters, noncharacters) replaced, so that any
    /// kernel string still makes a well-formed file.
    public static func xml(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\t", "\n", "\r": out += " "
            default:
                let allowed = scalar.value >= 0x20 && !(0x7F...0x9F).contains(scalar.value) && scalar.value != 0xFFFE && scalar.value != 0xFFFF
                out.unicodeScalars.append(allowed ? scalar : "\u{FFFD}")
            }
        }
        return out
    }
}
