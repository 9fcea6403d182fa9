import Testing
import TurnoutRules

@Suite("Removing adjacent duplicates (how sorted set elements are deduplicated)")
struct AdjacentDuplicatesTests {
    @Test("input → each run of equal neighbours kept once, order kept", arguments: [
        ([], []), ([1], [1]), ([1, 1], [1]), ([1, 2, 3], [1, 2, 3]), ([1, 1, 2, 3, 3, 3], [1, 2, 3]),
        ([1, 2, 2, 3, 4, 4], [1, 2, 3, 4]), ([5, 5, 5, 5], [5]), ([1, 2, 1], [1, 2, 1]),
    ] as [([Int], [Int])])
    func removes(input: [Int], expected: [Int]) {
        #expect(input.removingAdjacentDuplicates() == expected)
        var inPlace = input
        inPlace.removeAdjacentDuplicates()
        #expect(inPlace == expected)
    }
}
