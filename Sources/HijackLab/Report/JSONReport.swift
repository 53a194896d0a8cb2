import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation

public enum JSONReport {
    /// The `--json` document: `LabReport` as it is, keys sorted so that diffs stay small.
    public static func render(_ report: LabReport) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding plain structs of strings and numbers cannot fail.
        return (try? encoder.encode(report)) ?? Data("{}".utf8)
    }
}
