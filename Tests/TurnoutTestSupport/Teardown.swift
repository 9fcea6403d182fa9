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
