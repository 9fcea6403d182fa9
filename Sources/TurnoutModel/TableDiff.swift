/// What changed between two tables, service by service and endpoint by endpoint.
///
/// The reconciler of later issues turns this into a kernel delta; it is computed on values only.
public struct TableDiff: Hashable, Sendable {
    /// How one service present in both tables changed.
    public struct ServiceChange: Hashable, Sendable {
        public var name: ServiceName
        /// Which of the service's own settings differ, in this order: `addresses`, `ports`,
        /// `affinity`. Any of them changes the service's rules, not only its endpoints.
        public var frontendChanges: [String]
        /// Addresses, ports or affinity differ: the service's rules change, not only its endpoints.
        public var frontendChanged: Bool { !frontendChanges.isEmpty }
        public var endpointsAdded: [Endpoint]
        public var endpointsRemoved: [Endpoint]
        /// Same address and ports, different weight or zone: (old, new).
        public var endpointsChanged: [EndpointChange]
    }

    public struct EndpointChange: Hashable, Sendable {
        public var old: Endpoint
        public var new: Endpoint
    }

    public var added: [Service]
    public var removed: [Service]
    public var changed: [ServiceChange]

    public var isEmpty: Bool { added.isEmpty && removed.isEmpty && changed.isEmpty }

    public init(from old: ServiceTable, to new: ServiceTable) {
        let oldByName = Dictionary(uniqueKeysWithValues: old.services.map { ($0.name, $0) })
        let newByName = Dictionary(uniqueKeysWithValues: new.services.map { ($0.name, $0) })
        added = new.services.filter { oldByName[$0.name] == nil }
        removed = old.services.filter { newByName[$0.name] == nil }
        changed = new.services.compactMap { service in
            guard let previous = oldByName[service.name], previous != service else { return nil }
            return TableDiff.change(from: previous, to: service)
        }
    }

    private static func change(from old: Service, to new: Service) -> ServiceChange {
        // An endpoint's identity is its address and its resolved port on every service port; weight
        // and zone are attributes that can change in place.
        func identity(_ endpoint: Endpoint, _ service: Service) -> String {
            "\(endpoint.address)|" + service.ports.map { "\($0.name)=\(endpoint.targetPort(for: $0))" }.joined(separator: ",")
        }
        let oldByID = Dictionary(old.endpoints.map { (identity($0, old), $0) }, uniquingKeysWith: { first, _ in first })
        let newByID = Dictionary(new.endpoints.map { (identity($0, new), $0) }, uniquingKeysWith: { first, _ in first })
        return ServiceChange(
            name: new.name,
            frontendChanges: [
                old.addresses != new.addresses ? "addresses" : nil,
                old.ports != new.ports ? "ports" : nil,
                old.affinity != new.affinity ? "affinity" : nil,
            ].compactMap { $0 },
            endpointsAdded: new.endpoints.filter { oldByID[identity($0, new)] == nil },
            endpointsRemoved: old.endpoints.filter { newByID[identity($0, old)] == nil },
            endpointsChanged: new.endpoints.compactMap { endpoint in
                guard let previous = oldByID[identity(endpoint, new)], previous != endpoint else { return nil }
                return EndpointChange(old: previous, new: endpoint)
            }
        )
    }
}
