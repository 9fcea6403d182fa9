import Glibc
import TurnoutModel

/// A wake-up one thread sends to another that sleeps in `poll(2)` or `epoll_wait(2)`: an
/// eventfd whose counter any number of ``signal()`` calls make readable until ``drain()``.
///
/// Sendable: ``signal()`` may be called from any thread, any number of times (a full counter
/// already wakes the sleeper, so it never blocks or fails). The sleeping thread polls
/// ``descriptor`` for `POLLIN` (or adds it to its epoll), or calls ``wait(until:)``. The
/// descriptor is closed when the last reference goes, so a late `signal()` can never write to a
/// descriptor number reused meanwhile. The corresponding C calls are `eventfd(2)`, `write(2)`,
/// `read(2)` and `poll(2)`.
public final class Wakeup: Sendable {
    /// Readable while a wake-up is pending; lent for polling only (never close it).
    public let descriptor: Int32

    public init() throws(SystemCallError) {
        descriptor = try Syscalls.eventDescriptor()
    }

    deinit { close(descriptor) }

    /// Wakes the sleeper (or the next one to sleep).
    public func signal() {
        Syscalls.signal(eventDescriptor: descriptor)
    }

    /// Takes every pending wake-up, so the next poll sleeps again.
    public func drain() {
        Syscalls.drain(eventDescriptor: descriptor)
    }

    /// Sleeps until a wake-up or `deadline` (nil: no deadline); true when woken (the wake-up is
    /// taken). Throws only when `poll(2)` fails, which only a kernel out of memory makes it do.
    public func wait(until deadline: ContinuousClock.Instant?) throws(SystemCallError) -> Bool {
        var entries = [pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)]
        let woken = try Syscalls.waitForAny(&entries, until: deadline ?? .now + .seconds(86_400)) > 0
        if woken { drain() }
        return woken
    }
}
