import Testing
import TurnoutModel

@Suite("Addresses")
struct AddressTests {
    @Test("text → canonical form", arguments: [
        ("10.0.0.1", "10.0.0.1"), ("FD00:0:0::1", "fd00::1"), ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),
    ])
    func canonical(_ input: String, _ expected: String) throws {
        #expect(try #require(IPAddress(input)).description == expected)
    }

    @Test("not addresses → nil", arguments: ["10.0.0", "010.0.0.1", "10.0.0.256", "fd00:::1", "", "host"])
    func invalid(_ input: String) {
        #expect(IPAddress(input) == nil)
    }

    @Test("socket addresses: v4, bracketed v6, and rejects", arguments: [
        ("10.96.0.1:80", "10.96.0.1:80"), ("[fd00::1]:53", "[fd00::1]:53"), ("fd00::1:53", nil), ("10.0.0.1:0", nil), ("10.0.0.1", nil),
    ] as [(String, String?)])
    func sockets(_ input: String, _ expected: String?) {
        #expect(SocketAddress(input)?.description == expected)
    }

    @Test("address + n: within a block, across an IPv4 octet, carrying from the low to the high IPv6 half, wrapping", arguments: [
        ("10.0.0.0", 1, "10.0.0.1"), ("10.0.0.255", 1, "10.0.1.0"), ("::ffff:ffff:ffff:ffff", 1, "0:0:0:1::"),
        ("255.255.255.255", 1, "0.0.0.0"), ("2001:db8::", 1, "2001:db8::1"),
    ] as [(String, UInt32, String)])
    func adding(_ start: String, _ count: UInt32, _ expected: String) throws {
        #expect(try #require(IPAddress(start)).adding(count).description == expected)
    }
}
