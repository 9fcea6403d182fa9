import FoundationEssentials
import Glibc
import TurnoutModel

/// The ports of `ports` that an outgoing connection in this network namespace may take as its
/// source port (see ``EphemeralPorts``), with the sysctls that say so; nil when none may, or
/// when the sysctls cannot be read. `sysctls` is their directory (`/proc/sys/net/ipv4`).
func exposedListenerPorts(_ ports: [UInt16], sysctls: String = "/proc/sys/net/ipv4") -> (ephemeral: EphemeralPorts, exposed: [UInt16])? {
    guard let rangeText = try? String(contentsOfFile: sysctls + "/ip_local_port_range", encoding: .utf8),
          let reservedText = try? String(contentsOfFile: sysctls + "/ip_local_reserved_ports", encoding: .utf8),
          let ephemeral = try? EphemeralPorts(rangeText: rangeText, reservedText: reservedText) else { return nil }
    let exposed = Set(ports).filter(ephemeral.mayTake).sorted()
    return exposed.isEmpty ? nil : (ephemeral, exposed)
}

/// What an operator is told about exposed listener ports: which sysctl allows it, what goes
/// wrong, and the `sysctl -w` that reserves them (keeping what was reserved).
func exposedPortsAdvice(_ ephemeral: EphemeralPorts, _ exposed: [UInt16]) -> String {
    "\(exposed.count == 1 ? "port" : "ports") \(exposed.map { "\($0)" }.joined(separator: ", ")) \(exposed.count == 1 ? "is" : "are")"
        + " inside this network namespace's ephemeral range (net.ipv4.ip_local_port_range \(ephemeral.range)) and not reserved:"
        + " while no proxy listens (a restart), an outgoing connection may take one as its source port, and the proxy cannot bind"
        + " it until that connection and its TIME_WAIT end. Reserve \(exposed.count == 1 ? "it" : "them"): sysctl -w net.ipv4.ip_local_reserved_ports=\(ephemeral.reservedText(adding: exposed))"
}

/// What to add to "cannot start: bind(ADDR): Address already in use" when ADDR's port is one an
/// outgoing connection may have taken: ``exposedPortsAdvice`` for the proxy's exposed ports.
/// Empty for any other error, or when that port is outside the ephemeral range or reserved:
/// then no outgoing connection can hold it, and the error alone says what there is to say.
/// Inside the range another listener may hold it just as well, hence "may" in the advice.
func busyPortHint(_ error: any Error, listeners: [SocketAddress], sysctls: String = "/proc/sys/net/ipv4") -> String {
    guard let failure = error as? SystemCallError, failure.errno == EADDRINUSE,
          let busy = listeners.first(where: { failure.call == "bind(\($0))" }),
          let (ephemeral, exposed) = exposedListenerPorts(listeners.map(\.port), sysctls: sysctls),
          exposed.contains(busy.port) else { return "" }
    return "\n  " + exposedPortsAdvice(ephemeral, exposed)
}
