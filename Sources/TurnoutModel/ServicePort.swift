/// One port a service exposes on each of its addresses.
public struct ServicePort: Hashable, Sendable {
    /// The port's name; empty only when the service has a single port.
    public var name: String
    /// The port clients connect to on the service address.
    public var port: UInt16
    /// The endpoint port traffic is sent to unless an endpoint overrides it.
    public var targetPort: UInt16
    public var transport: TransportProtocol

    public init(name: String = "", port: UInt16, targetPort: UInt16? = nil, transport: TransportProtocol = .tcp) {
        self.name = name
        self.port = port
        self.targetPort = targetPort ?? port
        self.transport = transport
    }

    /// `http` or, for an unnamed port, the protocol and number (`tcp/80`).
    public var label: String { name.isEmpty ? "\(transport)/\(port)" : name }
}
