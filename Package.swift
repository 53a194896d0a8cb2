// swift-tools-version: 6.1
import PackageDescription

// One module per layer, so the compiler holds the direction of every dependency (ARCHITECTURE.md):
// System ← Audit ← Agent ← CLI ← HijackLab (Model, Scenario, Lab, Matrix, Report, Commands).
// The layers below HijackLab import no Foundation.
let package = Package(
    name: "hijack-lab",
    products: [
        .executable(name: "hijack-lab", targets: ["hijack-lab"]),
        // The Foundation half, built beside it under this name.
        .executable(name: "hijack-lab-full", targets: ["HijackLab"]),
    ],
    targets: [
        // A few glibc calls that Swift's Glibc module hides behind _GNU_SOURCE, and the kernel's own structs.
        .target(name: "CHijackLab"),
        .target(name: "HijackSystem", dependencies: ["CHijackLab"], path: "Sources/HijackLab/System"),
        .target(name: "HijackAudit", dependencies: ["HijackSystem", "CHijackLab"], path: "Sources/HijackLab/Audit"),
        .target(name: "HijackAgent", dependencies: ["HijackSystem", "HijackAudit", "CHijackLab"], path: "Sources/HijackLab/Agent"),
        .target(name: "HijackCLI", dependencies: ["HijackSystem", "HijackAudit", "HijackAgent", "CHijackLab"], path: "Sources/HijackLab/CLI"),
        // The Foundation half: the lab, the matrix and the reports, the program hijack-lab-full
        // (the product above), which the front execs. An executable target, not a library:
        // depending on it makes `swift run hijack-lab` build it without linking its code, and
        // so Foundation, into the front; a library's code would be linked in. A release build
        // links the Swift runtime and Foundation into it (-static-stdlib, at compile and link
        // time, so the autolinked libraries are the static ones): it starts in about 7 ms instead
        // of 17, most of which went to the dynamic loader's symbol lookups.
        .executableTarget(name: "HijackLab", dependencies: ["HijackSystem", "HijackAudit", "HijackAgent", "HijackCLI", "CHijackLab"],
                          exclude: ["System", "Audit", "Agent", "CLI"],
                          swiftSettings: [.unsafeFlags(["-static-stdlib"], .when(configuration: .release))],
                          linkerSettings: [.unsafeFlags(["-static-stdlib"], .when(configuration: .release))]),
        // The front door, with no Foundation: help, --version, the audit and the agents run here,
        // small and fast; every other command is handed to hijack-lab-full. A release build is one
        // static executable (the Swift runtime and glibc inside, no dynamic loader): `help` in about
        // 1.5 ms and 4 MB, against 7 ms and 18 MB for the Foundation program. The linker warns
        // that getpwuid_r (user names) then loads glibc's NSS modules at run time, which is what a
        // dynamic program does too; but they must match the glibc it was built with, so a release
        // front copied to another distribution may show uids without names. A debug build (and `swift test`, whose test bundle would inherit
        // the flag) links dynamically.
        .executableTarget(name: "hijack-lab", dependencies: ["HijackCLI", "HijackLab"],
                          linkerSettings: [.unsafeFlags(["-static-executable"], .when(configuration: .release))]),
        // The tests drive the real programs, so they depend on both being built.
        .testTarget(name: "HijackLabTests", dependencies: ["HijackLab", "hijack-lab"], exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
