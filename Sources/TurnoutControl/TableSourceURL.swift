import TurnoutModel

/// The `--source` a user wrote, parsed: `file:PATH` (or a bare path) for a file or directory,
/// `etcd:http://HOST:PORT` or `etcd:https://HOST:PORT` for etcd (`etcd:http://A:2379,http://B:2379`
/// for several members). ``open(tls:)`` makes the ``TableSource`` that watches it.
public enum TableSourceURL: Sendable, Hashable {
    case file(path: String)
    /// The etcd endpoint, as written after `etcd:` (checked when the source is opened).
    case etcd(endpoint: String)

    /// Parses `text`; throws `ValueError` for `file:` with no path.
    public init(_ text: String) throws(ValueError) {
        if text.hasPrefix("etcd:") {
            self = .etcd(endpoint: String(text.dropFirst("etcd:".count)))
            return
        }
        let path = text.hasPrefix("file:") ? String(text.dropFirst("file:".count)) : text
        guard !path.isEmpty else { throw ValueError("\(text): file:PATH needs a path") }
        self = .file(path: path)
    }

    /// The source that watches this location; `tls` is for an `https://` etcd (nil: the
    /// system's CAs), `credentials` for an etcd with authentication. Throws `ValueError` for an
    /// etcd endpoint that is not `http(s)://HOST:PORT`, for TLS files or credentials given with
    /// a file source, for TLS files with an `http://` etcd, or what starting a file watch throws.
    public func open(tls: TLSClientConfiguration? = nil, credentials: EtcdCredentials? = nil) throws -> any TableSource {
        switch self {
        case .file(let path):
            if let tls, tls.namesFiles { throw ValueError("file:\(path): TLS certificates are for an etcd source only") }
            if credentials != nil { throw ValueError("file:\(path): an etcd user is for an etcd source only") }
            return try FileTableSource(path: path)
        case .etcd(let endpoint): return try EtcdTableSource(client: EtcdClient(url: endpoint, tls: tls, credentials: credentials))
        }
    }

    /// `TableSourceURL(text).open(tls:credentials:)`.
    public static func open(_ text: String, tls: TLSClientConfiguration? = nil, credentials: EtcdCredentials? = nil) throws -> any TableSource {
        try TableSourceURL(text).open(tls: tls, credentials: credentials)
    }
}
