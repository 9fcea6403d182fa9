import Glibc

/// The wall clock as seconds since 1970: what install times are stamped with (`/stats`, the
/// status file) and what `turnout status` compares them with. Not for measuring intervals
/// (it jumps when the clock is set); the corresponding C call is `clock_gettime(CLOCK_REALTIME)`.
public enum WallClock {
    public static func now() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
