/// The Linux distros `orbctl create DISTRO[:VERSION]` accepts, with their versions and
/// architectures. Source: OrbStack's own code as published (github.com/orbstack/swift-nio,
/// branch `cheru/danny/next`, commit 82202d205739871a9229d501014fdcdc6f3ad6f0, 2025-08-20):
/// the distro names and CLI defaults from `scon/images/images.go` (L33–84, L106–125), the
/// numeric aliases from its L128–144, the versions offered from the app's picker
/// `swift/MacVirt/Machines/Images.swift` (L83–114), the distros without a cloud-init image
/// from images.go L153–167 (`scon/create.go` L49–55 refuses `-c` for them), NixOS as arm64
/// only on Apple silicon from `CreateMachineView.swift` L174–179 ("NixOS doesn't work with
/// Rosetta"), and the architectures from images.go L179–188. The CLI checks only the distro
/// name; a version missing from OrbStack's image index fails at create with `image not
/// found`, so repl refuses what this table does not list, before anything is recorded.
public struct Distro: Sendable, Equatable {
    public var name: String
    /// Versions OrbStack offers, oldest first, with their numeric aliases.
    public var versions: [(name: String, alias: String?)]
    /// What OrbStack picks when no version is given.
    public var defaultVersion: String
    /// Has a cloud-init ("cloud") image: `userData` works.
    public var cloudInit: Bool

    public static func == (a: Distro, b: Distro) -> Bool { a.name == b.name }

    init(_ name: String, _ versions: [String], default defaultVersion: String, aliases: [String: String] = [:], cloudInit: Bool = true) {
        self.name = name
        self.versions = versions.map { ($0, aliases[$0]) }
        self.defaultVersion = defaultVersion
        self.cloudInit = cloudInit
    }

    public static let all: [Distro] = [
        Distro("alma", ["8", "9"], default: "9"),
        Distro("alpine", ["edge", "3.19", "3.20", "3.21", "3.22"], default: "3.22"),
        Distro("arch", ["current"], default: "current", cloudInit: false),
        Distro("centos", ["9-Stream"], default: "9-Stream"),
        Distro(
            "debian", ["bullseye", "bookworm", "trixie", "forky"], default: "bookworm",
            aliases: ["bullseye": "11", "bookworm": "12", "trixie": "13", "forky": "14"]),
        Distro("devuan", ["chimaera", "daedalus"], default: "daedalus", aliases: ["chimaera": "4", "daedalus": "5"]),
        Distro("fedora", ["40", "41", "42"], default: "42"),
        Distro("gentoo", ["current"], default: "current", cloudInit: false),
        Distro("kali", ["current"], default: "current"),
        Distro("nixos", ["unstable", "25.05"], default: "25.05", cloudInit: false),
        Distro("openeuler", ["20.03", "22.03", "24.03", "25.03"], default: "25.03"),
        Distro("opensuse", ["tumbleweed", "15.5", "15.6"], default: "15.6"),
        Distro("oracle", ["8", "9"], default: "9"),
        Distro("rocky", ["8", "9"], default: "9"),
        Distro(
            "ubuntu", ["jammy", "noble", "oracular", "plucky"], default: "plucky",
            aliases: ["jammy": "22.04", "noble": "24.04", "oracular": "24.10", "plucky": "25.04"]),
        Distro("void", ["current"], default: "current", cloudInit: false),
    ]

    public static func named(_ name: String) -> Distro? { all.first { $0.name == name } }

    /// A version's codename for its numeric alias (`24.04` → `noble`), as OrbStack stores it.
    public func canonical(_ version: String) -> String? {
        if versions.contains(where: { $0.name == version }) { return version }
        return versions.first { $0.alias == version }?.name
    }

    /// `jammy (22.04), noble (24.04)`.
    public var versionList: String {
        versions.map { v in v.alias.map { "\(v.name) (\($0))" } ?? v.name }.joined(separator: ", ")
    }

    /// The architectures repl lets `orbctl create -a` take: arm64 and amd64 (under Rosetta) on
    /// Apple silicon, NixOS natively only; amd64 on an Intel Mac (OrbStack's i386 there is not
    /// offered). The emulator stands for an Apple silicon Mac.
    public func architectures(intelMac: Bool = Spec.isIntelMac) -> [String] {
        if intelMac { return ["amd64"] }
        return name == "nixos" ? ["arm64"] : ["arm64", "amd64"]
    }
}
