import Foundation
import ReplPlatform

/// A machine's init: the process that holds its world, as PID 1 of the machine's own PID
/// namespace (with its own `/proc`), in its own mount and UTS namespaces. It is started by
/// the first command of a boot, and ended by `stop`, `delete` and `admin reset`; when it
/// ends, the kernel ends every process of the machine. It also ends by itself once the
/// machine's directory is gone (a deleted emulator home), so nothing a machine started
/// outlives the emulator's world.
///
/// The machine's world: its own `/tmp`, `/etc` (a copy of the host's, with the machine's
/// default user, hostname and passwordless sudo), `/root`, `/home`, `/opt`, `/srv`,
/// `/var/lib/repl`, `/var/lib/cloud`, `/var/log` and `/var/tmp`; a private `/run`; `/mnt/mac`
/// (the host's `/`, as OrbStack shows the Mac's) unless the machine is isolated, in which case
/// the host's own top-level directories are hidden too; and shims over the programs that
/// would reach the host (`poweroff`, `reboot`, `systemctl`, …).
struct MachineBoot {
    let sim: OrbSim

    /// Where an init records itself (machines/KEY/init.json).
    struct Record: Codable, Equatable {
        /// The init's process id on the host.
        var pid: Int32
    }

    /// Where the host paths the emulator needs are bound inside a machine (its private `/run`).
    static let hostView = "/run/orbsim-host"
    /// Inside a machine, the file naming it (the shims read it; the environment may be gone).
    static let machineMark = "/run/orbsim-machine"
    /// `SWIFT_BACKTRACE` for the emulator's processes in a machine (its init, its shims): the
    /// runtime's backtracer is a program at a path inside the machine, which its root can replace.
    static let noBacktrace = "enable=no"
    /// The init's descriptor of the emulator's home, opened on the host by its launch: the
    /// init writes the state through it (a `poweroff` inside), and nothing in the machine can
    /// reach it (the home is bound nowhere in the machine; `/proc/1/fd` is closed to its root).
    static let homeDescriptor: Int32 = 9

    /// What the machine's shims know of it, written by its init (`machineMark`).
    struct Mark: Codable {
        var key: String
        var ip4: String?
    }
    /// The machine's own directories, relative to its root.
    static let directories = ["tmp", "etc", "root", "home", "opt", "srv", "var/lib/repl", "var/lib/cloud", "var/log", "var/tmp"]

    func directory(_ key: String) -> URL { sim.store.machinesDirectory.appendingPathComponent(key) }
    func recordURL(_ key: String) -> URL { directory(key).appendingPathComponent("init.json") }

    /// The machine's boot lock: held while it boots or its delete ends. Outside its directory,
    /// which the machine sees: a lock its root held would hang every boot and delete of it.
    func bootLock(_ key: String) throws -> FileLock {
        let locks = sim.store.home.appendingPathComponent("locks")
        try FileManager.default.createDirectory(at: locks, withIntermediateDirectories: true)
        return try FileLock(locks.appendingPathComponent("boot-" + key).path)
    }

    /// The running init of a machine, if it has one.
    func running(_ key: String) -> Record? {
        guard let data = FileManager.default.contents(atPath: recordURL(key).path),
            let record = try? JSONDecoder().decode(Record.self, from: data),
            MachineNamespace.isRunning(record.pid, with: ["__init", key]), MachineNamespace.isMachineInit(record.pid)
        else { return nil }
        return record
    }

    /// The host paths a machine's init binds read-only under the host view: the emulator's
    /// binary and the Swift runtime it loads (a toolchain under `/opt` would be covered), and
    /// the shims.
    var readOnlyHostPaths: [String] {
        [
            URL(fileURLWithPath: sim.executable).deletingLastPathComponent().path, Platform.swiftRuntimeDirectory(),
            sim.store.shimsDirectory.path,
        ].compactMap { $0 }
    }

    /// The init of a running machine: the one it has, else a new one (a boot).
    func ensureInit(_ machine: SimMachine) throws -> Record {
        let key = machine.key
        try FileManager.default.createDirectory(at: directory(key), withIntermediateDirectories: true)
        let lock = try bootLock(key)
        defer { lock.release() }
        if let record = running(key) { return record }
        // The machine may have been stopped or deleted since the caller looked.
        let state = try sim.store.read()
        guard let current = state.machines.first(where: { $0.key == key }) else { throw SimExit.notFound(machine.name) }
        guard ["running", "starting"].contains(current.state(at: sim.now(state))) else {
            throw SimExit.daemon("machine '\(machine.name)' is not running")  // text uncertain
        }
        try? FileManager.default.removeItem(at: recordURL(key))
        try sim.makeMachineRoot(key, user: machine.defaultUsername)
        try MachineShims(sim: sim).install()
        let log = directory(key).appendingPathComponent("init.log").path
        let arguments =
            [
                "-c", "exec \"$0\" \"$@\" </dev/null >>\"$ORBSIM_INIT_LOG\" 2>&1 \(MachineBoot.homeDescriptor)<\"$ORBSIM_HOME\"",
                MachineNamespace.detachProgram,
            ]
            + MachineNamespace.detachArguments
            // A shell on the host waits for the machine's namespace to end, then tells the
            // emulator how (a `reboot(2)` in the machine kills its init from the kernel).
            + ["/bin/sh", "-c", "k=$1; shift; \"$@\"; exec \"$0\" __halted \"$k\" \"$?\"", sim.executable, key]
            + [MachineNamespace.bootProgram] + MachineNamespace.bootArguments(isolated: machine.isolated)
            + [sim.executable, "__init", key, machine.name, machine.defaultUsername, machine.isolated ? "isolated" : "shared"]
        var env = sim.environment
        env["ORBSIM_INIT_LOG"] = log
        env["ORBSIM_HOME"] = sim.store.home.path
        // The init has every capability: nothing of the machine's may run as its child. Swift's
        // runtime would start its backtracer on a crash signal, by a path the machine can plant.
        env["SWIFT_BACKTRACE"] = MachineBoot.noBacktrace
        let environment = env
        let started = try waitForAsync {
            try await SystemProcessRunner.run("/bin/sh", arguments, input: nil, timeout: 30, environment: environment, limit: 1 << 16)
        }
        guard started.status == 0 else { throw SimExit.daemon("start '\(machine.name)': boot: \(started.stderrText)") }
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let record = running(key) { return record }
            // Stopped or deleted meanwhile (a racing stop): say so now, not after the wait.
            if let state = try? sim.store.read(),
                state.machines.first(where: { $0.key == key }).map({ ["running", "starting"].contains($0.state(at: sim.now(state))) }) != true
            {
                throw SimExit.daemon("machine '\(machine.name)' stopped while starting")  // text uncertain
            }
            usleep(5_000)
        }
        // The line that says why: the init's own complaint, or a crash's first line.
        let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        let why =
            lines.last { $0.contains("cannot boot") || $0.contains("Fatal error") || $0.contains("crashed") }
            ?? lines.last ?? "no output"
        throw SimExit.daemon("start '\(machine.name)': the machine's init did not start: \(why) (log: \(log))")
    }

    /// Ends every process of a machine: SIGTERM, `grace` seconds, then the init is killed
    /// and the kernel kills the rest. From inside the machine (a `poweroff` shim) this does
    /// not return: the caller is one of the processes that end.
    func halt(_ key: String, grace: TimeInterval) {
        // A cloud-init still running is ended with the machine, and says so.
        CloudInit(sim: sim).interrupt(key)
        guard let record = running(key) else {
            try? FileManager.default.removeItem(at: recordURL(key))
            return
        }
        terminate(MachineNamespace.processes(ofInit: record.pid), grace: grace)
        kill(record.pid, SIGKILL)
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline, MachineNamespace.isRunning(record.pid, with: ["__init", key]) { usleep(5_000) }
        try? FileManager.default.removeItem(at: recordURL(key))
    }

    func terminate(_ pids: [Int32], grace: TimeInterval) {
        guard !pids.isEmpty, grace > 0 else { return }
        for pid in pids { kill(pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(grace)
        var left = pids
        while Date() < deadline {
            left = left.filter { kill($0, 0) == 0 && !Platform.isZombie($0) }
            if left.isEmpty { return }
            usleep(20_000)
        }
    }

    /// The processes of a machine, seen from the host (its init left out): for tests.
    func processes(_ key: String) -> [Int32] {
        guard let record = running(key) else { return [] }
        return MachineNamespace.processes(ofInit: record.pid).filter { !Platform.isZombie($0) }
    }

    // MARK: - The init (`orbctl-sim __init KEY NAME USER isolated|shared`)

    /// Runs as PID 1 of the machine's fresh namespaces: makes the machine's world, records
    /// itself, then reaps orphans until it is told to end or its machine is gone. A SIGTERM
    /// (the machine's `poweroff`) stops the machine the way `orbctl stop` does.
    static func initMain(_ args: [String], sim: OrbSim) -> Int32 {
        MachineNamespace.holdPoweroff()
        // Nothing the init might ever start inherits the home.
        _ = fcntl(homeDescriptor, F_SETFD, FD_CLOEXEC)
        guard args.count == 4 else {
            FileHandle.standardError.write(Data("orbctl-sim: bad __init arguments\n".utf8))
            return 125
        }
        let (key, name, user, isolated) = (args[0], args[1], args[2], args[3] == "isolated")
        let boot = MachineBoot(sim: sim)
        let machineDirectory = boot.directory(key).path
        // The emulator's home as the host sees it, through the descriptor the launch opened there.
        let host = OrbSim(
            home: URL(fileURLWithPath: MachineNamespace.path(ofDescriptor: homeDescriptor)), executable: sim.executable,
            environment: sim.environment)
        let id: String
        do {
            guard isHome(homeDescriptor, of: sim) else { throw SimStoreError("descriptor \(homeDescriptor) is not the emulator's home") }
            guard let machine = try host.store.read().machines.first(where: { $0.key == key }) else { throw SimExit.notFound(name) }
            id = machine.id
            try MachineUsers(root: sim.machineRoot(key).path).prepare(user: user, hostname: name)
            var layout = MachineNamespace.Layout(
                hostView: hostView, readOnlyHostPaths: boot.readOnlyHostPaths, ownHostPath: machineDirectory,
                concealed: [sim.store.home.path], directories: directories,
                machineRoot: sim.machineRoot(key).path, hostname: name, isolated: isolated,
                guarded: MachineShims.guarded, shims: sim.store.shimsDirectory.path)
            if MachineUsers(root: sim.machineRoot(key).path).overlaid { layout.overlaid = ["etc"] }
            let pid = try MachineNamespace.setUp(layout)
            try JSONEncoder().encode(Mark(key: key, ip4: machine.ip4)).write(to: URL(fileURLWithPath: machineMark))
            let record = try JSONEncoder().encode(Record(pid: pid))
            let inView = URL(fileURLWithPath: hostView + machineDirectory)
            try record.write(to: inView.appendingPathComponent("init.json.tmp"))
            guard rename(inView.appendingPathComponent("init.json.tmp").path, inView.appendingPathComponent("init.json").path) == 0 else {
                throw SimStoreError("cannot record the init: \(String(cString: strerror(errno)))")
            }
            // The record is the host's to trust: nothing inside may rewrite it.
            try MachineNamespace.makeReadOnly(inView.path)
        } catch {
            FileHandle.standardError.write(Data("orbctl-sim: machine \(name) cannot boot: \(error)\n".utf8))
            return 1
        }
        // Its machine is gone (deleted, or the emulator's home removed) or stopped (by a stop
        // whose caller was killed midway): the machine's world ends with this process.
        let watched = host.store.machinesDirectory.appendingPathComponent(key).path
        var tick = 0
        while FileManager.default.fileExists(atPath: watched) {
            var status: Int32 = 0
            while waitpid(-1, &status, WNOHANG) > 0 {}
            if tick % 5 == 0, let current = try? host.store.read() {
                guard let m = current.machines.first(where: { $0.key == key }) else { break }
                let phase = m.lifecycle.state(at: Date().addingTimeInterval(current.clockOffset))
                if phase == .stopped || phase == .deleting { break }
            }
            tick += 1
            if MachineNamespace.awaitPoweroff(milliseconds: 200) {
                host.powerOff(id: id)
                break
            }
        }
        return 0
    }

    /// `orbctl-sim __halted KEY STATUS`, on the host once a machine's namespace has ended with
    /// `STATUS` (its `unshare`'s): a `reboot(2)` in the machine makes the kernel kill its init,
    /// which ends as if by SIGINT (power off, halt) or SIGHUP (restart), and nothing recorded
    /// the stop. The machine is stopped then, as by the `reboot` shim, unless it was stopped,
    /// deleted or booted again meanwhile.
    static func haltedMain(_ args: [String], sim: OrbSim) -> Int32 {
        guard args.count == 2, let status = Int32(args[1]), [128 + SIGINT, 128 + SIGHUP].contains(status) else { return 0 }
        let key = args[0], boot = MachineBoot(sim: sim)
        guard let lock = try? boot.bootLock(key) else { return 1 }
        defer { lock.release() }
        guard boot.running(key) == nil, let state = try? sim.store.read(),
            let machine = state.machines.first(where: { $0.key == key }), machine.state(at: sim.now(state)) == "running"
        else { return 0 }
        // Its processes ended with its namespace: only the record is left to change.
        _ = sim.recordPowerOff(id: machine.id)
        return 0
    }

    /// Whether descriptor `fd` is the emulator's home directory (the init's launch opened it).
    static func isHome(_ fd: Int32, of sim: OrbSim) -> Bool {
        var given = stat(), home = stat()
        guard fstat(fd, &given) == 0, stat(sim.store.home.path, &home) == 0 else { return false }
        return (given.st_mode & S_IFMT) == S_IFDIR && given.st_dev == home.st_dev && given.st_ino == home.st_ino
    }
}

extension OrbSim {
    /// A stop the machine made itself, recorded: its state (as `orbctl stop` records it) and a
    /// cloud-init still running, interrupted. What is left to do (its processes) is returned.
    func recordPowerOff(id: String) -> [MachineLifecycle.Action] {
        let actions = (try? recordStop(id: id)) ?? []
        CloudInit(sim: self).interrupt(String(id.dropFirst(10)))
        return actions
    }

    /// In a machine's init, on its `poweroff`: the machine stops as `orbctl stop` stops it (its
    /// state first, then its processes, given the stop's grace); the init then ends, and the
    /// kernel ends what is left.
    func powerOff(id: String) {
        // Only ever inside a machine: there the processes "inside" are the machine's.
        guard getpid() == 1 else { return }
        for case .endProcesses(let grace) in recordPowerOff(id: id) {
            MachineBoot(sim: self).terminate(MachineNamespace.processesInside(), grace: grace)
        }
    }
}

/// An exclusive `flock(2)` on a file, held until released.
struct FileLock {
    let fd: Int32

    init(_ path: String) throws {
        fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SimStoreError("cannot open \(path): \(String(cString: strerror(errno)))") }
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR {
                close(fd)
                throw SimStoreError("cannot lock \(path): \(String(cString: strerror(errno)))")
            }
        }
    }

    func release() {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
