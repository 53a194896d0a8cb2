// swift-tools-version: 6.1
import PackageDescription

// One module per layer, so the compiler holds the direction of every dependency (ARCHITECTURE.md):
// System ← Audit ← Agent ← CLI ← HijackLab (Model, Scenario, Lab, Matrix, Report, Commands).
// The layers below HijackLab import no Foundation.
let package = Package(
    name: "hijack-lab",
    products: [
        .executable(name: "hijack-lab", targets: ["hijack-lab"]),
    ],
    targets: [
        // A few glibc calls that Swift's Glibc module hides behind _GNU_SOURCE, and the kernel's own structs.
        .target(name: "CHijackLab"),
        .target(name: "HijackSystem", dependencies: ["CHijackLab"], path: "Sources/HijackLab/System"),
        .target(name: "HijackAudit", dependencies: ["HijackSystem", "CHijackLab"], path: "Sources/HijackLab/Audit"),
        .target(name: "HijackAgent", dependencies: ["HijackSystem", "HijackAudit", "CHijackLab"], path: "Sources/HijackLab/Agent"),
        .target(name: "HijackCLI", dependencies: ["HijackSystem", "HijackAudit", "HijackAgent", "CHijackLab"], path: "Sources/HijackLab/CLI"),
        .target(name: "HijackLab", dependencies: ["HijackSystem", "HijackAudit", "HijackAgent", "HijackCLI", "CHijackLab"],
                exclude: ["System", "Audit", "Agent", "CLI"]),
        // The Foundation half: the lab, the matrix and the reports. The front execs it.
        .executableTarget(name: "hijack-lab-full", dependencies: ["HijackLab"]),
        // The front door, with no Foundation: help, --version and the audit run here, small and
        // fast; every other command is handed to hijack-lab-full, built beside it (the
        // dependency only makes `swift run hijack-lab` build it). A release build links the Swift
        // runtime statically, which halves its start-up; a debug build (and `swift test`, whose
        // test bundle would inherit the flag) links it dynamically.
        .executableTarget(name: "hijack-lab", dependencies: ["HijackCLI", "hijack-lab-full"],
                          linkerSettings: [.unsafeFlags(["-static-stdlib"], .when(configuration: .release))]),
        // The tests drive the real binary as an agent, so they depend on it being built.
        .testTarget(name: "HijackLabTests", dependencies: ["HijackLab", "hijack-lab"], exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
