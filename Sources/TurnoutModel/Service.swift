/// A service: virtual addresses and ports in front of a weighted set of endpoints.
///
/// A value snapshot; validated by ``TableDecoder`` before any compiler sees it.
public struct Service: Hashable, Sendable {
    public var name: ServiceName
    public var addresses: [IPAddress]
    public var ports: [ServicePort]
    public var endpoints: [Endpoint]
    public var affinity: SessionAffinity?

    public init(name: ServiceName, addresses: [IPAddress], ports: [ServicePort], endpoints: [Endpoint] = [], affinity: SessionAffinity? = nil) {
        self.name = name
        self.addresses = addresses
        self.ports = ports
        self.endpoints = endpoints
        self.affinity = affinity
    }

    /// The endpoints of one family that receive traffic (weight above 0), in table order.
    public func servingEndpoints(of family: IPFamily) -> [Endpoint] {
        endpoints.filter { $0.address.family == family && $0.weight > 0 }
    }
}
