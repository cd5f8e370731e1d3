/// A machine specification `distro:version:arch`, every part optional.
///
/// Defaults: `ubuntu`, `noble` (repl pins the LTS; for another distro, OrbStack's own default
/// version), and the host's architecture (`arm64` on Apple Silicon, `amd64` elsewhere). Only
/// what OrbStack offers is accepted (``Distro/all``, with its sources); numeric versions
/// (`24.04`, `12`) are read as their codenames, as OrbStack itself stores them.
public struct Spec: Hashable, Sendable, CustomStringConvertible, Codable {
    public var distro: String
    public var version: String
    public var arch: String

    public static var supportedDistros: [String] { Distro.all.map(\.name) }
    public static let supportedArchs = ["arm64", "amd64"]

    /// The host's architecture in OrbStack's spelling.
    public static var hostArch: String {
        #if arch(arm64)
            return "arm64"
        #else
            return "amd64"
        #endif
    }

    public static let defaultSpec = Spec(distro: "ubuntu", version: "noble", arch: hostArch)

    /// An Intel Mac, where OrbStack has no arm64 machines.
    public static var isIntelMac: Bool {
        #if os(macOS) && arch(x86_64)
            return true
        #else
            return false
        #endif
    }

    public init(distro: String, version: String, arch: String) {
        self.distro = distro
        self.version = version
        self.arch = arch
    }

    /// Parses `distro:version:arch`, filling omitted or empty parts with defaults.
    /// Throws ``SpecError`` naming the bad part and the supported values.
    public init(parsing text: String) throws(SpecError) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        guard parts.count <= 3 else {
            throw SpecError("spec \"\(text)\" has \(parts.count) parts; use distro:version:arch, e.g. ubuntu:noble:\(Spec.hostArch)")
        }
        let distroName = parts.count > 0 && !parts[0].isEmpty ? parts[0].lowercased() : Spec.defaultSpec.distro
        guard let distro = Distro.named(distroName) else {
            throw SpecError("distro \"\(distroName)\" is not one OrbStack offers (it offers: \(Spec.supportedDistros.joined(separator: ", ")))")
        }
        var version = parts.count > 1 && !parts[1].isEmpty ? parts[1] : (distro.name == "ubuntu" ? Spec.defaultSpec.version : distro.defaultVersion)
        // Codenames are lowercase; a few versions are not (`9-Stream`).
        guard
            let canonical = distro.canonical(version) ?? distro.canonical(version.lowercased())
                ?? distro.versions.first(where: { $0.name.lowercased() == version.lowercased() })?.name
        else {
            throw SpecError("version \"\(version)\" of \(distro.name) is not one OrbStack offers (it offers: \(distro.versionList))")
        }
        version = canonical
        let archs = distro.architectures()
        var arch = parts.count > 2 && !parts[2].isEmpty ? parts[2].lowercased() : (archs.contains(Spec.hostArch) ? Spec.hostArch : archs[0])
        if arch == "aarch64" { arch = "arm64" }
        if arch == "x86_64" { arch = "amd64" }
        guard Spec.supportedArchs.contains(arch) else {
            throw SpecError("arch \"\(arch)\" is not supported on OrbStack (supported: \(Spec.supportedArchs.joined(separator: ", ")))")
        }
        if !archs.contains(arch) {
            throw SpecError(
                "arch \"\(arch)\": \(distro.name) runs only as \(archs.joined(separator: " or ")) on this Mac"
                    + (distro.name == "nixos" ? " (NixOS does not work under Rosetta)" : ""))
        }
        self.init(distro: distro.name, version: version, arch: arch)
    }

    public var description: String { "\(distro):\(version):\(arch)" }
}

/// Why a spec string was refused.
public struct SpecError: Error, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// What a provider can and cannot do, as its guide states it. Manifest
/// validation derives its "OrbStack cannot …" errors from these flags.
public struct ProviderCapabilities: Sendable, Equatable {
    public var name: String
    public var snapshots: Bool
    public var tailscaleNative: Bool
    public var idempotentSpawn: Bool
    public var spot: Bool
    public var gpu: Bool
    public var multiRegion: Bool
    public var persistentVolumes: Bool
    public var warmVolumes: Bool
    public var hibernation: Bool
    public var costExplorer: Bool
    public var customNetworking: Bool
    /// OrbStack's own machine options: `resources`, `isolated`, `user`, `userData`.
    public var machineOptions = true
    /// `files` copied in and `artifacts` copied out.
    public var fileCopies = true
    /// The machines write their status channel elsewhere (EC2's to S3) and the host's copy is a
    /// mirror, brought up to date by reading it (``Provider/fetchChannel(_:)``).
    public var mirroredChannel = false

    /// OrbStack, per its provider guide: snapshots by cloning, Tailscale built in,
    /// create is idempotent by name; everything cloud-like is absent.
    public static let orbstack = ProviderCapabilities(
        name: "orbstack", snapshots: true, tailscaleNative: true, idempotentSpawn: true,
        spot: false, gpu: false, multiRegion: false, persistentVolumes: false, warmVolumes: false,
        hibernation: false, costExplorer: false, customNetworking: false)

    /// EC2, as repl drives it: instances of a type in a region, spot, subnets and security groups;
    /// snapshots as AMIs; no OrbStack machine options, and (for now) no file copies.
    public static let aws: ProviderCapabilities = {
        var aws = ProviderCapabilities(
            name: "aws", snapshots: true, tailscaleNative: false, idempotentSpawn: true,
            spot: true, gpu: false, multiRegion: true, persistentVolumes: false, warmVolumes: false,
            hibernation: false, costExplorer: false, customNetworking: true)
        aws.machineOptions = false
        aws.fileCopies = false
        aws.mirroredChannel = true
        return aws
    }()

    /// The providers a manifest may name.
    public static let known: [ProviderCapabilities] = [.orbstack, .aws]

    /// Every capability as (name, supported), in a stable order for display.
    public var table: [(String, Bool)] {
        [
            ("snapshots", snapshots), ("tailscaleNative", tailscaleNative), ("idempotentSpawn", idempotentSpawn),
            ("spot", spot), ("gpu", gpu), ("multiRegion", multiRegion), ("persistentVolumes", persistentVolumes),
            ("warmVolumes", warmVolumes), ("hibernation", hibernation), ("costExplorer", costExplorer),
            ("customNetworking", customNetworking),
        ]
    }

    /// Manifest keys that ask for a capability, with the capability's flag and the
    /// reason given when the provider lacks it.
    public func unsupportedKeyReason(_ key: String) -> String? {
        let display = name == "orbstack" ? "OrbStack" : name
        switch key {
        case "spot", "spotPrice", "preemptible":
            return spot ? nil : "\(display) has no spot instances"
        case "region", "regions", "zone", "availabilityZone":
            return multiRegion ? nil : "\(display) has no regions: it runs only on this Mac"
        case "volumes", "volume", "persistentVolume":
            return persistentVolumes ? nil : "\(display) has no persistent volumes: each machine is independent"
        case "warmVolumes", "warmVolume":
            return warmVolumes ? nil : "\(display) has no warm volumes"
        case "gpu", "gpus", "accelerator", "accelerators":
            return gpu ? nil : "\(display) machines have no GPUs"
        case "hibernate", "hibernation":
            return hibernation ? nil : "\(display) cannot hibernate machines"
        case "cost", "budget", "maxCost":
            return costExplorer ? nil : "\(display) is free and has no billing API"
        case "network", "subnet", "securityGroups", "ports":
            return customNetworking ? nil : "\(display) machines share its one network; per-machine networking is not configurable"
        case "instanceType":
            return name == "aws" ? nil : "\(display) has no instance types; give resources: {cpus: 2, memory: 4G, disk: 64G}"
        case "resources":
            return machineOptions ? nil : "\(display) sizes a machine by its spec.instanceType"
        case "isolated", "user", "userData":
            return machineOptions ? nil : "\(display) machines have no OrbStack options (isolated, user, userData); each is a whole VM"
        case "files", "artifacts":
            if fileCopies { return nil }
            return key == "files"
                ? "\(display) cannot copy files into its machines yet; fetch them in bootstrap"
                : "\(display) cannot copy files out of its machines yet; upload them from the command"
        case "from":
            return snapshots ? nil : "\(display) cannot clone snapshots yet; give a spec"
        default:
            return nil
        }
    }
}
