import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation
import Glibc

extension LabReport.Environment {
    /// This machine as the report header shows it: kernel, uid, topology, date.
    static func current(topology: Topology) -> LabReport.Environment {
        var names = utsname()
        uname(&names)
        let release = withUnsafeBytes(of: &names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return LabReport.Environment(
            kernel: "Linux \(release)", uid: geteuid(), topology: topology.kind, topologyReason: topology.reason,
            date: Date().formatted(.iso8601), toolVersion: CLI.version)
    }
}
