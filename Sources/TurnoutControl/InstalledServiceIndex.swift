import TurnoutModel
import TurnoutNetlink
import TurnoutRules

/// What a long-lived `NftablesBackend` last wrote, service by service: enough to turn the next
/// table into a patch by recompiling and comparing only the services that changed.
///
/// A one-endpoint change in a 10,000-service table then costs one service's compile, one merge
/// walk over the two name-sorted service lists (unchanged services share storage with the
/// previous table, so most comparisons are by identity) and a handful of netlink messages,
/// instead of compiling, lowering and comparing the whole table.
///
/// Valid only while the kernel's ruleset generation is the one recorded here, that is while
/// nothing else has committed since Turnout wrote; the backend checks that before every patch
/// and otherwise goes back to reading the table. A plain value: the backend owns it.
struct InstalledServiceIndex {
    let options: ServiceCompilerOptions
    /// The ruleset generation right after Turnout's last commit.
    var generation: UInt32
    /// The digest of the table as installed (what the apply record holds).
    private(set) var digest: WireDigest
    /// The services last applied, sorted by name (as `ServiceTable` keeps them), and what each
    /// compiled to.
    private var services: [Service]
    private var rules: [ServiceName: ServiceRules]
    /// How many services add each shared element and use each shared chain.
    private var sharedElementUses: [SetMember: Int]
    private var sharedChainUses: [SharedChain: Int]
    private var elementCounts: [String: Int]
    private var tableElements: Int
    private let lowering: ServiceLowering

    /// A patch and what committing it changes in the index.
    struct Patch {
        var delta: TableDelta
        fileprivate var services: [Service]
        fileprivate var rules: [(ServiceName, ServiceRules?)]
        fileprivate var sharedElementUses: [(SetMember, Int?)]
        fileprivate var sharedChainUses: [(SharedChain, Int?)]
        fileprivate var elementCounts: [String: Int]
        fileprivate var tableElements: Int
        fileprivate var digest: WireDigest

        /// Services added, removed or changed.
        var changedServices: Int { rules.count }
    }

    /// Indexes `table`, whose services compiled to `rules` (same order) and whose whole table
    /// `written` is now installed at `generation`.
    init(table: ServiceTable, rules: [ServiceRules], options: ServiceCompilerOptions, written: WireTable,
         digest: WireDigest, generation: UInt32) {
        self.options = options
        self.generation = generation
        self.digest = digest
        lowering = ServiceLowering(options: options)
        services = table.services
        self.rules = Dictionary(minimumCapacity: table.services.count)
        sharedElementUses = [:]
        sharedChainUses = [:]
        for (service, rules) in zip(table.services, rules) {
            self.rules[service.name] = rules
            for member in rules.sharedElements { sharedElementUses[member, default: 0] += 1 }
            for chain in rules.sharedChains { sharedChainUses[chain, default: 0] += 1 }
        }
        elementCounts = Dictionary(uniqueKeysWithValues: written.sets.map { ($0.name, $0.elements.count) })
        tableElements = written.elementCount
    }

    /// Records that `patch` was committed, leaving the kernel at `generation`.
    mutating func commit(_ patch: Patch, generation: UInt32) {
        services = patch.services
        for (name, compiled) in patch.rules { rules[name] = compiled }
        for (member, uses) in patch.sharedElementUses { sharedElementUses[member] = uses }
        for (chain, uses) in patch.sharedChainUses { sharedChainUses[chain] = uses }
        elementCounts = patch.elementCounts
        tableElements = patch.tableElements
        digest = patch.digest
        self.generation = generation
    }

    /// The patch from what is installed to `table`; `nil` when a patch is the wrong tool (an
    /// affinity set changes its timeout, a hash set outgrows or shrinks out of its capacity
    /// class or would overflow it before the retire, or deleting from an interval map would
    /// cost more than a rebuild), so the caller compiles the whole table and lets `TableDelta`
    /// decide.
    func patch(to table: ServiceTable) -> Patch? {
        // Both lists are sorted by name: one merge walk finds what was added, removed or changed.
        // Unchanged services share storage with the previous table, so most comparisons are by
        // identity and nothing is hashed.
        var changed: [(old: ServiceRules?, new: ServiceRules?)] = []
        var compiled: [(ServiceName, ServiceRules?)] = []
        let before = services
        let after = table.services
        var (i, j) = (0, 0)
        while i < before.count || j < after.count {
            // Equal names (the common case) are settled by `==`, which is cheaper than `<`.
            let sameName = i < before.count && j < after.count && before[i].name == after[j].name
            if !sameName && (j == after.count || (i < before.count && before[i].name < after[j].name)) {
                changed.append((rules[before[i].name], nil))
                compiled.append((before[i].name, nil))
                i += 1
            } else if !sameName {
                let new = NftablesServiceCompiler.rules(for: after[j], options: options)
                changed.append((nil, new))
                compiled.append((after[j].name, new))
                j += 1
            } else {
                if before[i] != after[j] {
                    let new = NftablesServiceCompiler.rules(for: after[j], options: options)
                    changed.append((rules[before[i].name], new))
                    compiled.append((after[j].name, new))
                }
                i += 1
                j += 1
            }
        }
        var next = Patch(delta: TableDelta(patching: lowering.skeleton, addedChains: [], changedChains: [], removedChains: [],
                                           addedSets: [], removedSets: [], elementChanges: []),
                         services: after, rules: compiled, sharedElementUses: [], sharedChainUses: [],
                         elementCounts: elementCounts, tableElements: tableElements, digest: digest)
        guard !changed.isEmpty else { return next }

        // Own elements: removed and added per set, an element in both left alone.
        var removedMembers: [SetMember] = []
        var addedMembers: [SetMember] = []
        for (old, new) in changed {
            let before = old?.elements ?? []
            let after = new?.elements ?? []
            let kept = Set(before).intersection(after)
            removedMembers += before.filter { !kept.contains($0) }
            addedMembers += after.filter { !kept.contains($0) }
        }
        // Shared elements and chains: only the first user adds one, only the last one deletes it.
        var touched: [SetMember: Int] = [:]
        var touchedChains: [SharedChain: Int] = [:]
        for (old, new) in changed {
            for member in old?.sharedElements ?? [] { touched[member, default: 0] -= 1 }
            for member in new?.sharedElements ?? [] { touched[member, default: 0] += 1 }
            for chain in old?.sharedChains ?? [] { touchedChains[chain, default: 0] -= 1 }
            for chain in new?.sharedChains ?? [] { touchedChains[chain, default: 0] += 1 }
        }
        for (member, change) in touched where change != 0 {
            let before = sharedElementUses[member] ?? 0
            let after = before + change
            next.sharedElementUses.append((member, after == 0 ? nil : after))
            if before == 0 { addedMembers.append(member) } else if after == 0 { removedMembers.append(member) }
        }
        // A shared chain comes and goes with its maps, which are empty when it comes and hold
        // its last user's elements until the retire that deletes them (`TableDelta.Phase`).
        var addedChains: [WireChain] = []
        var changedChains: [WireChain] = []
        var removedChains: [WireChain] = []
        var addedSets: [WireSet] = []
        var removedSets: [WireSet] = []
        for (chain, change) in touchedChains where change != 0 {
            let before = sharedChainUses[chain] ?? 0
            let after = before + change
            next.sharedChainUses.append((chain, after == 0 ? nil : after))
            if before == 0 {
                addedChains.append(lowering.lower(chain))
                addedSets += lowering.sets(of: chain)
            } else if after == 0 {
                removedChains.append(lowering.lower(chain))
                removedSets += lowering.sets(of: chain)
            }
        }

        // Own chains and sets (client-IP affinity): compared by name within each service.
        for (old, new) in changed where !(old?.chains.isEmpty ?? true) || !(new?.chains.isEmpty ?? true) {
            let before = old.map(lowering.objects)
            let after = new.map(lowering.objects)
            let oldChains = Dictionary(uniqueKeysWithValues: (before?.chains ?? []).map { ($0.name, $0) })
            let newChains = Dictionary(uniqueKeysWithValues: (after?.chains ?? []).map { ($0.name, $0) })
            for (name, chain) in newChains {
                guard let current = oldChains[name] else { addedChains.append(chain); continue }
                if current != chain {
                    changedChains.append(chain)
                    next.digest.remove(current)
                    next.digest.add(chain)
                }
            }
            removedChains += oldChains.filter { newChains[$0.key] == nil }.map(\.value)
            let oldSets = Dictionary(uniqueKeysWithValues: (before?.sets ?? []).map { ($0.name, $0) })
            let newSets = Dictionary(uniqueKeysWithValues: (after?.sets ?? []).map { ($0.name, $0) })
            for (name, set) in newSets {
                guard let current = oldSets[name] else { addedSets.append(set); continue }
                if current != set { return nil }  // a new timeout: the set must be replaced, not patched
            }
            removedSets += oldSets.filter { newSets[$0.key] == nil }.map(\.value)
        }

        // Lower only what is sent, grouped per set. The shared chains' maps that elements go to
        // or leave are declared with the skeleton, whose set kinds the phases are chosen by.
        let touchedShared = Set(touchedChains.keys)
        let skeleton = lowering.skeleton(with: touchedShared.sorted())
        var removedBySet: [String: [WireElement]] = [:]
        var addedBySet: [String: [WireElement]] = [:]
        for member in lowering.lower(removedMembers, sharedChains: touchedShared) { removedBySet[member.set, default: []].append(member.element) }
        for member in lowering.lower(addedMembers, sharedChains: touchedShared) { addedBySet[member.set, default: []].append(member.element) }
        // A map deleted with its chain takes its elements with it: they are not sent one by one
        // (which would cost a pipapo map a rewrite each), only taken out of the counts and digest.
        let deletedSets = Set(removedSets.map(\.name))
        let pipapoDeletions = removedBySet.compactMap { set, removed -> (removed: Int, setSize: Int)? in
            skeleton.set(named: set)?.isPipapo == true && !deletedSets.contains(set) ? (removed.count, elementCounts[set] ?? 0) : nil
        }
        let addedCount = addedBySet.values.reduce(0) { $0 + $1.count }
        let removedCount = removedBySet.values.reduce(0) { $0 + $1.count }
        if TableDelta.rebuildReason(pipapoDeletions: pipapoDeletions, tableElements: tableElements + addedCount - removedCount) != nil {
            return nil
        }

        for (set, elements) in removedBySet {
            next.elementCounts[set, default: 0] -= elements.count
            for element in elements { next.digest.remove(element, in: set) }
        }
        for (set, elements) in addedBySet {
            next.elementCounts[set, default: 0] += elements.count
            for element in elements { next.digest.add(element, in: set) }
        }
        // A map added or deleted with its chain is sized for what it will hold or held, as the
        // whole table's lowering sizes it.
        let addedSetNames = Set(addedSets.map(\.name))
        func sized(_ set: WireSet, elements: Int) -> WireSet {
            guard set.capacity != nil else { return set }
            var sized = set
            sized.capacity = UInt32(NamedSet.capacity(forElements: elements))
            return sized
        }
        addedSets = addedSets.map { sized($0, elements: next.elementCounts[$0.name] ?? 0) }
        removedSets = removedSets.map { sized($0, elements: elementCounts[$0.name] ?? 0) }
        // A sized hash set that stays and whose count crosses a power of two changes its
        // definition: the kernel cannot resize it in place, so the whole table is rebuilt.
        for set in Set(removedBySet.keys).union(addedBySet.keys).subtracting(deletedSets).subtracting(addedSetNames)
        where skeleton.set(named: set)?.capacity != nil {
            if NamedSet.capacity(forElements: elementCounts[set] ?? 0) != NamedSet.capacity(forElements: next.elementCounts[set] ?? 0) {
                return nil
            }
        }
        next.tableElements += addedCount - removedCount
        for chain in addedChains { next.digest.add(chain) }
        for chain in removedChains { next.digest.remove(chain) }
        for set in addedSets { next.digest.add(set) }
        for set in removedSets { next.digest.remove(set) }

        let sets = Set(removedBySet.keys).subtracting(deletedSets).union(addedBySet.keys).sorted()
        let byName: (WireChain, WireChain) -> Bool = { $0.name < $1.name }
        next.delta = TableDelta(patching: skeleton, addedChains: addedChains.sorted(by: byName),
                               changedChains: changedChains.sorted(by: byName), removedChains: removedChains.map(\.name).sorted(),
                               addedSets: addedSets.sorted { $0.name < $1.name }, removedSets: removedSets.sorted { $0.name < $1.name },
                               elementChanges: sets.map { TableDelta.ElementChange(set: $0, removed: removedBySet[$0] ?? [], added: addedBySet[$0] ?? []) })
        // Keys that disappear stay until the retire: a sized set must have room for the new
        // ones beside them, or the whole-table compare rebuilds it.
        let overflow = next.delta.overflowReason { set in
            guard skeleton.set(named: set)?.capacity != nil, !addedSetNames.contains(set), let count = elementCounts[set] else { return nil }
            return (count, NamedSet.capacity(forElements: count))
        }
        if overflow != nil { return nil }
        return next
    }
}
