import Glibc

extension CaptureLab.Reply {
    /// The next line from `fd` (bytes past it stay in `buffer`): `.answered` (also for a last
    /// line without its newline before the end of stream), `.closedWithoutAnswer` at an end of
    /// stream with nothing, `.refused` for a reset before any byte, `.timedOut` at the deadline.
    static func readLine(_ fd: Int32, buffer: inout [UInt8], deadline: ContinuousClock.Instant) -> Self {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return .answered(line)
            }
            let remaining = deadline.pollMilliseconds
            if remaining <= 0 { return .timedOut }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, remaining)
            if ready < 0 && errno != EINTR { return .failed(errno: errno) }
            if ready <= 0 { continue }
            let count = recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if count > 0 {
                buffer += chunk[..<count]
            } else if count == 0 || errno == ECONNRESET {
                let reset = count < 0
                defer { buffer = [] }
                if buffer.isEmpty { return reset ? .refused : .closedWithoutAnswer }
                return .answered(String(decoding: buffer, as: UTF8.self))
            } else if errno != EAGAIN && errno != EINTR {
                return .failed(errno: errno)
            }
        }
    }
}
