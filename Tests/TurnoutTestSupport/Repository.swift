import Foundation

/// Paths inside the repository and the build, for tests that read `rules/` or run `turnout`.
public enum Repository {
    /// The repository root, found from this source file's compile-time path.
    public static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        }
        fatalError("no Package.swift above \(#filePath)")
    }()

    public static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    /// The example tables in `rules/`, by base name (`canary`, `dual-stack`, …).
    public static var exampleTables: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path("rules"))) ?? []
        return names.filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
    }

    /// The built `turnout` executable, beside the test bundle in the build directory.
    public static var turnoutBinary: String {
        if let override = ProcessInfo.processInfo.environment["TURNOUT_BIN"] { return override }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return executable.deletingLastPathComponent().appendingPathComponent("turnout").path
    }
}

/// Runs the built `turnout` binary from the repository root, as a user would.
public func turnout(_ arguments: String..., input: String? = nil) throws -> ProcessResult {
    try turnout(arguments, input: input)
}

public func turnout(_ arguments: [String], input: String? = nil) throws -> ProcessResult {
    try Subprocess.run(Repository.turnoutBinary, arguments, input: input, workingDirectory: Repository.root.path)
}
