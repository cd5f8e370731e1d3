/// OrbStack's own SSH server for its Linux machines: one server on the Mac, `localhost` port
/// 32222, that picks the machine from the user name (`MACHINE` or `USER@MACHINE`) and takes
/// OrbStack's key `~/.orbstack/ssh/id_ed25519`. Sources: OrbStack's CLI help for `orb ssh`
/// (`scon/cmd/scli/cmd/ssh.go` L32–46: "Host: localhost / Port: 32222 / User: default /
/// Private key: ~/.orbstack/ssh/id_ed25519 … ssh -p 32222 -i ~/.orbstack/ssh/id_ed25519
/// default@localhost"), the user parsing in `scon/ssh.go` L159–206 (`user@machine`, or a
/// machine with its default user), the port in `vmgr/conf/ports/ports.go` L7, and the config
/// OrbStack writes, `vmgr/ssh_public.go` L36–56 (`IdentitiesOnly yes`, `UserKnownHostsFile
/// ~/.orbstack/ssh/known_hosts`), in OrbStack's published source snapshot (github.com/orbstack/
/// swift-nio, branch cheru/danny/next, 82202d2); the maintainer in orbstack issue #780: "a
/// single SSH server for all machines on macOS port 32222".
public enum OrbStackSSH {
    public static let host = "localhost"
    public static let port = 32222
    public static let key = "~/.orbstack/ssh/id_ed25519"
    public static let knownHosts = "~/.orbstack/ssh/known_hosts"

    /// `MACHINE`, or `USER@MACHINE`: the user name OrbStack's server reads.
    public static func login(machine: String, user: String?) -> String {
        user.map { "\($0)@\(machine)" } ?? machine
    }

    /// The arguments of `ssh` that reach `machine` (before any of the caller's own).
    public static func arguments(machine: String, user: String?, home: String) -> [String] {
        func expand(_ path: String) -> String { path.hasPrefix("~/") ? home + path.dropFirst(1) : path }
        return [
            "-p", String(port), "-i", expand(key), "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=\(expand(knownHosts))",
            "\(login(machine: machine, user: user))@\(host)",
        ]
    }

    /// One `Host` entry of an ssh config.
    public static func configEntry(alias: String, machine: String, user: String?) -> String {
        """
        Host \(alias)
          HostName \(host)
          Port \(port)
          User \(login(machine: machine, user: user))
          IdentityFile \(key)
          IdentitiesOnly yes
          UserKnownHostsFile \(knownHosts)

        """
    }
}
