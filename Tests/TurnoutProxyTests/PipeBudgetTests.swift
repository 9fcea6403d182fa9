import Testing
@testable import TurnoutProxy

/// The pipe budget: which pipe a pool may make at each level of use, and what `.automatic`
/// comes to for a uid's allowance.
@Suite("pipe budget: 1 MiB pipes up to half, 64 KiB pipes up to all, then none")
struct PipeBudgetTests {
    static let mebibyte = 1 << 20
    static let large = PipeAccount.Grant(request: 1 << 20, bytes: 1 << 20)
    static let standard = PipeAccount.Grant(request: 0, bytes: 65_536)

    /// Grants until the account refuses (at most `limit` asks), each pipe made at the size granted.
    static func drain(_ account: PipeAccount, limit: Int = 1000) -> [PipeAccount.Grant] {
        var grants: [PipeAccount.Grant] = []
        while grants.count < limit, let grant = account.reserve(now: 0) {
            account.settle(grant, capacity: grant.bytes)
            grants.append(grant)
        }
        return grants
    }

    @Test("budget 4 MiB, 1 MiB pipes → 2 of 1 MiB (half), then 32 of 64 KiB, then refused; peak 4 MiB")
    func tiers() {
        let account = PipeAccount(limit: 4 * Self.mebibyte, preferredSize: 1 << 20, pageSize: 4096)
        let grants = Self.drain(account)
        #expect(grants == Array(repeating: Self.large, count: 2) + Array(repeating: Self.standard, count: 32))
        #expect(account.bytesHeld == 4 * Self.mebibyte)
        #expect(account.bytesPeak == 4 * Self.mebibyte)
    }

    @Test("a 1 MiB pipe closed while above half → the next grant is 64 KiB, not 1 MiB; below half again → 1 MiB")
    func releaseReturnsToTiers() {
        let account = PipeAccount(limit: 4 * Self.mebibyte, preferredSize: 1 << 20, pageSize: 4096)
        _ = Self.drain(account)
        account.release(Self.mebibyte)
        #expect(account.reserve(now: 0) == Self.standard)
        account.release(3 * Self.mebibyte)
        #expect(account.reserve(now: 0) == Self.large)
    }

    @Test("kernel default pipes asked for (--pipe-size 0), budget 256 KiB → 4 of 64 KiB, then refused")
    func defaultSizeOnly() {
        let account = PipeAccount(limit: 262_144, preferredSize: 0, pageSize: 4096)
        #expect(Self.drain(account) == Array(repeating: Self.standard, count: 4))
    }

    @Test("budget 0 → no pipe at all (every bulk byte is copied)")
    func zeroBudget() {
        let account = PipeAccount(limit: 0, preferredSize: 1 << 20, pageSize: 4096)
        #expect(account.reserve(now: 0) == nil)
    }

    @Test("no budget → always 1 MiB")
    func unlimited() {
        let account = PipeAccount(limit: nil, preferredSize: 1 << 20, pageSize: 4096)
        #expect(Self.drain(account, limit: 100) == Array(repeating: Self.large, count: 100))
    }

    @Test("the kernel made a pipe smaller than asked at 1 MiB held → no grant beyond what is held for 5 s; after it, grants again")
    func kernelRefusalHolds() {
        let account = PipeAccount(limit: nil, preferredSize: 1 << 20, pageSize: 4096)
        #expect(account.reserve(now: 0) == Self.large)
        let refused = Self.large
        #expect(account.reserve(now: 0) == refused)
        account.settle(refused, capacity: 8192)
        account.release(8192)
        account.kernelRefused(now: 1_000)
        #expect(account.bytesHeld == Self.mebibyte)
        #expect(account.reserve(now: 1_000 + 4_999_999_999) == nil)
        account.release(Self.mebibyte)
        // Below the held mark again: room for what was held (1 MiB), half of which is 512 KiB.
        #expect(account.reserve(now: 2_000) == Self.standard)
        #expect(account.reserve(now: 1_000 + PipeAccount.kernelCeilingHold) == Self.large)
    }

    @Test("a pipe the kernel made larger than asked (rounded up to a power of two pages) → charged at its capacity")
    func settleFollowsCapacity() {
        let account = PipeAccount(limit: nil, preferredSize: 100_000, pageSize: 4096)
        let grant = account.reserve(now: 0)
        #expect(grant == PipeAccount.Grant(request: 100_000, bytes: 100_000))
        account.settle(grant!, capacity: 131_072)
        #expect(account.bytesHeld == 131_072)
        #expect(account.bytesPeak == 131_072)
    }

    @Test("1 MiB granted, the kernel made 64 KiB (its resize refused) → held and peak 64 KiB: the peak counts pipes that exist, not grants")
    func peakFollowsWhatExists() {
        let account = PipeAccount(limit: nil, preferredSize: 1 << 20, pageSize: 4096)
        let grant = account.reserve(now: 0)
        #expect(grant == Self.large)
        account.settle(grant!, capacity: 65_536)
        #expect(account.bytesHeld == 65_536)
        #expect(account.bytesPeak == 65_536)
    }

    struct Allowance: Sendable, CustomTestStringConvertible {
        let softPages: Int?
        let privileged: Bool
        let limit: Int?
        var testDescription: String { "soft \(softPages.map(String.init) ?? "unreadable") pages, privileged \(privileged) → \(limit.map(String.init) ?? "no limit")" }
    }

    @Test("automatic: 3/4 of the uid's allowance; none when privileged, the allowance is off, or unreadable", arguments: [
        Allowance(softPages: 16_384, privileged: false, limit: 48 << 20),
        Allowance(softPages: 16_384, privileged: true, limit: nil),
        Allowance(softPages: 0, privileged: false, limit: nil),
        Allowance(softPages: nil, privileged: false, limit: nil),
        Allowance(softPages: 1_000, privileged: false, limit: 3_072_000),
    ])
    func automatic(_ example: Allowance) {
        #expect(PipeBudget.automaticLimit(softPages: example.softPages, pageSize: 4096, privileged: example.privileged) == example.limit)
    }
}
