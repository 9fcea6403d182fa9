import Testing
import TurnoutModel

@Suite("Numbers and whitespace in printed text")
struct TextFormattingTests {
    @Test("a double → its text with a fixed number of fraction digits, as printf's %.Nf", arguments: [
        (12.345, 1, "12.3"), (0.05, 1, "0.1"), (0.04, 1, "0.0"), (-0.04, 1, "0.0"), (-2.5, 1, "-2.5"),
        (999.96, 1, "1000.0"), (3.0, 0, "3"), (1.0 / 3.0, 3, "0.333"), (0.001, 3, "0.001"), (7, 2, "7.00"),
    ] as [(Double, Int, String)])
    func decimal(_ value: Double, _ digits: Int, _ text: String) {
        #expect(value.decimalText(fractionDigits: digits) == text)
    }

    @Test("text → the same text without the whitespace around it", arguments: [
        ("  a b \n", "a b"), ("\t\n", ""), ("x", "x"), (" 0000000000003000\n", "0000000000003000"),
    ])
    func trimmed(_ text: String, _ expected: String) {
        #expect(text.trimmedWhitespace == expected)
    }

    @Test("a table row → the row without the padding after its last cell")
    func trailing() {
        #expect("name  3  4    ".droppingTrailingWhitespace == "name  3  4")
        #expect("  ".droppingTrailingWhitespace == "")
    }
}
