import TurnoutModel

/// A deterministic, realistic service table of `services` × `endpointsPerService`, built in memory.
///
/// * VIPs are distinct addresses of 10.96.0.0/12 (Kubernetes' default service range), scattered
///   by an odd multiplier modulo 2²⁰, so the compilers' sorts see unsorted input as in real tables.
/// * Endpoints are distinct addresses of 10.128.0.0/9, scattered the same way modulo 2²³.
/// * One TCP port per service (a rotation of common ports), endpoints spread over three zones.
/// * Weights: most endpoints weight 1; every 10th service is a 90/10 canary (stable endpoints
///   carry 90% of the weight, a fifth of the endpoints are the canary on `targetPort + 1`);
///   every 25th other service has one endpoint drained (weight 0).
public struct SyntheticTable: Sendable {
    public let services: Int
    public let endpointsPerService: Int
    public let table: ServiceTable

    public static let vipBase: UInt32 = 0x0A60_0000 // 10.96.0.0/12
    public static let vipBits: UInt32 = 20
    public static let endpointBase: UInt32 = 0x0A80_0000 // 10.128.0.0/9
    public static let endpointBits: UInt32 = 23
    /// Odd, so `i * multiplier mod 2^bits` is a permutation: distinct inputs, distinct addresses.
    public static let scatter: UInt32 = 0x9E37_79B1

    public static let ports: [(name: String, port: UInt16, targetPort: UInt16)] = [
        ("http", 80, 8080), ("https", 443, 8443), ("grpc", 9090, 9090),
        ("metrics", 9100, 9100), ("redis", 6379, 6379), ("postgres", 5432, 5432),
    ]
    public static let zones = ["a", "b", "c"]

    /// Largest service count whose VIPs and endpoints stay distinct within their ranges.
    public static func maximumServices(endpointsPerService: Int) -> Int {
        min((1 << Int(vipBits)) - 1, ((1 << Int(endpointBits)) - 1) / max(endpointsPerService, 1))
    }

    public init(services: Int, endpointsPerService: Int) {
        precondition(services <= SyntheticTable.maximumServices(endpointsPerService: endpointsPerService),
                     "the address ranges are too small for that many distinct VIPs and endpoints")
        self.services = services
        self.endpointsPerService = endpointsPerService
        var list: [Service] = []
        list.reserveCapacity(services)
        for index in 0..<services {
            list.append(SyntheticTable.service(index, endpoints: endpointsPerService))
        }
        table = ServiceTable(services: list)
    }

    public static func address(base: UInt32, bits: UInt32, ordinal: Int) -> IPAddress {
        // ordinal ≥ 1 and < 2^bits, so the offset is never 0 (the range's network address).
        let mask: UInt32 = (1 << bits) - 1
        return .v4(base | (UInt32(truncatingIfNeeded: ordinal) &* scatter) & mask)
    }

    public static func service(_ index: Int, endpoints count: Int) -> Service {
        let port = ports[index % ports.count]
        let servicePort = ServicePort(name: port.name, port: port.port, targetPort: port.targetPort)
        let isCanary = index % 10 == 0 && count >= 2
        let isDraining = !isCanary && index % 25 == 5 && count >= 2
        // 90/10 by total weight: c canary endpoints of weight s, s stable ones of weight 9c.
        let canaryCount = max(1, count / 5), stableCount = count - canaryCount

        var endpoints: [Endpoint] = []
        endpoints.reserveCapacity(count)
        for slot in 0..<count {
            let address = SyntheticTable.address(base: endpointBase, bits: endpointBits, ordinal: index * count + slot + 1)
            let zone = zones[(index + slot) % zones.count]
            if isCanary {
                let canary = slot >= stableCount
                endpoints.append(Endpoint(address: address,
                                          weight: UInt32(canary ? stableCount : 9 * canaryCount),
                                          port: canary ? port.targetPort + 1 : nil,
                                          zone: zone))
            } else {
                endpoints.append(Endpoint(address: address, weight: isDraining && slot == count - 1 ? 0 : 1, zone: zone))
            }
        }
        return Service(name: ServiceName(namespace: "team-\(index % 40)", name: "svc-\(index)")!,
                       addresses: [SyntheticTable.address(base: vipBase, bits: vipBits, ordinal: index + 1)],
                       ports: [servicePort],
                       endpoints: endpoints)
    }
}
