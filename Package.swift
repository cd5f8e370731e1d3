// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "repl",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "repl", targets: ["repl"]),
        .executable(name: "orbctl-sim", targets: ["orbctl-sim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
    ],
    targets: [
        .target(
            name: "ReplCore",
            dependencies: [.product(name: "Yams", package: "Yams")]
        ),
        // Running processes, and the one place for what differs between Linux and macOS.
        .target(name: "ReplPlatform", dependencies: [.product(name: "Subprocess", package: "swift-subprocess")]),
        .target(name: "OrbStack", dependencies: ["ReplCore", "ReplPlatform"]),
        // EC2 and S3 spoken natively (SigV4, the Query API, XML): the AWS provider's client.
        .target(name: "AWS", dependencies: ["ReplCore", "ReplPlatform", "OrbStack"]),
        .target(name: "OrbSim", dependencies: ["ReplCore", "ReplPlatform", .product(name: "Yams", package: "Yams")]),
        .target(name: "ReplStore", dependencies: ["ReplCore", "ReplPlatform", .product(name: "GRDB", package: "GRDB.swift")]),
        .target(name: "ReplController", dependencies: ["ReplCore", "ReplStore", "OrbStack", "ReplPlatform"]),
        .executableTarget(name: "orbctl-sim", dependencies: ["OrbSim", "ReplPlatform"]),
        .executableTarget(
            name: "repl",
            dependencies: [
                "ReplCore", "ReplPlatform", "OrbSim", "OrbStack", "ReplStore", "ReplController", "AWS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "repl-bench", dependencies: ["ReplCore", "ReplPlatform", "OrbSim", "OrbStack", "ReplStore", "ReplController", "AWS"]),
        .target(name: "ReplTestSupport", dependencies: ["OrbStack", "OrbSim", "ReplPlatform"], path: "Tests/ReplTestSupport"),
        .testTarget(name: "ReplCoreTests", dependencies: ["ReplCore", "ReplTestSupport"]),
        .testTarget(name: "ReplPlatformTests", dependencies: ["ReplPlatform"], exclude: ["Fixtures"]),
        .testTarget(name: "OrbStackTests", dependencies: ["ReplPlatform", "OrbStack", "OrbSim", "ReplCore", "ReplTestSupport", "orbctl-sim"]),
        .testTarget(
            name: "ReplControllerTests",
            dependencies: [
                "ReplPlatform",
                "ReplController", "ReplStore", "OrbStack", "OrbSim", "ReplCore", "ReplTestSupport", "orbctl-sim",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]),
        .testTarget(
            name: "ReplCLITests", dependencies: ["ReplPlatform", "ReplCore", "ReplStore", "OrbStack", "ReplTestSupport", "repl", "orbctl-sim"],
            exclude: ["Snapshots"]),
        .testTarget(name: "AWSTests", dependencies: ["AWS", "ReplCore", "ReplStore", "ReplController", "ReplTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "OrbSimTests", dependencies: ["ReplPlatform", "OrbSim", "ReplCore", "OrbStack", "ReplTestSupport", "orbctl-sim"]),
    ],
    swiftLanguageModes: [.v6]
)
