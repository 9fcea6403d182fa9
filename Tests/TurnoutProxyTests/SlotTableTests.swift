import Testing
@testable import TurnoutProxy

/// The worker's relay table: ids find their value until it is removed, and never after, even
/// when the slot is reused.
@Suite("SlotTable: ids with slot and generation")
struct SlotTableTests {
    @Test("insert a, b → both found by their ids; count 2; values in slot order")
    func insertAndFind() {
        var table = SlotTable<String>()
        let a = table.reserveID()
        table.insert("a", id: a)
        let b = table.reserveID()
        table.insert("b", id: b)
        #expect(table[a] == "a" && table[b] == "b")
        #expect(table.count == 2)
        #expect(table.values == ["a", "b"])
    }

    @Test("remove a, insert c → c reuses a's slot; a's old id finds nothing; removing it again is false")
    func staleIDAfterReuse() {
        var table = SlotTable<String>()
        let a = table.reserveID()
        table.insert("a", id: a)
        let removed = table.remove(a)
        #expect(removed)
        let c = table.reserveID()
        table.insert("c", id: c)
        #expect(c & ((1 << SlotTable<String>.slotBits) - 1) == a & ((1 << SlotTable<String>.slotBits) - 1))
        #expect(c != a)
        #expect(table[a] == nil)
        #expect(table[c] == "c")
        let removedAgain = table.remove(a)
        #expect(!removedAgain)
        #expect(table.count == 1)
    }

    @Test("an id beyond every slot, or of an empty slot → nil")
    func unknownIDs() {
        var table = SlotTable<Int>()
        #expect(table[12345] == nil)
        let a = table.reserveID()
        table.insert(1, id: a)
        table.remove(a)
        #expect(table[a] == nil)
        #expect(table.values.isEmpty)
    }

    @Test("1,000 inserted, every other removed, 500 inserted → 1,000 live, every live id finds its own value")
    func churn() {
        var table = SlotTable<Int>()
        var live: [UInt64: Int] = [:]
        var ids: [UInt64] = []
        for value in 0..<1000 {
            let id = table.reserveID()
            table.insert(value, id: id)
            live[id] = value
            ids.append(id)
        }
        for id in ids.enumerated().filter({ $0.offset % 2 == 0 }).map(\.element) {
            table.remove(id)
            live[id] = nil
        }
        for value in 1000..<1500 {
            let id = table.reserveID()
            table.insert(value, id: id)
            live[id] = value
        }
        #expect(table.count == 1000)
        #expect(live.allSatisfy { table[$0.key] == $0.value })
        #expect(ids.enumerated().filter { $0.offset % 2 == 0 }.allSatisfy { table[$0.element] == nil })
        #expect(table.values.count == 1000)
    }
}
