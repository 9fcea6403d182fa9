/// The whole input: every service, sorted by name so every compiler output is deterministic.
public struct ServiceTable: Hashable, Sendable {
    public private(set) var services: [Service]

    public init(services: [Service]) {
        self.services = services.sorted { $0.name < $1.name }
    }

    public subscript(name: ServiceName) -> Service? {
        services.first { $0.name == name }
    }
}
