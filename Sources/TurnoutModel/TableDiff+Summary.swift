extension TableDiff {
    /// The diff as one log line, for people: what a reload or a watched apply changed.
    ///
    /// `shop/api: +10.1.0.7, -10.1.0.5, 10.1.0.6 weight 9→1; shop/web added (2 endpoints);
    /// shop/old removed`. Services come in name order; an endpoint is its address, with its
    /// port when it overrides the service's. The line stays short on a large table: at most
    /// `services` services and `endpoints` endpoint items per service are named, the rest
    /// counted (`and 40 more`). An empty diff reads `no change`.
    public func summary(services servicesShown: Int = 8, endpoints endpointsShown: Int = 4) -> String {
        // One entry per service, sorted together so that an operator finds a service where
        // its name sorts, whatever happened to it.
        var entries: [(name: ServiceName, text: String)] = []
        for service in added {
            entries.append((service.name, "\(service.name) added (\(Self.count(service.endpoints.count, "endpoint")))"))
        }
        for service in removed {
            entries.append((service.name, "\(service.name) removed"))
        }
        for change in changed {
            entries.append((change.name, "\(change.name): \(Self.items(of: change, shown: endpointsShown))"))
        }
        guard !entries.isEmpty else { return "no change" }
        entries.sort { $0.name < $1.name }
        return Self.bounded(entries.map(\.text), shown: servicesShown, noun: "service", separator: "; ")
    }

    private static func items(of change: ServiceChange, shown: Int) -> String {
        var items: [String] = []
        let frontend = change.frontendChanged ? [change.frontendChanges.joined(separator: ", ") + " changed"] : []
        items += change.endpointsAdded.map { "+\(label($0))" }
        items += change.endpointsRemoved.map { "-\(label($0))" }
        items += change.endpointsChanged.map { change in
            var parts: [String] = []
            if change.old.weight != change.new.weight { parts.append("weight \(change.old.weight)→\(change.new.weight)") }
            if change.old.zone != change.new.zone { parts.append("zone \(change.old.zone ?? "none")→\(change.new.zone ?? "none")") }
            // Same address and resolved ports, yet different: its port overrides were rewritten
            // to the same effect (`port: 8080` became `ports: {http: 8080}`).
            if parts.isEmpty { parts.append("port overrides rewritten") }
            return "\(label(change.new)) " + parts.joined(separator: ", ")
        }
        let endpoints = items.isEmpty ? [] : [bounded(items, shown: shown, noun: nil, separator: ", ")]
        return (frontend + endpoints).joined(separator: "; ")
    }

    /// An endpoint as people name it: the address, and the port when the endpoint sets one.
    private static func label(_ endpoint: Endpoint) -> String {
        guard let port = endpoint.port else { return "\(endpoint.address)" }
        return endpoint.address.family == .ipv6 ? "[\(endpoint.address)]:\(port)" : "\(endpoint.address):\(port)"
    }

    /// The first `shown` items, then `and N more` (`and N more services` with a noun).
    private static func bounded(_ items: [String], shown: Int, noun: String?, separator: String) -> String {
        let limit = max(shown, 1)
        guard items.count > limit else { return items.joined(separator: separator) }
        let rest = items.count - limit
        let more = noun.map { "and " + count(rest, "more \($0)") } ?? "and \(rest) more"
        return items.prefix(limit).joined(separator: separator) + separator + more
    }

    private static func count(_ n: Int, _ noun: String) -> String {
        n == 1 ? "1 \(noun)" : "\(n) \(noun)s"
    }
}
