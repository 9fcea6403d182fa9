import Synchronization

/// A value behind a lock, shared by reference (a `Mutex` alone cannot be captured by closures):
/// what a test collects from callbacks on other threads.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    public init(_ value: Value) { mutex = Mutex(value) }
    public var value: Value { mutex.withLock { $0 } }
    public func mutate(_ body: (inout Value) -> Void) { mutex.withLock { body(&$0) } }
}
