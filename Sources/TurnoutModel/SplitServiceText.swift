/// One service kept as separate texts, the way a key/value store holds a table: the service's
/// own fields in one text, and each endpoint in a text of its own.
///
/// `name` is the name the service's key gives it; the service text must name the same service.
/// Each text is one YAML (or JSON) mapping: the service's fields other than `endpoints`, or one
/// endpoint's fields (`address`, `weight`, …). A text's `name` is what issues call it (an etcd
/// key).
public struct SplitServiceText: Sendable {
    public var name: ServiceName
    public var service: TableText
    public var endpoints: [TableText]

    public init(name: ServiceName, service: TableText, endpoints: [TableText]) {
        self.name = name
        self.service = service
        self.endpoints = endpoints
    }
}

extension TableDecoder {
    /// Decodes services kept as separate texts (``SplitServiceText``) into a validated table,
    /// with the same field rules and the same whole-table validation as ``decode(_:)``.
    ///
    /// Issues name the text (`etcd key …:line:column`) and the field from the text's own root
    /// (`weight`, `ports[0].port`), since each text is edited on its own; an issue about the
    /// whole text says `(value)`. A service's endpoints keep the order given. Pure; throws
    /// every issue found.
    public static func decode(split services: [SplitServiceText]) throws(TableError) -> ServiceTable {
        var log = IssueLog()
        var decoded: [DecodedService] = []
        for entry in services {
            let before = log.issues.count
            guard let root = splitRoot(entry.service, log: &log) else { continue }
            if let key = root.node.key(named: "endpoints") {
                log.report(at: YAMLCursor(node: key, file: root.file, path: "").location, field: "endpoints",
                           "a service's value holds no endpoints: each endpoint is a key of its own")
            }
            var endpoints: [Endpoint] = [], endpointSources: [FieldSource] = []
            for text in entry.endpoints {
                guard let endpointRoot = splitRoot(text, log: &log),
                      let endpoint = NativeTableDecoder.decodeEndpoint(endpointRoot, log: &log) else { continue }
                endpoints.append(endpoint)
                endpointSources.append(FieldSource(endpointRoot))
            }
            guard var service = NativeTableDecoder.decodeService(root, log: &log) else { continue }
            if service.service.name != entry.name {
                log.report(at: service.name.location, field: service.name.path,
                           "the key names service '\(entry.name)' but the value names '\(service.service.name)'")
            }
            guard log.issues.count == before else { continue }
            service.service.endpoints = endpoints
            service.endpoints = endpointSources
            decoded.append(service)
        }
        TableValidator.validate(decoded, log: &log)
        guard log.issues.isEmpty else {
            // Fields are relative to each text's root, whose own path is empty: the validator's
            // "\(path).address" then reads ".address".
            throw TableError(issues: log.issues.map { issue in
                var issue = issue
                if issue.field.hasPrefix(".") { issue.field.removeFirst() }
                if issue.field.isEmpty { issue.field = "(value)" }
                return issue
            })
        }
        return ServiceTable(services: decoded.map(\.service))
    }

    /// The one document of a split text, or nil with the issue logged (not YAML, empty, or
    /// several documents).
    private static func splitRoot(_ text: TableText, log: inout IssueLog) -> YAMLCursor? {
        do {
            guard let node = try YAMLComposer.document(in: text.text) else {
                log.report(at: SourceLocation(file: text.name, line: 1, column: 1), field: "(value)", "empty; expected a mapping")
                return nil
            }
            return YAMLCursor(node: node, file: text.name, path: "")
        } catch {
            log.report(at: SourceLocation(file: text.name, line: error.line, column: error.column), field: "(value)",
                       "not valid YAML or JSON: \(error.message)")
            return nil
        }
    }
}
