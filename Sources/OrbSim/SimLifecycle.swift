import Foundation
import ReplCore
import ReplPlatform

extension OrbSim {
    // MARK: - Names, images and addresses

    static let reservedNames: Set<String> = ["default", "vm", "host", "services", "gateway", "k8s", "docker"]

    /// `nil` when the name is acceptable, else the daemon's complaint.
    static func nameProblem(_ name: String) -> String? {
        // The pattern of the daemon: ^[a-zA-Z0-9][a-zA-Z0-9-.]+$ (two characters at least, no `_`).
        let scalars = Array(name.unicodeScalars)
        func ok(_ c: Unicode.Scalar, first: Bool) -> Bool {
            ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) || (!first && (c == "-" || c == "."))
        }
        if scalars.count < 2 || !ok(scalars[0], first: true) || !scalars.dropFirst().allSatisfy({ ok($0, first: false) }) {
            return "invalid machine name: '\(name)'"  // text uncertain (ORBCTL.md gives only the rule)
        }
        if reservedNames.contains(name.lowercased()) { return "machine name '\(name)' is reserved" }  // text uncertain
        return nil
    }

    /// A machine's root directory, keyed by what survives a rename and `admin clock advance`.
    func machineRoot(_ key: String) -> URL { store.machinesDirectory.appendingPathComponent(key).appendingPathComponent("root") }

    /// Makes the machine's own directories (but `/etc`, which its first boot makes: see `MachineUsers.prepare`).
    func makeMachineRoot(_ key: String, user: String) throws {
        let root = machineRoot(key)
        for d in MachineBoot.directories + ["home/\(user)"] where d != "etc" {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(d), withIntermediateDirectories: true)
        }
        chmod(root.appendingPathComponent("tmp").path, 0o1777)
        chmod(root.appendingPathComponent("var/tmp").path, 0o1777)
    }

    /// A Linux account name: lower case, digits, `_` and `-`, not starting with a digit or `-`.
    static func isUsername(_ name: String) -> Bool { MachineOptions.isUsername(name) }

    /// `--memory 4G` / `--disk 64G` as a number of `unit`s (bytes or MiB); nil when unreadable.
    static func size(_ text: String, unit: Double) -> Int64? {
        let units: [Character: Double] = ["K": 1024, "M": 1_048_576, "G": 1_073_741_824, "T": 1_099_511_627_776]
        var body = text.uppercased()
        if body.hasSuffix("IB") { body.removeLast(2) } else if body.hasSuffix("B") { body.removeLast() }
        var factor = 1.0
        if let last = body.last, let f = units[last] {
            factor = f
            body.removeLast()
        }
        guard let value = Double(body), value > 0 else { return nil }
        return Int64(value * factor / unit)
    }

    // MARK: - Lifecycle verbs

    func create(_ args: [String]) throws -> Int32 {
        let usage = "create [flags] DISTRO[:VERSION] [MACHINE_NAME]"
        let flags = try FlagParser(
            usage: usage, bools: ["p": "set-password", "": "isolated,isolate-network"],
            values: ["a": "arch", "u": "user", "c": "user-data", "-": "cpus,memory,disk"]
        ).parse(args)
        guard (1...2).contains(flags.positional.count) else {
            throw SimExit.usage("accepts between 1 and 2 arg(s), received \(flags.positional.count)", usage)
        }
        // Flags newer than the emulated version are unknown to it, as to an older orbctl: per-machine
        // limits arrived in 2.2.0 [orbstack issue #789], isolated machines in 2.1.0 [docs].
        let emulated = OrbSim.number(of: emulatedVersion)
        for flag in ["cpus", "memory", "disk"] where flags.values[flag] != nil && emulated < 2_020_000 {
            throw SimExit.usage("unknown flag: --\(flag)", usage)
        }
        if flags.bools.contains("isolated") && emulated < 2_010_000 { throw SimExit.usage("unknown flag: --isolated", usage) }
        // An Apple silicon Mac: arm64 (native) and amd64 (Rosetta) [S: images.go Archs()].
        var arch = Spec.hostArch
        if let a = flags.values["arch"] {
            guard ["arm64", "amd64"].contains(a) else { throw SimExit(code: 1, stderr: "invalid architecture: \(a)\n") }
            arch = a
        }
        let parts = flags.positional[0].split(separator: ":", maxSplits: 1).map(String.init)
        let distroName = parts.first ?? ""
        // The CLI checks the distro name only [S: scon/cmd/scli/cmd/create.go L88–95] …
        guard let distro = Distro.named(distroName) else { throw SimExit(code: 1, stderr: "invalid distro: \(distroName)\n") }
        let name = flags.positional.count > 1 ? flags.positional[1] : distroName
        if let problem = OrbSim.nameProblem(name) { throw SimExit.daemon("create '\(name)': \(problem)") }
        // … the daemon reads numeric versions as codenames, and a version its image index lacks
        // fails [S: scon/create.go L72–79, scon/images.go L284–286] (the prefix is uncertain).
        guard let version = distro.canonical(parts.count > 1 ? parts[1] : distro.defaultVersion) else {
            throw SimExit.daemon("create '\(name)': image not found")
        }
        if flags.values["user-data"] != nil && !distro.cloudInit {
            throw SimExit.daemon("create '\(name)': cloud-init not supported for '\(distro.name)'")  // [S: scon/create.go L49–55]
        }
        // Per-machine limits (OrbStack 2.2.0+), shown as `machine.NAME.cpu|memory_mib|disk_bytes`.
        var resources: [String: String] = [:]
        if let cpus = flags.values["cpus"] {
            guard let n = Int(cpus), n > 0 else { throw SimExit(code: 1, stderr: "invalid cpus: \(cpus)\n") }  // text uncertain
            resources["cpu"] = String(n)
        }
        if let memory = flags.values["memory"] {
            guard let mib = OrbSim.size(memory, unit: 1_048_576), mib > 0 else { throw SimExit(code: 1, stderr: "invalid memory: \(memory)\n") }
            resources["memory_mib"] = String(mib)
        }
        if let disk = flags.values["disk"] {
            guard let bytes = OrbSim.size(disk, unit: 1) else { throw SimExit(code: 1, stderr: "invalid disk: \(disk)\n") }
            resources["disk_bytes"] = String(bytes)
        }
        let userData = try flags.values["user-data"].map { path -> String in
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw SimExit(code: 1, stderr: "open \(path): no such file or directory\n")
            }
            return text
        }
        // The default user: `--user`, else the calling user's name (the Mac user's, on a Mac).
        // **uncertain**: as root (CI) there is no Mac user; `ubuntu` stands in, so that commands
        // still run as a user who is not root unless `-u root` says so.
        let env = environment["USER"].flatMap { $0 == "root" || $0.isEmpty || !OrbSim.isUsername($0) ? nil : $0 }
        if let given = flags.values["user"], !OrbSim.isUsername(given) {
            throw SimExit.daemon("create '\(name)': invalid username: '\(given)'")  // text uncertain
        }
        let user = flags.values["user"] ?? env ?? "ubuntu"
        let bootMilliseconds = latency("create")
        var rng = SystemRandomNumberGenerator()
        let (id, ip) = try store.withState { state -> (String, String?) in
            let now = now(state)
            if state.machines.contains(where: { $0.name == name }) {
                throw SimExit.daemon("create '\(name)': machine already exists: '\(name)'")
            }
            // ULIDs carry real time (see `admin clock advance`); states and leases use the emulator's clock.
            let id = ULID.make(at: Date(), using: &rng)
            let ip = state.pool.allocate(to: id, now: now)
            var settings: [String: String] = [:]
            if flags.bools.contains("isolated") { settings["isolated"] = "true" }
            if flags.bools.contains("isolate-network") { settings["isolate_network"] = "true" }
            settings.merge(resources) { $1 }
            state.machines.append(
                SimMachine(
                    id: id, name: name, distro: distro.name, version: version, arch: arch,
                    variant: flags.values["user-data"] == nil ? "default" : "cloud", defaultUsername: user,
                    storedState: "starting", transitionAt: now.addingTimeInterval(Double(bootMilliseconds) / 1000), ip4: ip,
                    createdAt: now, busyOperation: nil, busyUntil: nil, settings: settings))
            return (id, ip)
        }
        let key = String(id.dropFirst(10))
        try makeMachineRoot(key, user: user)
        // Blocks until the machine has started, as the real create does.
        sleepMilliseconds(bootMilliseconds)
        guard ip != nil else {
            // No address within the wait: the half-made machine is removed.
            try store.withState { state in state.machines.removeAll { $0.id == id } }
            store.removeTree(store.machinesDirectory.appendingPathComponent(key))
            throw SimExit.daemon("create '\(name)': setup: machine didn't start in 30s (missing IP address)")
        }
        if let userData {
            // cloud-init runs in the booted machine, after create has returned (**uncertain**:
            // the stricter model; a client that must build on it waits with `cloud-init status --wait`).
            guard let machine = try store.read().machines.first(where: { $0.id == id }) else { throw SimExit.notFound(name) }
            try CloudInit(sim: self).start(userData, in: machine)
        }
        return 0
    }

    /// Resolves every argument, failing on the first unknown one before acting.
    func resolve(_ keys: [String], all: Bool) throws -> [String] {
        let state = try store.read()
        if all || keys.isEmpty { return state.machines.map(\.id) }
        return try keys.map { key in
            guard let i = OrbSim.find(key, in: state) else { throw SimExit.notFound(key) }
            return state.machines[i].id
        }
    }

    func start(_ args: [String]) throws -> Int32 {
        let flags = try FlagParser(usage: "start [flags] [MACHINE...]", bools: ["a": "all"]).parse(args)
        for id in try resolve(flags.positional, all: flags.bools.contains("all")) { try startMachine(id: id) }
        return 0
    }

    /// Starts one machine (no-op when running) and blocks until it runs.
    func startMachine(id: String) throws {
        let boot = Double(latency("start")) / 1000
        let actions = try store.withState { state -> [MachineLifecycle.Action] in
            let now = now(state)
            guard let i = state.machines.firstIndex(where: { $0.id == id }) else { throw SimExit.notFound(id) }
            var m = state.machines[i]
            if let op = m.busy(at: now) { throw SimExit.daemon("cannot start: operations are in progress: \(op)") }
            // **uncertain** text.
            if m.lifecycle.state(at: now) == .deleting { throw SimExit.daemon("cannot start: machine is being deleted") }
            let actions = m.lifecycle.start(at: now, boot: boot)
            if actions.contains(.leaseAddress) {
                guard let ip = state.pool.allocate(to: id, now: now) else {
                    throw SimExit.daemon("start '\(m.name)': setup: machine didn't start in 30s (missing IP address)")
                }
                m.ip4 = ip
            }
            state.machines[i] = m
            return actions
        }
        try perform(actions, machineID: id)
    }

    /// Carries out what a lifecycle request returned, outside the state lock.
    func perform(_ actions: [MachineLifecycle.Action], machineID id: String) throws {
        for action in actions {
            switch action {
            case .endProcesses(let grace): MachineBoot(sim: self).halt(String(id.dropFirst(10)), grace: grace)
            case .wait(let seconds): sleepMilliseconds(Int(seconds * 1000))
            case .leaseAddress, .releaseAddress, .abandonAddress: break  // done under the lock
            }
        }
    }

    func stop(_ args: [String]) throws -> Int32 {
        let flags = try FlagParser(usage: "stop [flags] [MACHINE...]", bools: ["a": "all", "f": "force"]).parse(args)
        // With no name the real orbctl stops all of OrbStack: every machine stops.
        for id in try resolve(flags.positional, all: flags.bools.contains("all")) { try stopMachine(id: id) }
        return 0
    }

    /// Stops one machine gracefully (no-op when stopped): its processes end and its address is returned.
    func stopMachine(id: String) throws {
        try perform(try recordStop(id: id), machineID: id)
    }

    /// A stop's change of state (stopping, its address returned), and what is left to do.
    func recordStop(id: String) throws -> [MachineLifecycle.Action] {
        let grace = Double(latency("stop")) / 1000
        return try store.withState { state -> [MachineLifecycle.Action] in
            let now = now(state)
            guard let i = state.machines.firstIndex(where: { $0.id == id }) else { throw SimExit.notFound(id) }
            let actions = state.machines[i].lifecycle.stop(at: now, grace: grace)
            if actions.contains(.releaseAddress) { state.pool.release(machineID: id) }
            return actions
        }
    }

    func restart(_ args: [String]) throws -> Int32 {
        let flags = try FlagParser(usage: "restart [flags] [MACHINE...]", bools: ["a": "all"]).parse(args)
        for id in try resolve(flags.positional, all: flags.bools.contains("all")) {
            try stopMachine(id: id)
            try startMachine(id: id)
        }
        return 0
    }

    func delete(_ args: [String]) throws -> Int32 {
        let usage = "delete [flags] MACHINE..."
        let flags = try FlagParser(usage: usage, bools: ["f": "force"]).parse(args)
        guard !flags.positional.isEmpty else { throw SimExit.usage("no machines specified", usage) }
        let state = try store.read()
        var ids: [String] = []
        for key in flags.positional {
            if !state.machines.contains(where: { $0.name == key }), state.machines.contains(where: { $0.id == key }) {
                // OrbStack 2.2.3 crashes when deleting by id (issue #2671): reproduce it as a failing exit.
                throw SimExit(
                    code: 2,
                    stderr: """
                        panic: runtime error: invalid memory address or nil pointer dereference
                        [signal SIGSEGV: segmentation violation code=0x2 addr=0x0 pc=0x1024b3c8c]

                        goroutine 1 [running]:
                        github.com/orbstack/macvirt/scon/cmd/scli/cmd.init.func8(0x140001b4300, {0x14000196a00, 0x1, 0x1})

                        """)
            }
            guard let i = OrbSim.find(key, in: state) else { throw SimExit.notFound(key) }
            ids.append(state.machines[i].id)
        }
        if io.stdoutIsTTY && !flags.bools.contains("force") {
            out("Delete \(flags.positional.joined(separator: ", "))? [y/N] ")
            let answer = String(decoding: io.stdin.availableData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard answer.lowercased().hasPrefix("y") else { return 1 }
        }
        for id in ids {
            let actions = try store.withState { state -> [MachineLifecycle.Action] in
                let now = now(state)
                guard let i = state.machines.firstIndex(where: { $0.id == id }) else { return [] }
                let actions = state.machines[i].lifecycle.delete(at: now)
                // A running machine is killed: its address stays leased.
                if actions.contains(.abandonAddress) { state.pool.abandon(machineID: id, now: now) }
                if actions.contains(.releaseAddress) { state.pool.release(machineID: id) }
                return actions
            }
            try finishDelete(id: id, actions: actions)
        }
        return 0
    }

    /// The second half of a delete: the machine's processes end, then its record and its
    /// disk go. Under the machine's boot lock, so that no command boots it meanwhile.
    func finishDelete(id: String, actions: [MachineLifecycle.Action]) throws {
        let key = String(id.dropFirst(10))
        let directory = store.machinesDirectory.appendingPathComponent(key)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let lock = try MachineBoot(sim: self).bootLock(key)
        defer { lock.release() }
        try perform(actions, machineID: id)
        sleepMilliseconds(latency("delete"))
        try store.withState { state in state.machines.removeAll { $0.id == id } }
        store.removeTree(directory)
    }

    /// A delete whose caller was killed midway is finished by the next call, as OrbStack's
    /// daemon finishes it: a machine is `deleting` for at most `MachineLifecycle.deleteTime`.
    func finishAbandonedDeletes() {
        guard let state = try? store.read() else { return }
        let now = now(state)
        for m in state.machines where m.lifecycle.stored == .deleting && (m.transitionAt ?? now) <= now {
            try? finishDelete(id: m.id, actions: [.endProcesses(grace: 0)])
        }
    }

    func clone(_ args: [String]) throws -> Int32 {
        let usage = "clone [flags] SOURCE NEW_NAME"
        let flags = try FlagParser(usage: usage).parse(args)
        guard flags.positional.count == 2 else { throw SimExit.usage("accepts 2 arg(s), received \(flags.positional.count)", usage) }
        let (sourceKey, name) = (flags.positional[0], flags.positional[1])
        let copyTime = latency("clone")
        var rng = SystemRandomNumberGenerator()
        let (sourceID, id) = try store.withState { state -> (String, String) in
            let now = now(state)
            guard let s = OrbSim.find(sourceKey, in: state) else { throw SimExit.notFound(sourceKey) }
            if state.machines.contains(where: { $0.name == name }) { throw SimExit.daemon("machine already exists: '\(name)'") }
            if let problem = OrbSim.nameProblem(name) { throw SimExit.daemon(problem) }
            // Busy until the copy is done (cleared below), at most a minute if the caller is killed.
            let until = now.addingTimeInterval(max(Double(copyTime) / 1000, MachineLifecycle.cloneTime))
            var copy = state.machines[s]
            copy.id = ULID.make(at: Date(), using: &rng)
            copy.name = name
            copy.storedState = "stopped"
            copy.transitionAt = nil
            copy.ip4 = nil
            copy.createdAt = now
            copy.busyOperation = "clone"
            copy.busyUntil = until
            state.machines[s].busyOperation = "clone"
            state.machines[s].busyUntil = until
            state.machines.append(copy)
            return (state.machines[s].id, copy.id)
        }
        // Copy the disk: the machine's own directories (ownership kept), not its running init.
        let from = store.machinesDirectory.appendingPathComponent(String(sourceID.dropFirst(10)))
        let to = store.machinesDirectory.appendingPathComponent(String(id.dropFirst(10)))
        // Copied beside, then moved in whole: a clone killed midway leaves no half disk.
        let partial = store.machinesDirectory.appendingPathComponent(".clone-\(String(id.dropFirst(10)))")
        store.removeTree(partial)
        try FileManager.default.createDirectory(at: partial, withIntermediateDirectories: true)
        if FileManager.default.fileExists(atPath: from.appendingPathComponent("root").path) {
            let (source, target) = (from.appendingPathComponent("root").path, partial.path)
            let copy = try waitForAsync {
                try await SystemProcessRunner.run(
                    "/bin/cp", ["-a", source, target], input: nil, timeout: 600,
                    environment: ["PATH": "/usr/bin:/bin"], limit: 1 << 16)
            }
            guard copy.status == 0 else {
                // No half-made machine is left behind.
                try store.withState { state in state.machines.removeAll { $0.id == id } }
                store.removeTree(partial)
                throw SimExit.daemon("clone '\(name)': copy: \(copy.stderrText.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
        }
        if let data = FileManager.default.contents(atPath: from.appendingPathComponent("user-data").path) {
            FileManager.default.createFile(atPath: partial.appendingPathComponent("user-data").path, contents: data)
        }
        store.removeTree(to)
        do {
            try FileManager.default.moveItem(at: partial, to: to)
        } catch {
            throw SimExit.daemon("clone '\(name)': \(error.localizedDescription)")
        }
        sleepMilliseconds(copyTime)
        try store.withState { state in
            for i in state.machines.indices where state.machines[i].id == id || state.machines[i].id == sourceID {
                state.machines[i].busyOperation = nil
                state.machines[i].busyUntil = nil
            }
        }
        return 0
    }

    func rename(_ args: [String]) throws -> Int32 {
        let usage = "rename [flags] OLD_NAME NEW_NAME"
        let flags = try FlagParser(usage: usage).parse(args)
        guard flags.positional.count == 2 else { throw SimExit.usage("accepts 2 arg(s), received \(flags.positional.count)", usage) }
        let (key, name) = (flags.positional[0], flags.positional[1])
        try store.withState { state in
            let now = now(state)
            guard let i = OrbSim.find(key, in: state) else { throw SimExit.notFound(key) }
            if let op = state.machines[i].busy(at: now) { throw SimExit.daemon("cannot rename: operations are in progress: \(op)") }
            if state.machines.contains(where: { $0.name == name }) { throw SimExit.daemon("machine '\"\(name)\"' already exists") }
            if let problem = OrbSim.nameProblem(name) { throw SimExit.daemon(problem) }
            state.machines[i].name = name  // the id stays the same
        }
        return 0
    }
}
