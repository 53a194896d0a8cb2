import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation

public enum JSONReport {
    /// The `--json` document: `LabReport` as it is, in the one JSON style.
    public static func render(_ report: LabReport) -> Data { JSONFormat.encode(report) }
}

/// The one JSON style of every `--json` output that JSONEncoder writes: pretty, keys sorted so
/// that diffs stay small, slashes as they are. The audit writes the same bytes by hand
/// (JSONWriter), because it links no Foundation.
public enum JSONFormat {
    public static func encode<T: Encodable>(_ value: T) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Plain structs of strings and numbers: encoding cannot fail.
        return (try? encoder.encode(value)) ?? Data("{}".utf8)
    }
}
