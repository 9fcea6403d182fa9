#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TurnoutModel

/// Reads a table from a file, or from every `*.yaml`, `*.yml` and `*.json` file of a directory
/// (sorted by name, not recursive), and decodes it with ``TableDecoder``.
///
/// Errors are ``TableError`` whether the path is missing or the contents are wrong: both are
/// the caller's input, reported as file:line and exit status 2 by the CLI.
public enum TableFile {
    public static let extensions = [".yaml", ".yml", ".json"]

    public static func load(_ path: String) throws(TableError) -> ServiceTable {
        try TableDecoder.decode(sources(at: path))
    }

    public static func sources(at path: String) throws(TableError) -> [TableText] {
        try files(at: path).map { file throws(TableError) in TableText(name: file, text: try read(file)) }
    }

    /// The files a table at `path` is read from, without reading them: the file itself, or the
    /// directory's table files sorted by name. Throws when `path` cannot be listed, or is a
    /// directory with no table file.
    public static func files(at path: String) throws(TableError) -> [String] {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw unreadable(path, errno: errno)
        }
        if info.st_mode & S_IFMT == S_IFDIR {
            let names = try directoryEntries(path).filter { name in extensions.contains { name.hasSuffix($0) } }.sorted()
            if names.isEmpty {
                throw TableError(issues: [TableIssue(location: SourceLocation(file: path, line: 1, column: 1), field: "(directory)",
                                                     message: "no *.yaml, *.yml or *.json file in this directory")])
            }
            let directory = path.hasSuffix("/") ? String(path.dropLast()) : path
            return names.map { "\(directory)/\($0)" }
        }
        return [path]
    }

    private static func read(_ path: String) throws(TableError) -> String {
        let bytes: [UInt8]
        do { bytes = try FileContents.read(path) } catch { throw unreadable(path, errno: error.errno) }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw TableError(issues: [TableIssue(location: SourceLocation(file: path, line: 1, column: 1), field: "(file)",
                                                 message: "not UTF-8 text")])
        }
        return text
    }

    private static func directoryEntries(_ path: String) throws(TableError) -> [String] {
        guard let directory = opendir(path) else { throw unreadable(path, errno: errno) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if !name.hasPrefix(".") { names.append(name) }
        }
        return names
    }

    private static func unreadable(_ path: String, errno code: Int32) -> TableError {
        TableError(issues: [TableIssue(location: SourceLocation(file: path, line: 1, column: 1), field: "(file)",
                                       message: "cannot read: \(String(cString: strerror(code)))")])
    }
}
