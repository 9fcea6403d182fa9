import Glibc

/// What identifies a table file's (or a table directory's) contents without reading them: each
/// file's ``FileIdentity`` (inode, size, modification time). Two equal stamps mean "unchanged" to
/// ``FileTableSource``; a file replaced by rename (as editors and `kubectl cp` do) changes the
/// inode, an edit in place the time or the size.
public struct TableFileStamp: Sendable, Hashable {
    private var files: [String: FileIdentity]

    /// The stamp of `path` now; nil when it cannot be read (the source then reports why).
    public init?(_ path: String) {
        guard let names = try? TableFile.files(at: path) else { return nil }
        var files: [String: FileIdentity] = [:]
        for name in names {
            guard let identity = FileIdentity(name) else { return nil }
            files[name] = identity
        }
        self.files = files
    }

    /// The newest modification time of the table's files, as `mtime SECONDS.MILLIS`: what the
    /// file source reports as the table's revision (read from the stamp, not from the disk again).
    public var revision: String {
        let newest = files.values.map { ($0.modifiedSeconds, $0.modifiedNanoseconds) }.max { $0 < $1 } ?? (0, 0)
        let millis = newest.1 / 1_000_000
        return "mtime \(newest.0).\(String(repeating: "0", count: 3 - "\(millis)".count))\(millis)"
    }
}
