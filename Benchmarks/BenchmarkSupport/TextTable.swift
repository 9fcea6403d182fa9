import Foundation

/// A plain-text table: a header row, a rule, then right-aligned cells two spaces apart.
public struct TextTable: Sendable {
    public let headers: [String]
    public var rows: [[String]] = []

    public init(headers: [String]) { self.headers = headers }

    public mutating func append(_ row: [String]) {
        precondition(row.count == headers.count, "a row needs one cell per column")
        rows.append(row)
    }

    public var text: String {
        let widths = headers.indices.map { column in
            ([headers[column]] + rows.map { $0[column] }).map(\.count).max() ?? 0
        }
        func line(_ cells: [String]) -> String {
            zip(cells, widths).map { String(repeating: " ", count: $1 - $0.count) + $0 }.joined(separator: "  ")
        }
        let rule = widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")
        return ([line(headers), rule] + rows.map(line)).joined(separator: "\n")
    }

    /// The same table as Markdown: text columns (those listed in `leftAligned`) to the left,
    /// numbers to the right, padded so it also reads well as plain text.
    public func markdown(leftAligned: Set<Int> = [0]) -> String {
        let widths = headers.indices.map { column in
            max(3, ([headers[column]] + rows.map { $0[column] }).map(\.count).max() ?? 0)
        }
        func line(_ cells: [String]) -> String {
            let padded = cells.enumerated().map { column, cell in
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                return leftAligned.contains(column) ? cell + padding : padding + cell
            }
            return "| " + padded.joined(separator: " | ") + " |"
        }
        let rule = widths.enumerated().map { column, width in
            leftAligned.contains(column) ? ":" + String(repeating: "-", count: width - 1) : String(repeating: "-", count: width - 1) + ":"
        }
        return ([line(headers), "| " + rule.joined(separator: " | ") + " |"] + rows.map(line)).joined(separator: "\n")
    }
}

public enum Format {
    /// `12.3 [11.9]`: median and minimum in milliseconds.
    public static func milliseconds(_ samples: Samples) -> String {
        "\(number(samples.medianMilliseconds)) [\(number(samples.minimumMilliseconds))]"
    }

    /// Three significant digits or more, never scientific: 0.123, 1.23, 12.3, 123, 1234.
    public static func number(_ value: Double) -> String {
        switch abs(value) {
        case ..<1: String(format: "%.3f", value)
        case ..<10: String(format: "%.2f", value)
        case ..<100: String(format: "%.1f", value)
        default: String(format: "%.0f", value)
        }
    }

    public static func ratio(_ value: Double) -> String { String(format: "%.2f×", value) }

    public static func mebibytes(_ bytes: Int) -> String { String(format: "%.2f", Double(bytes) / 1_048_576) }

    /// `10000` → `10,000`.
    public static func count(_ value: Int) -> String {
        let digits = Array(String(value))
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return out
    }
}
