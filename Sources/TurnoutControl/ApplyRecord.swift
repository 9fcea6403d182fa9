import FoundationEssentials

/// What Turnout last wrote to a namespace's nf_tables: the digest of the table and the ruleset
/// generation right after the commit. Kept in `/run/turnout/`, which, like the rules themselves,
/// does not survive a reboot.
///
/// A later `apply` that reads back a table with the same digest knows nothing drifted and
/// patches it; any other table is rebuilt. Losing the record only costs one rebuild.
struct ApplyRecord: Equatable {
    var digest: String
    var generation: UInt32

    /// The record's file for the network namespace `namespaceIdentity` (its inode number), so
    /// namespaces sharing `/run` keep separate records.
    static func path(directory: String, table: String, namespaceIdentity: UInt64) -> String {
        "\(directory)/nft-\(table)-netns\(namespaceIdentity).state"
    }

    static func load(from path: String) -> ApplyRecord? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let fields = text.split(whereSeparator: \.isWhitespace)
        guard fields.count == 2, let generation = UInt32(fields[1]) else { return nil }
        return ApplyRecord(digest: String(fields[0]), generation: generation)
    }

    /// Writes atomically (temporary file, then rename), so a crash never leaves half a record.
    func save(to path: String) throws {
        let directory = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try "\(digest) \(generation)\n".write(toFile: path, atomically: true, encoding: .utf8)
    }

    static func remove(at path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }
}
