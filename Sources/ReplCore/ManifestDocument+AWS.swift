import Foundation
import Yams

/// The `spec:` mapping of a `provider: aws` run, each value checked by ``AWSSpec``'s field checks
/// and every problem named by its line and `spec.KEY`.
extension DocumentContext {
    mutating func awsSpec(_ field: (key: Node, value: Node)?) -> AWSSpec? {
        guard let field, !Self.isNull(field.value) else { return AWSSpec() }
        guard case .mapping(let mapping) = field.value else {
            error(
                field.value,
                "spec: a provider: aws spec is a mapping such as {instanceType: t3.micro, image: ubuntu:noble}, got \(Self.describe(field.value))")
            return nil
        }
        var values: [String: Node] = [:]
        for (k, v) in mapping {
            guard case .scalar(let key) = k, AWSSpec.keys.contains(key.string) else {
                let word = { if case .scalar(let s) = k { return s.string } else { return "?" } }()
                let hint =
                    ManifestParser.suggestion(word, among: AWSSpec.keys).map { "did you mean \($0)?" }
                    ?? "known keys: \(AWSSpec.keys.joined(separator: ", "))"
                error(k, "spec.\(word.prefix(40)): unknown key; \(hint)")
                continue
            }
            values[key.string] = v
        }
        let before = diagnostics.count
        var spec = AWSSpec()
        func text(_ key: String, _ self_: inout DocumentContext) -> (String, Node)? {
            guard let node = values[key], !Self.isNull(node), let value = self_.string(node, key: "spec.\(key)") else { return nil }
            return (value, node)
        }
        if let (value, node) = text("instanceType", &self), let type = checked(AWSSpec.instanceType(value), node, key: "spec.instanceType") {
            spec.instanceType = type
            spec.arch = AWSSpec.arch(of: type)
        }
        if let (value, node) = text("image", &self), let image = checked(AWSSpec.image(value), node, key: "spec.image") { spec.image = image }
        if let (value, node) = text("arch", &self), let arch = checked(AWSSpec.arch(value), node, key: "spec.arch") {
            let typed = AWSSpec.arch(of: spec.instanceType)
            if typed == "arm64" && arch != typed {
                error(node, "spec.arch: \(arch), but \(spec.instanceType) is an arm64 (Graviton) type; remove arch or pick another type")
            }
            spec.arch = arch
        }
        if let (value, node) = text("region", &self) { spec.region = checked(AWSSpec.region(value), node, key: "spec.region") }
        if let (value, node) = text("zone", &self) { spec.zone = checked(AWSSpec.zone(value, region: spec.region), node, key: "spec.zone") }
        if let (value, node) = text("subnet", &self) {
            spec.subnet = checked(AWSSpec.resourceID(value, prefix: "subnet", what: "subnet"), node, key: "spec.subnet")
        }
        if let (value, node) = text("keyName", &self) {
            if value.isEmpty {
                error(node, "spec.keyName: is empty; give the name of an EC2 key pair or remove the key")
            } else if value.count > 255 {
                error(node, "spec.keyName: is \(value.count) characters long; an EC2 key pair name has at most 255")
            } else {
                spec.keyName = value
            }
        }
        if let (value, node) = text("endpoint", &self) { spec.endpoint = checked(AWSSpec.endpoint(value), node, key: "spec.endpoint") }
        if let node = values["securityGroups"], !Self.isNull(node) {
            if case .sequence(let items) = node {
                for item in items {
                    guard let value = string(item, key: "spec.securityGroups") else { continue }
                    if let id = checked(AWSSpec.resourceID(value, prefix: "sg", what: "security group"), item, key: "spec.securityGroups") {
                        spec.securityGroups.append(id)
                    }
                }
            } else {
                error(node, "spec.securityGroups: expected a list of security group ids such as [sg-0123abcd], got \(Self.describe(node))")
            }
        }
        if let node = values["spot"], !Self.isNull(node) {
            if case .scalar(let s) = node, s.resolvedTagName == .bool {
                spec.spot = ["true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y"].contains(s.string)
            } else {
                error(node, "spec.spot: expected true or false, got \(Self.describe(node))")
            }
        }
        if let node = values["disk"], !Self.isNull(node), let value = size(node, key: "spec.disk", example: "30G") {
            spec.disk = checked(AWSSpec.volumeSize(value), node, key: "spec.disk")
        }
        if let node = values["volumes"], !Self.isNull(node) { spec.volumes = volumes(node) }
        return diagnostics.count == before ? spec : nil
    }

    /// `volumes:` a list of sizes (`100G`) or of `{size, type, device}`, each device once.
    mutating func volumes(_ node: Node) -> [AWSSpec.Volume]? {
        guard case .sequence(let items) = node else {
            error(node, "spec.volumes: expected a list of volumes such as [100G, {size: 500G, type: st1}], got \(Self.describe(node))")
            return nil
        }
        if items.count > AWSSpec.Volume.devices.count {
            error(
                node,
                "spec.volumes: \(items.count) volumes; at most \(AWSSpec.Volume.devices.count) (\(AWSSpec.Volume.devices.first!) to \(AWSSpec.Volume.devices.last!))"
            )
            return nil
        }
        var wanted: [(size: Int, type: String, device: String?, node: Node)] = []
        for item in items {
            switch item {
            case .scalar:
                if let text = size(item, key: "spec.volumes", example: "100G"), let gib = checked(AWSSpec.volumeSize(text), item, key: "spec.volumes")
                {
                    wanted.append((gib, "gp3", nil, item))
                }
            case .mapping(let mapping):
                var fields: [String: Node] = [:]
                for (k, v) in mapping {
                    guard case .scalar(let key) = k, ["size", "type", "device"].contains(key.string) else {
                        error(k, "spec.volumes: unknown key \(Self.scalarText(k)); a volume has size, type and device")
                        continue
                    }
                    fields[key.string] = v
                }
                guard let sizeNode = fields["size"] else {
                    error(item, "spec.volumes: a volume needs its size (size: 100G)")
                    continue
                }
                guard let text = size(sizeNode, key: "spec.volumes.size", example: "100G"),
                    let gib = checked(AWSSpec.volumeSize(text), sizeNode, key: "spec.volumes.size")
                else { continue }
                var type = "gp3"
                if let t = fields["type"], let value = string(t, key: "spec.volumes.type") {
                    guard AWSSpec.Volume.types.contains(value) else {
                        error(
                            t,
                            "spec.volumes.type: \"\(value.prefix(40))\" is not an EBS volume type (\(AWSSpec.Volume.types.joined(separator: ", ")))")
                        continue
                    }
                    type = value
                }
                var device: String?
                if let d = fields["device"], let value = string(d, key: "spec.volumes.device") {
                    guard AWSSpec.Volume.devices.contains(value) else {
                        error(
                            d,
                            "spec.volumes.device: \"\(value.prefix(40))\" is not one of \(AWSSpec.Volume.devices.first!) to \(AWSSpec.Volume.devices.last!)"
                        )
                        continue
                    }
                    device = value
                }
                guard AWSSpec.Volume.sizes(type).contains(gib) else {
                    let range = AWSSpec.Volume.sizes(type)
                    error(
                        sizeNode,
                        "spec.volumes.size: \(gib)G is not a size EBS makes a \(type) volume in (\(range.lowerBound)G to \(range.upperBound)G)")
                    continue
                }
                wanted.append((gib, type, device, item))
            default:
                error(item, "spec.volumes: expected a size (100G) or {size, type, device}, got \(Self.describe(item))")
            }
        }
        // Each volume its own device: given ones first, the rest the next free, in order.
        var taken: Set<String> = []
        for volume in wanted {
            guard let device = volume.device else { continue }
            if !taken.insert(device).inserted { error(volume.node, "spec.volumes: \(device) is given to two volumes") }
        }
        var free = AWSSpec.Volume.devices.filter { !taken.contains($0) }.makeIterator()
        return wanted.map { AWSSpec.Volume(gib: $0.size, type: $0.type, device: $0.device ?? free.next()!) }
    }
}
