#if canImport(Glibc)
import Glibc
#endif

/// The CLI's exit statuses (DESIGN.md §4).
enum ExitStatus {
    static let failure: Int32 = 1
    static let badInput: Int32 = 2
}

/// An argument that parsed but makes no sense (`--to` not an address); exits with status 2.
struct BadInput: Error {
    var message: String
}

/// A failure at run time that is not the input's fault (a port already in use); exits 1.
struct RuntimeFailure: Error {
    var message: String
}

/// Writes a line to standard error. `write(2)` rather than `fputs(stderr)`: the C global `stderr`
/// is shared mutable state that Swift 6 refuses to touch without isolation.
func printError(_ text: String) {
    var line = Array((text + "\n").utf8)
    var offset = 0
    while offset < line.count {
        let written = line[offset...].withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
        if written <= 0 { return }
        offset += written
    }
}
