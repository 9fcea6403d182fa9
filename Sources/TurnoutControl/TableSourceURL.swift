import TurnoutModel

/// Makes a ``TableSource`` from the `--source` a user wrote: `file:PATH` (or a bare path) for
/// a file or directory, `etcd:http://HOST:PORT` for etcd.
public enum TableSourceURL {
    public static func open(_ text: String) throws -> any TableSource {
        if text.hasPrefix("etcd:") {
            return try EtcdTableSource(client: EtcdClient(url: String(text.dropFirst("etcd:".count))))
        }
        let path = text.hasPrefix("file:") ? String(text.dropFirst("file:".count)) : text
        guard !path.isEmpty else { throw ValueError("\(text): file:PATH needs a path") }
        return try FileTableSource(path: path)
    }
}
