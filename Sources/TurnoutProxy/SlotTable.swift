/// Values found by an id without hashing: the id carries the value's slot in an array and a
/// generation, so an id whose value is gone (its slot reused since) finds nothing. A worker
/// keeps its relays in one and puts the id in every epoll token, so a late event for a closed
/// relay is dropped.
///
/// Owned by one thread; not Sendable. Freed slots are reused most recent first, so live values
/// stay packed at the front. Ids are below 2^59 (a 39-bit generation, wrapping, over a 20-bit
/// slot): a relay's token adds 4 bits and must stay below the worker's listener tokens at the
/// top of the 64-bit range.
struct SlotTable<Value> {
    /// Bits of an id that name the slot: 2^20 values, well above the relays a worker can hold
    /// (each holds two descriptors).
    static var slotBits: UInt64 { 20 }
    private static var slotMask: UInt64 { (1 << slotBits) - 1 }

    private var slots: [(id: UInt64, value: Value)?] = []
    private var free: [Int] = []
    private var generation: UInt64 = 0
    private(set) var count = 0

    /// The id the next ``insert(_:id:)`` must use: reserve it, build the value with it, insert.
    mutating func reserveID() -> UInt64 {
        generation = (generation + 1) & ((1 << 39) - 1)
        let slot = free.last ?? slots.count
        precondition(UInt64(slot) <= Self.slotMask, "SlotTable: more than 2^20 values")
        return generation << Self.slotBits | UInt64(slot)
    }

    /// Stores `value` under the id ``reserveID()`` just returned.
    mutating func insert(_ value: Value, id: UInt64) {
        let slot = Int(id & Self.slotMask)
        if slot == slots.count {
            slots.append((id, value))
        } else {
            precondition(free.last == slot && slots[slot] == nil, "SlotTable: insert without reserveID")
            free.removeLast()
            slots[slot] = (id, value)
        }
        count += 1
    }

    /// The value stored under `id`, if it is still there.
    subscript(id: UInt64) -> Value? {
        let slot = Int(id & Self.slotMask)
        guard slot < slots.count, let entry = slots[slot], entry.id == id else { return nil }
        return entry.value
    }

    /// Removes the value stored under `id`; false when it was gone already.
    @discardableResult
    mutating func remove(_ id: UInt64) -> Bool {
        let slot = Int(id & Self.slotMask)
        guard slot < slots.count, let entry = slots[slot], entry.id == id else { return false }
        slots[slot] = nil
        free.append(slot)
        count -= 1
        return true
    }

    /// Every value, in slot order (a copy: the caller may remove while going through it).
    var values: [Value] { slots.compactMap { $0?.value } }
}
