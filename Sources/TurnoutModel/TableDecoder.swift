import Yams

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
            var documents: [Node] = []
            do {
                // compose_all ends quietly on a parse error and keeps it in `error`.
                var parsed = try Yams.compose_all(yaml: source.text)
                while let document = parsed.next() { documents.append(document) }
                if let error = parsed.error { throw error }
            } catch {
                log.report(at: location(of: error, in: source.name), field: "(document)", "not valid YAML: \(summary(of: error))")
                continue
            }
            for document in documents {
                let root = YAMLCursor(node: document, file: source.name, path: "")
                if case .mapping(let mapping) = document, mapping["kind"] != nil || mapping["apiVersion"] != nil {
                    kubernetes.add(root, log: &log)
                } else if case .scalar(let scalar) = document, scalar.string.isEmpty {
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

    static func location(of error: any Error, in file: String) -> SourceLocation {
        if let yaml = error as? YamlError {
            switch yaml {
            case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
                return SourceLocation(file: file, line: mark.line, column: mark.column)
            default:
                break
            }
        }
        return SourceLocation(file: file, line: 1, column: 1)
    }

    static func summary(of error: any Error) -> String {
        if let yaml = error as? YamlError {
            switch yaml {
            case .scanner(let context, let problem, _, _), .parser(let context, let problem, _, _), .composer(let context, let problem, _, _):
                return [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
            case .duplicatedKeysInMapping(let duplicates, _):
                return "duplicate keys \(duplicates.joined(separator: ", "))"
            default:
                break
            }
        }
        return "\(error)"
    }
}
