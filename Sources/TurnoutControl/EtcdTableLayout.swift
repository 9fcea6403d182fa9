import TurnoutModel

/// Where a table lives in etcd (DESIGN.md §7): one key per service and one per endpoint, so a
/// changed weight rewrites one small value and a watcher sees exactly what changed.
///
/// * `<prefix>services/<ns>/<name>`: the service as JSON without its endpoints
///   (`TableEncoder.json(service, endpoints: false)`).
/// * `<prefix>endpoints/<ns>/<name>/<id>`: one endpoint as JSON (`TableEncoder.json(endpoint)`).
///   `turnout publish` names it ``endpointID(_:)``: the address (an IPv6 address keeps its
///   `:`), plus `-<port>` for a port override and `-<name>=<port>` per named port, so the same
///   endpoint keeps the same key across publishes. A reader accepts any id without `/`.
///
/// etcd keeps no order among a service's endpoints, so a table read back has each service's
/// endpoints sorted by address, then port (``readBackOrder(_:)``); order never decides where
/// traffic goes, weights do. Every other key under the prefix is an error: a stray key is more
/// likely a typo than something to ignore. Pure: no I/O.
public struct EtcdTableLayout: Sendable, Hashable {
    /// Turnout's keys in etcd, version 1 of this layout.
    public static let standard = EtcdTableLayout(prefix: "/turnout/v1/")

    /// Every key of the table starts with it; ends with `/`.
    public let prefix: String

    public init(prefix: String) {
        precondition(prefix.hasSuffix("/"), "an etcd key prefix ends with /")
        self.prefix = prefix
    }

    public var servicesPrefix: String { prefix + "services/" }
    public var endpointsPrefix: String { prefix + "endpoints/" }

    public func serviceKey(_ name: ServiceName) -> String {
        "\(servicesPrefix)\(name.namespace)/\(name.name)"
    }

    public func endpointKey(_ name: ServiceName, _ endpoint: Endpoint) -> String {
        "\(endpointsPrefix)\(name.namespace)/\(name.name)/\(Self.endpointID(endpoint))"
    }

    /// The endpoint's stable id: `10.1.0.5`, `10.1.0.6-8081`, `fd00::5`, `10.1.0.7-http=8080`.
    /// Two endpoints of a valid service never share one (the validator rejects an address
    /// listed twice with the same ports, and different overrides make different ids).
    public static func endpointID(_ endpoint: Endpoint) -> String {
        var id = "\(endpoint.address)"
        if let port = endpoint.port { id += "-\(port)" }
        for (name, port) in endpoint.namedPorts.sorted(by: { $0.key < $1.key }) { id += "-\(name)=\(port)" }
        return id
    }

    /// Every key and value that hold `table`. Throws when two endpoints of a service would share
    /// a key, which only a table that did not pass validation can do.
    public func entries(for table: ServiceTable) throws(ValueError) -> [String: String] {
        var entries: [String: String] = [:]
        for service in table.services {
            entries[serviceKey(service.name)] = TableEncoder.json(service, endpoints: false)
            for endpoint in service.endpoints {
                let key = endpointKey(service.name, endpoint)
                guard entries.updateValue(TableEncoder.json(endpoint), forKey: key) == nil else {
                    throw ValueError("service \(service.name) lists endpoint \(Self.endpointID(endpoint)) twice")
                }
            }
        }
        return entries
    }

    /// The table held by `entries` (every key under ``prefix`` and its value), decoded and
    /// validated as a table file is.
    ///
    /// Throws ``TableError`` listing every problem, each naming its key as `etcd key KEY` and the
    /// field within the value (`etcd key /turnout/v1/endpoints/shop/api/10.1.0.5:1:23: weight:
    /// …`): a key outside the layout, a value that is not UTF-8, an endpoint whose service key
    /// is missing, and whatever the decoder and the validator find.
    public func table(from entries: [String: [UInt8]]) throws(TableError) -> ServiceTable {
        var issues: [TableIssue] = []
        var services: [ServiceName: TableText] = [:]
        var endpoints: [ServiceName: [(key: String, text: TableText)]] = [:]
        for (key, value) in entries {
            guard let parsed = parse(key) else {
                issues.append(Self.issue(key, field: "(key)",
                                         "not a Turnout key: expected \(servicesPrefix)<namespace>/<name> or \(endpointsPrefix)<namespace>/<name>/<id>"))
                continue
            }
            guard let text = String(validating: value, as: UTF8.self) else {
                issues.append(Self.issue(key, field: "(value)", "not UTF-8 text"))
                continue
            }
            let tableText = TableText(name: Self.textName(key), text: text)
            switch parsed {
            case .service(let name): services[name] = tableText
            case .endpoint(let name): endpoints[name, default: []].append((key, tableText))
            }
        }
        for (name, orphans) in endpoints where services[name] == nil {
            for orphan in orphans {
                issues.append(Self.issue(orphan.key, field: "(key)", "no service key \(serviceKey(name)) for this endpoint"))
            }
        }
        // By name, so that of two clashing services the later one is blamed, every time.
        let split = services.sorted { $0.key < $1.key }.map { name, text in
            SplitServiceText(name: name, service: text, endpoints: (endpoints[name] ?? []).sorted { $0.key < $1.key }.map(\.text))
        }
        var table: ServiceTable?
        do {
            table = try TableDecoder.decode(split: split)
        } catch {
            issues += error.issues
        }
        guard issues.isEmpty, let table else { throw TableError(issues: issues) }
        return Self.readBackOrder(table)
    }

    /// `table` as it reads back from etcd: each service's endpoints sorted by address, port
    /// override, then id.
    public static func readBackOrder(_ table: ServiceTable) -> ServiceTable {
        ServiceTable(services: table.services.map { service in
            var service = service
            service.endpoints.sort { a, b in
                (a.address, a.port ?? 0, endpointID(a)) < (b.address, b.port ?? 0, endpointID(b))
            }
            return service
        })
    }

    /// What a key under the prefix holds, or nil for a key outside the layout.
    private enum KeyKind {
        case service(ServiceName)
        case endpoint(ServiceName)
    }

    private func parse(_ key: String) -> KeyKind? {
        if key.hasPrefix(servicesPrefix) {
            let parts = key.dropFirst(servicesPrefix.count).split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, let name = ServiceName(namespace: String(parts[0]), name: String(parts[1])) else { return nil }
            return .service(name)
        }
        if key.hasPrefix(endpointsPrefix) {
            let parts = key.dropFirst(endpointsPrefix.count).split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 3, !parts[2].isEmpty,
                  let name = ServiceName(namespace: String(parts[0]), name: String(parts[1])) else { return nil }
            return .endpoint(name)
        }
        return nil
    }

    /// How issues name a key: it stands where a file name stands in a table file's issues.
    static func textName(_ key: String) -> String { "etcd key \(key)" }

    private static func issue(_ key: String, field: String, _ message: String) -> TableIssue {
        TableIssue(location: SourceLocation(file: textName(key), line: 1, column: 1), field: field, message: message)
    }
}
