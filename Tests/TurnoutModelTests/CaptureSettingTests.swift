import Testing
import TurnoutModel

/// `turnout init`'s option text → `CaptureOptions`, and every kind of bad value → a message.
@Suite("Capture options from text")
struct CaptureSettingTests {
    static func options(_ pairs: [(CaptureSetting, String)]) throws(ValueError) -> CaptureOptions {
        var options = CaptureOptions()
        for (setting, text) in pairs { try setting.apply(text, to: &options) }
        return options
    }

    @Test("defaults are Istio's")
    func defaults() {
        let options = CaptureOptions()
        #expect(options.proxyPort == 15001 && options.inboundPort == 15006)
        #expect(options.proxyUIDs == [1337] && options.proxyGIDs == [1337])
        #expect(options.captureOutbound == .all && options.captureInboundPorts == .all)
        #expect(options.problems.isEmpty)
    }

    @Test("lists: sorted, overlaps and neighbours joined, blanks around commas ignored")
    func lists() throws {
        let options = try Self.options([(.excludeOutboundPorts, "9100, 80,9000-9099,81:85"), (.excludeOutboundCIDRs, "10.1.0.0/16,10.0.0.0/8, fd00::/8"),
                                        (.captureOutbound, "*"), (.captureInboundPorts, ""), (.proxyUID, "1337,1338,1337"), (.excludeInterfaces, "eth1,eth0")])
        #expect(options.excludeOutboundPorts.map(\.description) == ["80-85", "9000-9100"])
        #expect(options.excludeOutboundCIDRs.map(\.description) == ["10.0.0.0/8", "fd00::/8"])
        #expect(options.captureOutbound == .all)
        #expect(options.captureInboundPorts.isEmpty)
        #expect(options.proxyUIDs == [1337, 1338])
        #expect(options.excludeInterfaces == ["eth0", "eth1"])
    }

    @Test("bad value → a message naming it", arguments: [
        (CaptureSetting.proxyPort, "0", "'0' is not a port"),
        (.proxyPort, "70000", "'70000' is not a port"),
        (.excludeOutboundPorts, "80,,90", "has an empty entry"),
        (.excludeOutboundPorts, "90-80", "start is above its end"),
        (.excludeOutboundPorts, "1-2-3", "is not a port"),
        (.excludeOutboundPorts, "*", "'*' is not allowed here"),
        (.excludeOutboundCIDRs, "10.0.0.1/8", "has host bits set; did you mean 10.0.0.0/8"),
        (.excludeOutboundCIDRs, "10.0.0.0/33", "prefix length must be 0–32"),
        (.captureOutbound, "*,10.0.0.0/8", "cannot be combined"),
        (.captureOutbound, "example.com", "is not an IP address"),
        (.proxyUID, "istio", "is not a numeric user or group id"),
        (.excludeInterfaces, "a-very-long-interface-name", "is not an interface name"),
        (.ipv6, "maybe", "is not on, off or auto"),
    ])
    func badValue(setting: CaptureSetting, text: String, message: String) {
        var options = CaptureOptions()
        #expect { try setting.apply(text, to: &options) } throws: { ($0 as? ValueError)?.description.contains(message) == true }
        #expect(options == CaptureOptions())  // nothing half-applied
    }

    @Test("the same port for both directions → a problem")
    func samePorts() throws {
        let options = try Self.options([(.inboundPort, "15001")])
        #expect(options.problems.first?.contains("both 15001") == true)
    }

    @Test("every setting has a TURNOUT_ variable, and istio-iptables' letters are unique")
    func names() {
        #expect(CaptureSetting.proxyPort.environmentVariable == "TURNOUT_PROXY_PORT")
        #expect(CaptureSetting.excludeOutboundCIDRs.flag == "--exclude-outbound-cidrs")
        let letters = CaptureSetting.allCases.compactMap(\.istioShortFlag)
        #expect(Set(letters).count == letters.count && letters.count == 11)
    }
}
