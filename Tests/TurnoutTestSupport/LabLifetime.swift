import Foundation

/// Runs `body` with a lab made by `start`, and always stops it afterwards, also when `body`
/// throws: what `withCaptureLab`, `withServiceLab` and `withProxyLab` share.
///
/// An error from `body` wins over a teardown error (which is then printed to stderr under
/// `name`, so a leaked namespace is never silent); a teardown error alone is thrown.
func withStartedLab<Lab, Result>(_ name: String, start: () throws -> Lab, stop: (Lab) throws -> Void,
                                 _ body: (Lab) throws -> Result) throws -> Result {
    let lab = try start()
    let result: Result
    do {
        result = try body(lab)
    } catch {
        do { try stop(lab) } catch let teardown {
            FileHandle.standardError.write(Data("\(name): \(teardown)\n".utf8))
        }
        throw error
    }
    try stop(lab)
    return result
}

/// The steps of a lab's `stop()`: every one is tried even when an earlier one failed, and what
/// failed is thrown at the end as one ``ServiceLabError`` (a namespace left behind, say).
struct Teardown {
    private let name: String
    private var problems: [String] = []

    /// `name` starts the error's text: "proxy lab teardown", say.
    init(_ name: String) {
        self.name = name
    }

    /// Runs `step`; its error, labelled with `label` when given, is kept for ``finish()``.
    mutating func attempt(_ label: String? = nil, _ step: () throws -> Void) {
        do { try step() } catch { problems.append(label.map { "\($0): \(error)" } ?? "\(error)") }
    }

    /// Throws what failed, if anything did.
    func finish() throws {
        if !problems.isEmpty { throw ServiceLabError("\(name): " + problems.joined(separator: "; ")) }
    }
}
