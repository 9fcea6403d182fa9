import TurnoutModel

/// Makes a ``TableSource`` from the `--source` a user wrote (build copy without etcd).
public enum TableSourceURL {
    public static func open(_ text: String) throws -> any TableSource {
        if text.hasPrefix("etcd:") {
            throw ValueError("\(text): the etcd source is not built yet (issue 6); use file:PATH")
        }
        let path = text.hasPrefix("file:") ? String(text.dropFirst("file:".count)) : text
        guard !path.isEmpty else { throw ValueError("\(text): file:PATH needs a path") }
        return try FileTableSource(path: path)
    }
}
