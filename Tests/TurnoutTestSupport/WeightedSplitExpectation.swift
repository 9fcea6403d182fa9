import Foundation
import Testing

/// Expects a weighted split of connections to hold only the names in `weights`, each within 3σ
/// of its weighted share (σ = √(n·p·(1−p))), and nothing at all for weight 0 or errors.
///
/// A correct 3σ check still fails by chance about once in 370 samples; with a dozen such checks
/// in the suite that would be a red CI run in about 30. So a sample outside 3σ is followed by one
/// fresh sample, which must pass: a correct split then fails about once in 137,000, a wrong one
/// still fails twice. Weight 0 and unexpected answers (errors, other endpoints) fail at once,
/// without a second sample, since chance does not explain them.
///
/// `sample` takes one sample (name → connections answered); the samples taken, one or two, are
/// returned in order, so that a caller can check counters that add up over both.
@discardableResult
public func expectSplit(weights: [String: Int], _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
                        sample: () throws -> [String: Int]) throws -> [[String: Int]] {
    var samples = [try sample()]
    var verdict = SplitVerdict(samples[0], weights: weights)
    print("\(what): \(verdict.figures)")
    if verdict.strayAnswers.isEmpty && !verdict.outsideThreeSigma.isEmpty {
        print("\(what): outside 3σ (\(verdict.outsideThreeSigma.joined(separator: "; "))); taking one fresh sample")
        samples.append(try sample())
        verdict = SplitVerdict(samples[1], weights: weights)
        print("\(what), second sample: \(verdict.figures)")
    }
    for failure in verdict.strayAnswers + verdict.outsideThreeSigma {
        Issue.record("\(what): \(failure)", sourceLocation: sourceLocation)
    }
    return samples
}

/// How one sample of a weighted split compares with its weights.
public struct SplitVerdict: Sendable {
    /// One line of every name's hits, share and 3σ band, for the test's output.
    public var figures = ""
    public var outsideThreeSigma: [String] = []
    /// Weight-0 endpoints that answered, errors, unknown names: never a matter of chance.
    public var strayAnswers: [String] = []

    public init(_ counts: [String: Int], weights: [String: Int]) {
        let total = counts.values.reduce(0, +)
        let weightSum = Double(weights.values.reduce(0, +))
        var parts: [String] = []
        for (name, weight) in weights.sorted(by: { $0.key < $1.key }) {
            let hits = counts[name] ?? 0
            let p = Double(weight) / weightSum
            let expected = Double(total) * p
            let sigma = (Double(total) * p * (1 - p)).squareRoot()
            parts.append("\(name) \(hits) (\(String(format: "%.1f", 100 * Double(hits) / Double(max(total, 1))))%, expected \(String(format: "%.0f", expected)) ± \(String(format: "%.1f", 3 * sigma)))")
            if weight == 0 {
                if hits != 0 { strayAnswers.append("\(name) has weight 0 but answered \(hits) of \(total)") }
            } else if abs(Double(hits) - expected) > 3 * sigma {
                outsideThreeSigma.append("\(name) answered \(hits) of \(total), expected \(expected) ± \(3 * sigma) (3σ)")
            }
        }
        let unexpected = counts.filter { weights[$0.key] == nil }
        if !unexpected.isEmpty { strayAnswers.append("unexpected answers \(unexpected)") }
        figures = "\(total) connections: " + parts.joined(separator: ", ") + (unexpected.isEmpty ? "" : ", other \(unexpected)")
    }
}
