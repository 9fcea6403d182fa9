/// One backend of a service.
///
/// The port traffic reaches it on is resolved per service port by ``targetPort(for:)``: a named
/// override (`ports: {http: 8081}`), else the single-port override (`port: 8081`), else the
/// service port's `targetPort`.
public struct Endpoint: Hashable, Sendable {
    public var address: IPAddress
    /// Relative share of new connections; 0 keeps the endpoint known but sends it nothing.
    public var weight: UInt32
    /// Overrides `targetPort` for every port; the validator allows it only on single-port services.
    public var port: UInt16?
    /// Overrides `targetPort` per service port name.
    public var namedPorts: [String: UInt16]
    public var zone: String?

    public init(address: IPAddress, weight: UInt32 = 1, port: UInt16? = nil, namedPorts: [String: UInt16] = [:], zone: String? = nil) {
        self.address = address
        self.weight = weight
        self.port = port
        self.namedPorts = namedPorts
        self.zone = zone
    }

    /// The port on this endpoint that traffic for `servicePort` goes to.
    public func targetPort(for servicePort: ServicePort) -> UInt16 {
        namedPorts[servicePort.name] ?? port ?? servicePort.targetPort
    }
}
