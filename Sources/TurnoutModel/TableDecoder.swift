/// One text of a table: where it came from, as errors should name it (a file, an etcd key), and
/// its contents.
public struct TableText: Sendable {
    public var name: String
    public var text: String

    public init(name: String, text: String) {
        self.name = name
        self.text = text
    }
}

/// Turns table sources into a validated ``ServiceTable``.
///
/// Each YAML document (JSON is accepted as YAML) is either Turnout's own format (`services:`)
/// or a Kubernetes manifest (`apiVersion` + `kind`): `Service` and `EndpointSlice` are imported,
/// other kinds are ignored. All sources are merged, then validated as one table. Pure: no I/O.
///
/// Throws ``TableError`` listing every issue, each with file:line:column and field path.
public enum TableDecoder {
    public static func decode(_ sources: [TableText]) throws(TableError) -> ServiceTable {
        var log = IssueLog()
        var native: [DecodedService] = []
        var kubernetes = KubernetesManifestDecoder()

        for source in sources {
            let documents: [YAMLNode]
            do {
                documents = try YAMLComposer.documents(in: source.text)
            } catch {
                log.report(at: SourceLocation(file: source.name, line: error.line, column: error.column), field: "(document)",
                           "not valid YAML: \(error.message)")
                continue
            }
            for document in documents {
                let root = YAMLCursor(node: document, file: source.name, path: "")
                if document.key(named: "kind") != nil || document.key(named: "apiVersion") != nil {
                    kubernetes.add(root, log: &log)
                } else if document.scalarText?.isEmpty == true {
                    continue // an empty document, e.g. a trailing `---`
                } else {
                    native += NativeTableDecoder.decode(root, log: &log)
                }
            }
        }

        let all = native + kubernetes.services(log: &log)
        TableValidator.validate(all, log: &log)
        guard log.issues.isEmpty else { throw TableError(issues: log.issues) }
        return ServiceTable(services: all.map(\.service))
    }

    /// Decodes one text; a convenience for tests and for callers holding a single file.
    public static func decode(_ text: String, name: String) throws(TableError) -> ServiceTable {
        try decode([TableText(name: name, text: text)])
    }
}
