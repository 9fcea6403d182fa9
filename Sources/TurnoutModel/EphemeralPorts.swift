/// The local ports the kernel may give an outgoing connection in one network namespace:
/// `net.ipv4.ip_local_port_range` less `net.ipv4.ip_local_reserved_ports` (both apply to IPv6
/// too).
///
/// Why a proxy cares: `SO_REUSEADDR` lets a listener bind over TIME_WAIT sockets of its own
/// old connections, not over a connection that took the port as its source while nothing
/// listened on it, as any outgoing connection may between a proxy's exit and its restart once
/// the range covers the proxy's ports (1024–65535 is a common tuning). The restart then fails
/// with EADDRINUSE until that connection and its TIME_WAIT are gone. Reserving the ports
/// prevents it. A pure value: the caller reads the two files (`/proc/sys/net/ipv4/…`).
public struct EphemeralPorts: Sendable, Equatable {
    /// `ip_local_port_range`: where the kernel picks source ports.
    public let range: PortRange
    /// `ip_local_reserved_ports`, sorted and merged (``PortRange/normalized(_:)``).
    public let reserved: [PortRange]

    /// `reserved` may be in any order and overlap; it is kept normalized.
    public init(range: PortRange, reserved: [PortRange] = []) {
        self.range = range
        self.reserved = PortRange.normalized(reserved)
    }

    /// Parses the two sysctls as `/proc/sys` shows them: `32768\t60999` and
    /// `15000-15090,16000` (empty when none is reserved). Throws naming the sysctl and the text.
    public init(rangeText: String, reservedText: String) throws(ValueError) {
        let bounds = rangeText.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
        guard bounds.count == 2, let lower = UInt16(bounds[0]), let upper = UInt16(bounds[1]),
              let range = PortRange(lower, upper) else {
            throw ValueError("net.ipv4.ip_local_port_range: '\(rangeText)' is not two ports, low then high")
        }
        var reserved: [PortRange] = []
        for item in reservedText.split(whereSeparator: { $0 == "," || $0 == "\n" || $0 == " " }) {
            // The kernel takes port 0 in the list (`0-1023`); it is never a source port anyway.
            if item == "0" { continue }
            let text = item.hasPrefix("0-") ? "1" + item.dropFirst() : String(item)
            do throws(ValueError) {
                reserved.append(try PortRange(parsing: text))
            } catch {
                throw ValueError("net.ipv4.ip_local_reserved_ports: \(error.description)")
            }
        }
        self.init(range: range, reserved: reserved)
    }

    /// Whether an outgoing connection may take `port` as its source port.
    public func mayTake(_ port: UInt16) -> Bool {
        range.contains(port) && !reserved.contains { $0.contains(port) }
    }

    /// The reserved list with `ports` added, as `sysctl -w net.ipv4.ip_local_reserved_ports=`
    /// takes it (the write replaces the whole list, so what was reserved stays in it).
    public func reservedText(adding ports: [UInt16]) -> String {
        PortRange.normalized(reserved + ports.compactMap { PortRange($0) }).map(\.description).joined(separator: ",")
    }
}
