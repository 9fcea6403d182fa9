extension NetworkNamespace {
    /// Sets `settings` (`net.ipv4.ip_local_port_range=1024 65535`, …) inside the namespace with
    /// `sysctl -qw`; throws with sysctl's error when any is refused. Namespaced sysctls only: a
    /// global one would change the host.
    public func sysctl(_ settings: String...) throws {
        let result = try run("sysctl", ["-qw"] + settings, timeLimit: .seconds(10))
        guard result.status == 0 else { throw ServiceLabError("sysctl in \(name): \(result.standardError)") }
    }
}
