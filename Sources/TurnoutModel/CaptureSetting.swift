/// One option of `turnout init`: its long flag, istio-iptables' short flag, its environment
/// variable, and how its text sets `CaptureOptions`.
///
/// The CLI declares one flag per case; values come from the flag, else from the environment
/// variable, else the default. Lists are comma-separated; `*` means everything where allowed.
public enum CaptureSetting: String, CaseIterable, Sendable {
    case proxyPort = "proxy-port"
    case inboundPort = "inbound-port"
    case proxyUID = "proxy-uid"
    case proxyGID = "proxy-gid"
    case captureOutbound = "capture-outbound"
    case excludeOutboundCIDRs = "exclude-outbound-cidrs"
    case captureOutboundPorts = "capture-outbound-ports"
    case excludeOutboundPorts = "exclude-outbound-ports"
    case captureInboundPorts = "capture-inbound-ports"
    case excludeInboundPorts = "exclude-inbound-ports"
    case excludeInterfaces = "exclude-interfaces"
    case ipv6 = "ipv6"

    /// `--proxy-port`.
    public var flag: String { "--\(rawValue)" }

    /// `TURNOUT_PROXY_PORT`.
    public var environmentVariable: String { "TURNOUT_" + String(rawValue.uppercased().map { $0 == "-" ? "_" : $0 }) }

    /// istio-iptables' one-letter flag with the same meaning, so an injection template can
    /// call Turnout unchanged.
    public var istioShortFlag: Character? {
        switch self {
        case .proxyPort: "p"
        case .inboundPort: "z"
        case .proxyUID: "u"
        case .proxyGID: "g"
        case .captureOutbound: "i"
        case .excludeOutboundCIDRs: "x"
        case .captureInboundPorts: "b"
        case .excludeInboundPorts: "d"
        case .excludeOutboundPorts: "o"
        case .captureOutboundPorts: "q"
        case .excludeInterfaces: "c"
        case .ipv6: nil
        }
    }

    /// Sets this option of `options` from `text`; throws what is wrong with it (the caller
    /// says where the text came from).
    public func apply(_ text: String, to options: inout CaptureOptions) throws(ValueError) {
        switch self {
        case .proxyPort: options.proxyPort = try Self.port(text)
        case .inboundPort: options.inboundPort = try Self.port(text)
        case .proxyUID: options.proxyUIDs = try Self.ids(text)
        case .proxyGID: options.proxyGIDs = try Self.ids(text)
        case .captureOutbound: options.captureOutbound = try Self.selection(text) { text throws(ValueError) in try IPPrefix(parsing: text) }
        case .excludeOutboundCIDRs: options.excludeOutboundCIDRs = try Self.list(text) { text throws(ValueError) in try IPPrefix(parsing: text) }
        case .captureOutboundPorts: options.captureOutboundPorts = try Self.list(text) { text throws(ValueError) in try PortRange(parsing: text) }
        case .excludeOutboundPorts: options.excludeOutboundPorts = try Self.list(text) { text throws(ValueError) in try PortRange(parsing: text) }
        case .captureInboundPorts: options.captureInboundPorts = try Self.selection(text) { text throws(ValueError) in try PortRange(parsing: text) }
        case .excludeInboundPorts: options.excludeInboundPorts = try Self.list(text) { text throws(ValueError) in try PortRange(parsing: text) }
        case .excludeInterfaces: options.excludeInterfaces = try Self.list(text, Self.interface)
        case .ipv6:
            // `auto` is resolved by the caller, which can look at the host.
            switch text.lowercased() {
            case "on", "true", "1": options.ipv6 = true
            case "off", "false", "0": options.ipv6 = false
            default: throw ValueError("'\(text)' is not on, off or auto")
            }
        }
    }

    static func port(_ text: String) throws(ValueError) -> UInt16 {
        guard let port = UInt16(text.trimmedWhitespace), port >= 1 else { throw ValueError("'\(text)' is not a port (1–65535)") }
        return port
    }

    static func ids(_ text: String) throws(ValueError) -> [UInt32] {
        try list(text) { item throws(ValueError) in
            // 4294967295 is (uid_t)-1, "no user", which no socket has.
            guard let id = UInt32(item), id != .max else { throw ValueError("'\(item)' is not a numeric user or group id") }
            return id
        }.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
    }

    static func interface(_ text: String) throws(ValueError) -> String {
        // IFNAMSIZ is 16 with the terminating NUL; the kernel refuses '/' and whitespace.
        guard !text.isEmpty, text.utf8.count <= 15, !text.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace || $0 == "*" }) else {
            throw ValueError("'\(text)' is not an interface name (1–15 characters, no '/', ':', '*' or spaces)")
        }
        return text
    }

    static func list<Element>(_ text: String, _ parse: (String) throws(ValueError) -> Element) throws(ValueError) -> [Element] {
        var items: [Element] = []
        for raw in text.split(separator: ",", omittingEmptySubsequences: false) {
            let item = String(raw).trimmedWhitespace
            if item.isEmpty {
                if text.trimmedWhitespace.isEmpty { break }  // an empty value is an empty list
                throw ValueError("'\(text)' has an empty entry")
            }
            if item == "*" { throw ValueError("'*' is not allowed here (it is only for --capture-outbound and --capture-inbound-ports)") }
            items.append(try parse(item))
        }
        return items
    }

    static func selection<Element>(_ text: String, _ parse: (String) throws(ValueError) -> Element) throws(ValueError) -> CaptureOptions.Selection<Element> {
        if text.trimmedWhitespace == "*" { return .all }
        if text.split(separator: ",").contains(where: { String($0).trimmedWhitespace == "*" }) {
            throw ValueError("'\(text)': '*' means everything and cannot be combined with other entries")
        }
        return .only(try list(text, parse))
    }
}
