import Glibc

/// What identifies a table file's (or a table directory's) contents without reading them: each
/// file's inode, size and modification time. Two equal stamps mean "unchanged" to
/// ``FileTableSource``; a file replaced by rename (as editors and `kubectl cp` do) changes the
/// inode, an edit in place the time or the size.
public struct TableFileStamp: Sendable, Hashable {
    private var files: [String: [Int64]]

    /// The stamp of `path` now; nil when it cannot be read (the source then reports why).
    public init?(_ path: String) {
        guard let names = try? TableFile.files(at: path) else { return nil }
        var files: [String: [Int64]] = [:]
        for name in names {
            var info = stat()
            guard stat(name, &info) == 0 else { return nil }
            files[name] = [Int64(info.st_ino), Int64(info.st_size), Int64(info.st_mtim.tv_sec), Int64(info.st_mtim.tv_nsec)]
        }
        self.files = files
    }

    /// The newest modification time of the table's files, as `mtime SECONDS.MILLIS`: what the
    /// file source reports as the table's revision (read from the stamp, not from the disk again).
    public var revision: String {
        let newest = files.values.map { ($0[2], $0[3]) }.max { $0 < $1 } ?? (0, 0)
        let millis = newest.1 / 1_000_000
        return "mtime \(newest.0).\(String(repeating: "0", count: 3 - "\(millis)".count))\(millis)"
    }
}
