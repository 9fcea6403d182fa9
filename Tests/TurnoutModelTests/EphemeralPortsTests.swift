import Testing
import TurnoutModel

@Suite("EphemeralPorts: the sysctls' text → which ports an outgoing connection may take")
struct EphemeralPortsTests {
    @Test("range and reserved text → mayTake", arguments: [
        ("32768\t60999\n", "\n", UInt16(15006), false),   // Debian's default range: below it
        ("32768\t60999\n", "\n", UInt16(40000), true),
        ("1024\t65535\n", "\n", UInt16(15006), true),     // widened: the proxy's ports inside
        ("1024\t65535\n", "15000-15090,16000\n", UInt16(15006), false),
        ("1024\t65535\n", "15000-15090,16000\n", UInt16(16000), false),
        ("1024\t65535\n", "15000-15090,16000\n", UInt16(15091), true),
        ("1024 65535", "", UInt16(65535), true),
        ("1024 65535", "", UInt16(1023), false),
        ("1024 65535", "0-1023,15000\n", UInt16(15000), false),   // the kernel takes port 0 in the list
        ("1024 65535", "0,15000\n", UInt16(15001), true),
    ])
    func mayTake(_ range: String, _ reserved: String, _ port: UInt16, _ expected: Bool) throws {
        let ports = try EphemeralPorts(rangeText: range, reservedText: reserved)
        #expect(ports.mayTake(port) == expected)
    }

    @Test("malformed text → an error naming the sysctl", arguments: [
        ("60999", "", "ip_local_port_range"),
        ("60999 32768", "", "ip_local_port_range"),
        ("1024 65536", "", "ip_local_port_range"),
        ("1024 65535", "15000-", "ip_local_reserved_ports"),
        ("1024 65535", "15000-15090,x", "ip_local_reserved_ports"),
    ])
    func malformed(_ range: String, _ reserved: String, _ named: String) {
        #expect { try EphemeralPorts(rangeText: range, reservedText: reserved) } throws: { error in
            "\(error)".contains(named)
        }
    }

    @Test("ports added to the reserved list → the old entries kept, joined and sorted as the kernel takes them", arguments: [
        ("", [UInt16(15001), 15006, 15000], "15000-15001,15006"),
        ("16000,15005-15010", [UInt16(15001), 15006], "15001,15005-15010,16000"),
    ])
    func reservedText(_ reserved: String, _ adding: [UInt16], _ expected: String) throws {
        let ports = try EphemeralPorts(rangeText: "1024 65535", reservedText: reserved)
        #expect(ports.reservedText(adding: adding) == expected)
    }
}
