// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "hijack-lab",
    products: [
        .executable(name: "hijack-lab", targets: ["hijack-lab"]),
    ],
    targets: [
        // A few glibc calls that Swift's Glibc module hides behind _GNU_SOURCE.
        .target(name: "CHijackLab"),
        .target(name: "HijackLab", dependencies: ["CHijackLab"]),
        .executableTarget(name: "hijack-lab", dependencies: ["HijackLab"]),
        // The tests drive the real binary as an agent, so they depend on it being built.
        .testTarget(name: "HijackLabTests", dependencies: ["HijackLab", "hijack-lab"], exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
