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
