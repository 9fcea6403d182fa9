import TurnoutBenchmarkSupport
import TurnoutModel
import TurnoutRules

/// The tables this benchmark applies. All are built from ``SyntheticTable``'s services, so the
/// full-apply rows measure exactly the tables `scripts/bench/compile` compiles.
enum BenchTables {
    /// N services × E endpoints, as the compile benchmark builds them.
    static func full(services: Int, endpoints: Int) -> ServiceTable {
        SyntheticTable(services: services, endpointsPerService: endpoints).table
    }

    /// gcd-reduced total of the serving weights: the `numgen random mod N` modulus of a service.
    static func reducedTotal(_ weights: [UInt32]) -> UInt32 {
        let serving = weights.filter { $0 > 0 }
        func gcd(_ a: UInt32, _ b: UInt32) -> UInt32 { b == 0 ? a : gcd(b, a % b) }
        let divisor = serving.reduce(0, gcd)
        return divisor == 0 ? 0 : serving.reduce(0, +) / divisor
    }
}

/// One endpoint's weight changes on one service of an otherwise unchanged table.
///
/// The changed service is the synthetic table's `svc-1` (a plain weight-1 service) given the
/// weights 2, 2, …, 2, 1: its last endpoint is a newcomer warming up. Changing only that one
/// weight keeps the gcd-reduced total (the pick modulus) exactly when the new weight makes the
/// gcd 2 again: 2·E (for 10 endpoints: 1 → 20, total 19 before and after, only the service's
/// pick elements move: map elements). 1 → 2 (all equal) changes the modulus: 19 → E.
struct ChangeScenario {
    enum Variant: String, CaseIterable {
        /// Same modulus: only elements of `endpoint-picks4-mod19` change.
        case sameModulus = "same modulus"
        /// New modulus: the service's `service-ips4` verdict and its picks change, and a pick
        /// chain no other service uses is deleted.
        case newModulus = "new modulus"
    }

    let services: Int
    let endpoints: Int
    let serviceName: ServiceName
    let base: ServiceTable
    let changed: [Variant: ServiceTable]
    /// `team-1/svc-1: last endpoint weight 1 → 20 (modulus 19 → 19)`.
    let descriptions: [Variant: String]

    init(services: Int, endpoints: Int) {
        precondition(services >= 2 && endpoints >= 2, "the changed service is svc-1 and needs two endpoints")
        self.services = services
        self.endpoints = endpoints
        var list = (0..<services).map { SyntheticTable.service($0, endpoints: endpoints) }
        let index = 1
        let last = endpoints - 1
        for slot in 0..<endpoints { list[index].endpoints[slot].weight = slot == last ? 1 : 2 }
        base = ServiceTable(services: list)
        serviceName = list[index].name

        let baseWeights = list[index].endpoints.map(\.weight)
        var changed: [Variant: ServiceTable] = [:]
        var descriptions: [Variant: String] = [:]
        for (variant, weight) in [(Variant.sameModulus, UInt32(2 * endpoints)), (.newModulus, UInt32(2))] {
            var copy = list
            copy[index].endpoints[last].weight = weight
            let before = BenchTables.reducedTotal(baseWeights)
            let after = BenchTables.reducedTotal(copy[index].endpoints.map(\.weight))
            precondition((before == after) == (variant == .sameModulus), "the \(variant.rawValue) change does not do what it says")
            changed[variant] = ServiceTable(services: copy)
            descriptions[variant] = "\(list[index].name): endpoint \(last + 1) of \(endpoints) weight 1 → \(weight) (modulus \(before) → \(after))"
        }
        self.changed = changed
        self.descriptions = descriptions
    }

    /// The changed service's elements of its pick map (`endpoint-picks4-modN`) in `table`, in nft's syntax
    /// (`VIP . tcp . 80 . 3 : 10.128.0.5 . 8080`), for the `nft -f` peer: one element per drawn
    /// value, as the compiler lays them out for splits of up to 100 values (serving endpoints in
    /// table order, gcd-reduced). A mismatch makes nft fail with "No such file or directory",
    /// which the report shows.
    func pickElements(in table: ServiceTable) -> [(key: String, value: String)] {
        guard let service = table[serviceName], let address = service.addresses.first, let port = service.ports.first else { return [] }
        let serving = service.servingEndpoints(of: .ipv4)
        func gcd(_ a: UInt32, _ b: UInt32) -> UInt32 { b == 0 ? a : gcd(b, a % b) }
        let divisor = serving.map(\.weight).reduce(0, gcd)
        var next: UInt32 = 0
        return serving.flatMap { endpoint in
            let share = endpoint.weight / divisor
            defer { next += share }
            return (next..<(next + share)).map { value in
                ("\(address) . \(port.transport) . \(port.port) . \(value)", "\(endpoint.address) . \(endpoint.targetPort(for: port))")
            }
        }
    }
}

/// The latency lab's tables: the service under test (same name, VIP, port and 10 endpoints in
/// every configuration) plus `others` synthetic services with their own VIPs and endpoints,
/// which exist only as rules.
struct LatencyTables {
    /// Outside the synthetic VIP range 10.96.0.0/12.
    static let targetVIP = "10.95.0.10"
    static let targetPort: UInt16 = 80
    static let endpointPort: UInt16 = 8080
    /// 10.1.0.1 … 10.1.0.E on the endpoint namespace's loopback; outside 10.128.0.0/9.
    static func endpointAddress(_ index: Int) -> String { "10.1.0.\(index + 1)" }

    let targetName: ServiceName
    let targetEndpoints: Int

    /// The target's name sorts into the middle of the large table (services are ordered by name),
    /// so in the iptables layout its rule sits halfway down `TURNOUT-SERVICES`: the walk an
    /// average service's first packet takes, not the best or worst case.
    init(largeOthers: Int, targetEndpoints: Int) {
        let names = (0..<largeOthers).map { SyntheticTable.service($0, endpoints: 1).name }.sorted()
        let middle = names[names.count / 2]
        targetName = ServiceName(namespace: middle.namespace, name: middle.name + "-target")!
        self.targetEndpoints = targetEndpoints
    }

    var target: Service {
        Service(name: targetName,
                addresses: [IPAddress(Self.targetVIP)!],
                ports: [ServicePort(name: "http", port: Self.targetPort, targetPort: Self.endpointPort)],
                endpoints: (0..<targetEndpoints).map { Endpoint(address: IPAddress(Self.endpointAddress($0))!) })
    }

    /// The target plus `others` synthetic services of `endpoints` endpoints each.
    func table(others: Int, endpoints: Int) -> ServiceTable {
        ServiceTable(services: (0..<others).map { SyntheticTable.service($0, endpoints: endpoints) } + [target])
    }

    /// 1-based position of the target's rule in `TURNOUT-SERVICES`, and the chain's length:
    /// how many rules its first packet walks in the iptables layout.
    func iptablesPosition(in table: ServiceTable) -> (position: Int, of: Int)? {
        let nat = IptablesServiceCompiler.compile(table, family: .ipv4).first { $0.name == "nat" }
        guard let rules = nat?.chain(named: IptablesServiceCompiler.servicesChain)?.rules,
              let index = rules.firstIndex(where: { $0.comment?.hasPrefix("\(targetName):") == true }) else { return nil }
        return (index + 1, rules.count)
    }
}
