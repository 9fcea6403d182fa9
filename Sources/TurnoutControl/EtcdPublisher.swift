import TurnoutModel

/// Makes etcd hold a table (``EtcdTableLayout``) in one transaction: what `turnout publish`
/// does.
///
/// Reads every key under the prefix first, then puts only the keys whose value differs and
/// deletes the keys the table no longer has, all in one `/v3/kv/txn`, so a watcher sees the old
/// table or the new one, never half of each, and publishing the same table twice writes
/// nothing. The transaction is guarded: it applies only if no key under the prefix was created
/// or changed since the read; when another writer got in between, it reads and tries again (at
/// most ``attempts`` times). A key another writer deletes in that window is not seen by the
/// guard (etcd compares existing keys only); publish is meant to be the table's one writer.
///
/// etcd refuses a transaction of more than its `--max-txn-ops` operations (128 by default), and
/// the change is never split into several transactions (watchers would see the parts): a
/// change larger than `maximumOperations` throws ``Failure/tooManyOperations(needed:limit:)``
/// before anything is written. Blocks the calling thread; errors name etcd's URL.
public enum EtcdPublisher {
    /// How often a transaction that lost to another writer is re-planned and tried again.
    public static let attempts = 3

    /// The keys a publish changes, against what etcd held.
    public struct Plan: Sendable, Hashable {
        /// Keys to put (new or changed), sorted, with their values.
        public var puts: [String]
        public var values: [String: String]
        /// Keys under the prefix that the table does not have, sorted.
        public var deletes: [String]
        /// Keys whose value already equals the table's.
        public var unchanged: Int

        public var operationCount: Int { puts.count + deletes.count }
    }

    /// What a publish did.
    public struct Outcome: Sendable, Hashable {
        public var plan: Plan
        /// etcd's revision after the write, or the revision read when nothing was written.
        public var revision: Int64
    }

    /// Why a publish wrote nothing; `description` says what to do about it.
    public enum Failure: Error, Sendable, CustomStringConvertible {
        case etcd(EtcdError)
        case tooManyOperations(needed: Int, limit: Int)
        /// Another writer changed the keys during every attempt.
        case contended(url: String, attempts: Int)
        /// The table cannot be laid out (two endpoints would share a key).
        case layout(ValueError)

        public var description: String {
            switch self {
            case .etcd(let error):
                "\(error)"
            case .tooManyOperations(let needed, let limit):
                "the change needs \(needed) operations in one etcd transaction, more than \(limit) "
                    + "(etcd's --max-txn-ops, 128 by default); nothing was written. Raise --max-txn-ops on every etcd "
                    + "member and pass the same --max-txn-ops to turnout publish, or get there through intermediate tables that each change fewer keys."
            case .contended(let url, let attempts):
                "etcd \(url): the table's keys changed under another writer during each of \(attempts) attempts; nothing was written"
            case .layout(let error):
                "\(error)"
            }
        }
    }

    /// The puts and deletes that turn `current` (every key under the prefix and its value)
    /// into `table`. Pure.
    public static func plan(_ table: ServiceTable, layout: EtcdTableLayout = .standard,
                            current: [String: [UInt8]]) throws(ValueError) -> Plan {
        let wanted = try layout.entries(for: table)
        let puts = wanted.filter { key, value in current[key] != Array(value.utf8) }.keys.sorted()
        let deletes = current.keys.filter { wanted[$0] == nil }.sorted()
        return Plan(puts: puts, values: Dictionary(uniqueKeysWithValues: puts.map { ($0, wanted[$0] ?? "") }), deletes: deletes,
                    unchanged: wanted.count - puts.count)
    }

    /// Writes `table` into etcd; see the type's description.
    public static func publish(_ table: ServiceTable, to client: EtcdClient, layout: EtcdTableLayout = .standard,
                               maximumOperations: Int = 128) throws(Failure) -> Outcome {
        for _ in 0..<attempts {
            let range = try etcd { () throws(EtcdError) in try client.range(prefix: layout.prefix) }
            let current = Dictionary(range.keyValues.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
            let plan: Plan
            do {
                plan = try Self.plan(table, layout: layout, current: current)
            } catch {
                throw .layout(error)
            }
            if plan.operationCount == 0 { return Outcome(plan: plan, revision: range.revision) }
            guard plan.operationCount <= maximumOperations else {
                throw .tooManyOperations(needed: plan.operationCount, limit: maximumOperations)
            }
            let operations = plan.puts.map { EtcdClient.Operation.put(key: $0, value: Array((plan.values[$0] ?? "").utf8)) }
                + plan.deletes.map { EtcdClient.Operation.delete(key: $0) }
            let result = try etcd { () throws(EtcdError) in
                try client.transaction(operations, prefix: layout.prefix, unchangedSince: range.revision)
            }
            if result.succeeded { return Outcome(plan: plan, revision: result.revision) }
        }
        throw .contended(url: client.url, attempts: attempts)
    }

    private static func etcd<Answer>(_ call: () throws(EtcdError) -> Answer) throws(Failure) -> Answer {
        do {
            return try call()
        } catch {
            throw .etcd(error)
        }
    }
}
