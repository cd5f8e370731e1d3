import Foundation

/// The emulator's DHCP-like address pool: the upper /24 of `network.subnet4` from .10 on
/// (238 addresses by default). A running machine holds its lease; a graceful stop gives it
/// back at once; a machine killed while running (deleted without a stop) leaves it held
/// until it expires, 24 h later: how OrbStack's pool runs dry under fast create/delete cycles.
struct AddressPool: Equatable {
    var subnet4: String
    var size: Int
    var leaseSeconds: Double
    var leases: [String: SimLease]

    /// Every address of the pool, in the order they are handed out.
    var addresses: [String] {
        let base = subnet4.split(separator: "/")[0].split(separator: ".").compactMap { Int($0) }
        guard base.count == 4 else { return [] }
        let upper = "\(base[0]).\(base[1]).\(base[2] + 1)"
        return (0..<min(size, 238)).map { "\(upper).\(10 + $0)" }
    }

    /// Leases an address to a machine: its own previous one if still leased to it, else
    /// the first free or expired one; nil when the pool is exhausted.
    mutating func allocate(to machineID: String, now: Date) -> String? {
        let addresses = addresses
        if let mine = addresses.first(where: { leases[$0]?.machineID == machineID }) {
            leases[mine] = SimLease(machineID: machineID, expiresAt: nil)
            return mine
        }
        for ip in addresses {
            if let lease = leases[ip] {
                guard let expires = lease.expiresAt, expires <= now else { continue }
            }
            leases[ip] = SimLease(machineID: machineID, expiresAt: nil)
            return ip
        }
        return nil
    }

    /// A graceful stop gives the address back at once.
    mutating func release(machineID: String) {
        for (ip, lease) in leases where lease.machineID == machineID { leases[ip] = nil }
    }

    /// A machine killed while running keeps its lease until it expires.
    mutating func abandon(machineID: String, now: Date) {
        for (ip, lease) in leases where lease.machineID == machineID {
            leases[ip] = SimLease(machineID: machineID, expiresAt: now.addingTimeInterval(leaseSeconds))
        }
    }

    /// A subnet pivot drops every lease not held by a running machine (the recovery
    /// `scaffold/scripts/orbstack-reset-networking.sh` relies on).
    mutating func pivot(to subnet: String, keeping running: Set<String>) {
        leases = leases.filter { $0.value.expiresAt == nil && running.contains($0.value.machineID) }
        subnet4 = subnet
    }
}

extension SimState {
    /// The address pool, as one value over the state's stored fields.
    var pool: AddressPool {
        get { AddressPool(subnet4: subnet4, size: poolSize, leaseSeconds: leaseSeconds, leases: leases) }
        set {
            subnet4 = newValue.subnet4
            poolSize = newValue.size
            leaseSeconds = newValue.leaseSeconds
            leases = newValue.leases
        }
    }
}
