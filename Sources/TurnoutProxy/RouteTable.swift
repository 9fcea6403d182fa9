import TurnoutModel

/// The proxy's routing snapshot: an original destination (VIP:port) → the service port it names
/// and the endpoints a balancer may pick, built once from a ``ServiceTable``.
///
/// Immutable and `Sendable`: the control plane builds a new one per table and swaps it; workers
/// read it from any thread without locks. Balancer state is not in here: each worker keeps its
/// own, indexed by ``ServiceRoute/id``.
///
/// The endpoints of a route follow the kernel compilers exactly (`WeightedPick` in
/// TurnoutRules), so `direct` and `proxy` send a connection to the same set:
/// * only endpoints of the VIP's family: an IPv4 VIP picks among IPv4 endpoints, an IPv6 VIP
///   among IPv6 ones (``Service/servingEndpoints(of:)``);
/// * a drained endpoint (weight 0) is left out: it gets no new connection, and connections it
///   already has are not the route's business (they keep running until they close);
/// * the port is ``Endpoint/targetPort(for:)``: a named override, else the endpoint's `port`,
///   else the service port's `targetPort`;
/// * table order is kept. Weights are kept as written (90:10, not the kernel's gcd-reduced 9:1):
///   every balancer here depends only on their ratios.
///
/// Only TCP ports are routed: the proxy splices TCP streams, so a UDP or SCTP service port gets
/// no route and ``route(for:transport:)`` answers nil for it, the same as for an unknown address.
public struct RouteTable: Sendable, Hashable {
    /// Every route, indexed by ``ServiceRoute/id``: services by name, then ports in table order,
    /// then IPv4 before IPv6.
    public let routes: [ServiceRoute]
    private let routeByFrontend: [SocketAddress: Int]

    /// A table that routes nothing.
    public static let empty = RouteTable(ServiceTable(services: []))

    /// Builds the snapshot. If two services claim one VIP:port (the validator refuses such a
    /// table, but a hand-built ``ServiceTable`` can hold one), the first by name keeps it.
    public init(_ table: ServiceTable) {
        var routes: [ServiceRoute] = []
        var routeByFrontend: [SocketAddress: Int] = [:]
        for service in table.services {
            for port in service.ports where port.transport == .tcp {
                for family in IPFamily.allCases {
                    let vips = service.addresses.filter { $0.family == family }
                    guard !vips.isEmpty else { continue }
                    let endpoints = service.servingEndpoints(of: family).enumerated().map { index, endpoint in
                        RouteEndpoint(index: index,
                                      address: SocketAddress(address: endpoint.address, port: endpoint.targetPort(for: port)),
                                      weight: endpoint.weight, zone: endpoint.zone)
                    }
                    let route = ServiceRoute(id: routes.count, service: service.name, port: port, family: family,
                                             addresses: vips, endpoints: endpoints)
                    routes.append(route)
                    for vip in vips {
                        let frontend = SocketAddress(address: vip, port: port.port)
                        if routeByFrontend[frontend] == nil { routeByFrontend[frontend] = route.id }
                    }
                }
            }
        }
        self.routes = routes
        self.routeByFrontend = routeByFrontend
    }

    /// The route for a connection whose original destination is `destination`; nil when no
    /// service has that VIP and TCP port, or `transport` is not TCP. A route with no endpoint
    /// means a known service that cannot serve: reject the connection, never pass it through.
    public func route(for destination: SocketAddress, transport: TransportProtocol = .tcp) -> ServiceRoute? {
        guard transport == .tcp, let id = routeByFrontend[destination] else { return nil }
        return routes[id]
    }
}

/// One service port as seen from one IP family: its VIPs and the endpoints a connection to any
/// of them may go to.
///
/// Part of an immutable ``RouteTable``. Every VIP of the same family shares the route (and so a
/// worker's balancer for it), as the kernel's rules share one weighted pick.
public struct ServiceRoute: Sendable, Hashable, Identifiable {
    /// Dense, `0..<routes.count` in the table it came from: a worker indexes its balancers by it.
    /// Only meaningful within one snapshot.
    public let id: Int
    public let service: ServiceName
    /// The service port (name, number, target port); its transport is always TCP.
    public let port: ServicePort
    public let family: IPFamily
    /// The service's VIPs of ``family``, in table order.
    public let addresses: [IPAddress]
    /// The endpoints that take new connections, in table order; `endpoints[i].index == i`.
    /// Empty when the service has none of this family with a weight above 0.
    public let endpoints: [RouteEndpoint]

    /// `shop/api:http`, or `shop/api:tcp/80` for an unnamed port, as the compilers label it.
    public var label: String { "\(service):\(port.label)" }

    /// The endpoints' weights by index, as the balancers take them.
    public var weights: [UInt32] { endpoints.map(\.weight) }
}

/// One endpoint of a ``ServiceRoute``: where to connect (target port applied) and its weight.
public struct RouteEndpoint: Sendable, Hashable {
    /// The endpoint's position in ``ServiceRoute/endpoints``, which is what the balancers
    /// return. The same table always gives the same indices; across tables, match endpoints by
    /// ``address`` instead.
    public let index: Int
    public let address: SocketAddress
    /// Relative share of new connections; always above 0 (drained endpoints are not routed).
    public let weight: UInt32
    public let zone: String?
}
