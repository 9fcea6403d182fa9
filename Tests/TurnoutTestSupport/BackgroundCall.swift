import Foundation

/// A call running on a thread of its own while the test goes on (a CLI command that waits, for
/// example), whose result the test collects later with a time limit.
///
/// Start it with `BackgroundCall { … }`; `isFinished` tells whether it ended yet, and
/// `result(within:)` waits for it and returns its value or rethrows its error. A call that
/// outlives the limit is abandoned (its thread keeps running), never waited on forever.
public final class BackgroundCall<Value: Sendable>: Sendable {
    private let slot = ResultSlot<Value>()
    private let done = DispatchSemaphore(value: 0)

    public init(_ body: @escaping @Sendable () throws -> Value) {
        let slot = slot, done = done
        Thread {
            slot.put(Result { try body() })
            done.signal()
        }.start()
    }

    /// Whether the call has returned or thrown.
    public var isFinished: Bool { slot.take() != nil }

    /// The call's value, waiting at most `limit` for it; throws its error, or a
    /// `ServiceLabError` when it did not finish in time.
    public func result(within limit: Duration) throws -> Value {
        let seconds = Double(limit.components.seconds) + Double(limit.components.attoseconds) / 1e18
        guard done.wait(timeout: .now() + seconds) == .success || slot.take() != nil, let result = slot.take() else {
            throw ServiceLabError("a background call did not finish within \(limit)")
        }
        done.signal()  // let a second `result` call return at once too
        return try result.get()
    }
}
