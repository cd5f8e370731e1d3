/// A machine specification `distro:version:arch`, every part optional.
///
/// Defaults: `ubuntu`, `noble`, and the host's architecture (`arm64` on Apple
/// Silicon, `amd64` elsewhere). Only the values OrbStack supports for `repl` are
/// accepted; numeric versions (`24.04`) are read as their codenames, as OrbStack
/// itself stores them.
public struct Spec: Hashable, Sendable, CustomStringConvertible, Codable {
    public var distro: String
    public var version: String
    public var arch: String

    public static let supportedDistros = ["ubuntu"]
    /// Supported versions as (codename, release number).
    public static let supportedVersions = [("noble", "24.04"), ("jammy", "22.04"), ("focal", "20.04")]
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

    public init(distro: String, version: String, arch: String) {
        self.distro = distro
        self.version = version
        self.arch = arch
    }

    /// Parses `distro:version:arch`, filling omitted or empty parts with defaults.
    /// Throws ``SpecError`` naming the bad part and the supported values.
    public init(parsing text: String) throws(SpecError) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        }
        guard parts.count <= 3 else {
            throw SpecError("spec \"\(text)\" has \(parts.count) parts; use distro:version:arch, e.g. ubuntu:noble:\(Spec.hostArch)")
        }
        let distro = parts.count > 0 && !parts[0].isEmpty ? parts[0] : Spec.defaultSpec.distro
        var version = parts.count > 1 && !parts[1].isEmpty ? parts[1] : Spec.defaultSpec.version
        var arch = parts.count > 2 && !parts[2].isEmpty ? parts[2] : Spec.defaultSpec.arch
        guard Spec.supportedDistros.contains(distro) else {
            throw SpecError("distro \"\(distro)\" is not supported on OrbStack (supported: \(Spec.supportedDistros.joined(separator: ", ")))")
        }
        if let codename = Spec.supportedVersions.first(where: { $0.1 == version })?.0 { version = codename }
        guard Spec.supportedVersions.contains(where: { $0.0 == version }) else {
            let list = Spec.supportedVersions.map { "\($0.0) (\($0.1))" }.joined(separator: ", ")
            throw SpecError("version \"\(version)\" is not supported on OrbStack (supported: \(list))")
        }
        if arch == "aarch64" { arch = "arm64" }
        if arch == "x86_64" || arch == "amd64" { arch = "amd64" }
        guard Spec.supportedArchs.contains(arch) else {
            throw SpecError("arch \"\(arch)\" is not supported on OrbStack (supported: \(Spec.supportedArchs.joined(separator: ", ")))")
        }
        self.init(distro: distro, version: version, arch: arch)
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

    /// OrbStack, per its provider guide: snapshots by cloning, Tailscale built in,
    /// spawn is idempotent by name; everything cloud-like is absent.
    public static let orbstack = ProviderCapabilities(
        name: "orbstack", snapshots: true, tailscaleNative: true, idempotentSpawn: true,
        spot: false, gpu: false, multiRegion: false, persistentVolumes: false, warmVolumes: false,
        hibernation: false, costExplorer: false, customNetworking: false)

    /// Every capability as (name, supported), in a stable order for display.
    public var table: [(String, Bool)] {
        [("snapshots", snapshots), ("tailscaleNative", tailscaleNative), ("idempotentSpawn", idempotentSpawn),
         ("spot", spot), ("gpu", gpu), ("multiRegion", multiRegion), ("persistentVolumes", persistentVolumes),
         ("warmVolumes", warmVolumes), ("hibernation", hibernation), ("costExplorer", costExplorer),
         ("customNetworking", customNetworking)]
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
            return "\(display) has no instance types; give resources: {cpus: 2, memory: 4G, disk: 64G}"
        default:
            return nil
        }
    }
}
