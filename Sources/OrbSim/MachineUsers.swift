import Foundation
import ReplPlatform

/// A machine's accounts, in its own `/etc`. OrbStack gives every machine a default user
/// (`create --user`, else the Mac user's name) with passwordless `sudo`; commands run as
/// that user unless `-u` names another account of the machine.
struct MachineUsers {
    /// The machine's root directory on the host.
    let root: String
    var etc: String { root + "/etc" }

    struct Account: Equatable {
        var name: String
        var uid: UInt32
        var gid: UInt32
        var home: String
    }

    /// The uid OrbStack gives the default user: the Mac user's (501 for the first user of a
    /// Mac). **uncertain**: when 501 is taken, the next free one from 1000 is used here.
    static let defaultUID: UInt32 = 501

    /// The machine's `/etc` is an overlay of the host's where the kernel allows one (a
    /// marker file says so): `etc` then holds only the machine's own changes, so a boot copies
    /// nothing. Else it is a whole copy, made on the first boot.
    var overlaid: Bool { FileManager.default.fileExists(atPath: root + "/.etc-overlay") }
    var work: String { root + "/.etc-work" }

    /// Makes the machine's `/etc` true for this boot: on the first boot an overlay of the
    /// host's (or a copy of it), then its hostname, its default user (with a home it owns) and
    /// that user's sudo rule. Runs in the machine's init before any mount, so `/etc` is still
    /// the host's.
    func prepare(user: String, hostname: String) throws {
        let fm = FileManager.default
        if !fm.fileExists(atPath: etc) {
            // 1,200 files copied per machine cost 40 ms on a fresh disk and up to 800 ms on
            // one with many recently deleted files: the overlay copies none. The empty layer
            // is made beside and moved in once the marker is written, so a boot killed midway
            // leaves no `/etc` that is neither an overlay nor a copy.
            let fresh = etc + ".new"
            try? fm.removeItem(atPath: fresh)
            try? fm.removeItem(atPath: work)
            try fm.createDirectory(atPath: fresh, withIntermediateDirectories: true)
            if MachineNamespace.canOverlay(lower: "/etc", upper: fresh, work: work, scratch: root + "/.etc-probe") {
                try Data().write(to: URL(fileURLWithPath: root + "/.etc-overlay"))
                guard rename(fresh, etc) == 0 else { throw SimStoreError("cannot place /etc: \(String(cString: strerror(errno)))") }
            } else {
                try fm.removeItem(atPath: fresh)
                try? fm.removeItem(atPath: work)
            }
        }
        if !fm.fileExists(atPath: etc) {
            let partial = etc + ".partial"
            try? fm.removeItem(atPath: partial)
            let copy = try waitForAsync {
                try await SystemProcessRunner.run(
                    "/bin/cp", ["-a", "/etc", partial], input: nil, timeout: 120,
                    environment: ["PATH": "/usr/bin:/bin"], limit: 1 << 16)
            }
            guard copy.status == 0 else { throw SimStoreError("cannot copy /etc: \(copy.stderrText)") }
            guard rename(partial, etc) == 0 else { throw SimStoreError("cannot place /etc: \(String(cString: strerror(errno)))") }
        }
        try write("hostname", hostname + "\n")
        var hosts = (read("hosts") ?? "127.0.0.1\tlocalhost\n").split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("127.0.1.1") }.joined(separator: "\n")
        if !hosts.hasSuffix("\n") { hosts += "\n" }
        try write("hosts", hosts + "127.0.1.1\t\(hostname)\n")
        guard user != "root" else { return }
        let account: Account
        if let existing = self.account(named: user) {
            account = existing
        } else {
            let taken = Set(accounts().map(\.uid)).union(Self.parse(read("group") ?? "").map(\.uid))  // a group line's third field is its gid
            let uid = taken.contains(Self.defaultUID) ? (1000...).first { !taken.contains(UInt32($0)) }.map(UInt32.init)! : Self.defaultUID
            account = Account(name: user, uid: uid, gid: uid, home: "/home/\(user)")
            let shell = FileManager.default.fileExists(atPath: "/bin/bash") ? "/bin/bash" : "/bin/sh"
            try append("passwd", "\(user):x:\(uid):\(uid):\(user):/home/\(user):\(shell)\n")
            try append("group", "\(user):x:\(uid):\n")
            if exists("shadow") { try append("shadow", "\(user):*:20000:0:99999:7:::\n") }
        }
        if exists("sudoers") {
            // The machine's own entry, whatever it made of it (a link to a host directory is
            // removed, never followed: this runs on the host's file system).
            let directory = etc + "/sudoers.d"
            if let kind = MachineUsers.kind(directory), kind != .typeDirectory { try fm.removeItem(atPath: directory) }
            if MachineUsers.kind(directory) == nil { try fm.createDirectory(atPath: directory, withIntermediateDirectories: false) }
            let rule = directory + "/90-orbstack-\(user)"
            try MachineUsers.writeRegular(rule, Data("\(user) ALL=(ALL) NOPASSWD:ALL\n".utf8))
            chmod(rule, 0o440)
        }
        // The home the machine's passwd names, under the machine's root: never through a `..`
        // or a link the machine made (this runs on the host's file system, as root).
        if let home = ownPath(account.home) {
            if MachineUsers.kind(home) == nil { try fm.createDirectory(atPath: home, withIntermediateDirectories: true) }
            if MachineUsers.kind(home) == .typeDirectory { lchown(home, account.uid, account.gid) }
        }
        if MachineUsers.kind(root + "/root") == .typeDirectory { chmod(root + "/root", 0o700) }
    }

    /// `path` (absolute, in the machine) as a host path under its root, when no part of it is
    /// `.`, `..` or a link; nil otherwise.
    func ownPath(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return nil }
        let parts = path.split(separator: "/")
        guard !parts.isEmpty, !parts.contains(where: { $0 == "." || $0 == ".." }) else { return nil }
        var current = root
        for part in parts {
            current += "/" + part
            switch MachineUsers.kind(current) {
            case nil: return root + "/" + parts.joined(separator: "/")  // the rest is to be made
            case .typeDirectory?: continue
            default: return nil
            }
        }
        return current
    }

    /// What is at `path`, without following a link: nil when nothing is. With `lstat(2)`, not
    /// `attributesOfItem`, which also looks up the owner's names, through an `/etc/group` that
    /// in a machine can be a pipe that never answers.
    static func kind(_ path: String) -> FileAttributeType? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        switch st.st_mode & mode_t(S_IFMT) {
        case mode_t(S_IFREG): return .typeRegular
        case mode_t(S_IFDIR): return .typeDirectory
        case mode_t(S_IFLNK): return .typeSymbolicLink
        case mode_t(S_IFCHR): return .typeCharacterSpecial
        default: return .typeUnknown
        }
    }

    /// Writes `data` as a regular file at `path`, replacing whatever else is there (a link, a
    /// pipe, a directory) rather than going through it.
    static func writeRegular(_ path: String, _ data: Data) throws {
        if let kind = kind(path), kind != .typeRegular { try FileManager.default.removeItem(atPath: path) }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SimStoreError("cannot write \(path): \(String(cString: strerror(errno)))") }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        try handle.write(contentsOf: data)
    }

    /// The account named `name` in the machine's `/etc/passwd`.
    func account(named name: String) -> Account? { accounts().first { $0.name == name } }

    func accounts() -> [Account] { Self.parse(read("passwd") ?? "") }

    /// The supplementary groups of `name` (from the machine's `/etc/group`), the primary one first.
    func groups(of account: Account) -> [UInt32] {
        var groups = [account.gid]
        for line in (read("group") ?? "").split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 4, let gid = UInt32(fields[2]) else { continue }
            if fields[3].split(separator: ",").contains(where: { $0 == account.name }), !groups.contains(gid) { groups.append(gid) }
        }
        return groups
    }

    /// Lines of `passwd` (or, for ids only, `group`): name, uid, gid, home.
    static func parse(_ text: String) -> [Account] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard f.count >= 3, let uid = UInt32(f[2]) else { return nil }
            let gid = f.count > 3 ? UInt32(f[3]) ?? uid : uid
            return Account(name: f[0], uid: uid, gid: gid, home: f.count > 5 ? f[5] : "/")
        }
    }

    /// Where the machine's `/etc/FILE` is read from: its own, else (an overlay's lower layer)
    /// the host's; nil when it has none, or deleted it (an overlay's whiteout, a device 0/0).
    /// Only a regular file is read: a link the machine made could name a host file (this also
    /// runs on the host), and a pipe would never answer.
    private func source(_ file: String) -> String? {
        let own = etc + "/" + file
        if let kind = MachineUsers.kind(own) { return kind == .typeRegular ? own : nil }
        guard overlaid, MachineUsers.kind("/etc/" + file) != nil, FileManager.default.fileExists(atPath: "/etc/" + file) else { return nil }
        return "/etc/" + file
    }

    private func exists(_ file: String) -> Bool { source(file) != nil }

    private func read(_ file: String) -> String? { source(file).flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } }

    /// Writes the machine's own `/etc/FILE`; one it had from the host keeps that file's mode
    /// and owner (as an overlay's copy-up does).
    private func write(_ file: String, _ text: String) throws {
        let own = etc + "/" + file
        let from = source(file)
        try MachineUsers.writeRegular(own, Data(text.utf8))
        if let from, from != own, let attributes = try? FileManager.default.attributesOfItem(atPath: from) {
            let kept = attributes.filter { [.posixPermissions, .ownerAccountID, .groupOwnerAccountID].contains($0.key) }
            try? FileManager.default.setAttributes(kept, ofItemAtPath: own)
        }
    }

    private func append(_ file: String, _ text: String) throws {
        var current = read(file) ?? ""
        if !current.isEmpty && !current.hasSuffix("\n") { current += "\n" }
        try write(file, current + text)
    }
}
