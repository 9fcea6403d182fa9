import FoundationEssentials
import Glibc
import Synchronization
import TurnoutModel
import TurnoutProxy

/// A host name's TCP addresses, found by `getaddrinfo(3)` under a deadline and an interrupt.
///
/// `getaddrinfo` blocks for as long as the resolver's own timeouts (`resolv.conf`'s: 5 s per
/// try by default) and cannot be interrupted. So each lookup runs on a thread of its own, and
/// the caller waits with `poll(2)` on a ``Wakeup`` that thread signals when it is done, beside
/// the caller's interrupt. A caller that gives up (deadline, interrupt) leaves the thread to
/// finish alone: it touches only the ``Lookup`` it shares with the caller, whose descriptor is
/// closed when the last of the two lets go. curl's threaded resolver does the same. Thread-safe. The
/// corresponding C call is `getaddrinfo(3)`; errors are ``HTTPError/Kind``.
enum HostResolver {
    /// The addresses of `host` with `port`, in the order `getaddrinfo` sorted them (RFC 6724:
    /// the ones most likely to work first), IPv4 and IPv6.
    static func addresses(of host: String, port: UInt16, until deadline: ContinuousClock.Instant,
                          interrupt: Int32?) throws(HTTPError.Kind) -> [SocketAddress] {
        let lookup = try Lookup()
        do {
            try JoinableThread { lookup.run(host: host, port: port) }.detach()
        } catch {
            throw .resolve("cannot resolve \(host): \(error)")
        }
        try HTTPExchange.wait(lookup.done.descriptor, for: Int16(POLLIN), until: deadline, interrupt: interrupt,
                              phase: HTTPExchange.resolvingPhase)
        switch lookup.result.withLock({ $0 }) {
        case .success(let addresses): return addresses
        case .failure(let reason): throw .resolve("cannot resolve \(host): \(reason)")
        case nil: throw .resolve("cannot resolve \(host): the lookup ended without an answer")
        }
    }

    /// One lookup, shared by the caller and the resolving thread.
    private final class Lookup: Sendable {
        enum Outcome: Sendable { case success([SocketAddress]), failure(String) }

        let result = Mutex<Outcome?>(nil)
        /// Signalled once `result` is set.
        let done: Wakeup

        init() throws(HTTPError.Kind) {
            do {
                done = try Wakeup()
            } catch {
                throw .transfer(error)
            }
        }

        /// Runs `getaddrinfo`, stores what it found and wakes the caller.
        func run(host: String, port: UInt16) {
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_flags = AI_NUMERICSERV
            var list: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(host, "\(port)", &hints, &list)
            let outcome: Outcome
            if status != 0 {
                outcome = .failure(status == EAI_SYSTEM ? String(cString: strerror(errno)) : String(cString: gai_strerror(status)))
            } else {
                var addresses: [SocketAddress] = []
                var entry = list
                while let current = entry?.pointee {
                    if let raw = current.ai_addr, Int(current.ai_addrlen) <= MemoryLayout<sockaddr_storage>.size {
                        var storage = sockaddr_storage()
                        withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: Int(current.ai_addrlen))) }
                        if let address = SocketAddress(storage: storage), !addresses.contains(address) { addresses.append(address) }
                    }
                    entry = current.ai_next
                }
                freeaddrinfo(list)
                outcome = addresses.isEmpty ? .failure("no IPv4 or IPv6 address") : .success(addresses)
            }
            result.withLock { $0 = outcome }
            done.signal()
        }
    }
}
