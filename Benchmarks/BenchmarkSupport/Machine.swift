import Foundation

/// What a report's header says about the build and the machine it ran on.
public enum Machine {
    /// `release build` or a warning that a debug build's timings mean little.
    public static var build: String {
        #if DEBUG
        "DEBUG build (timings are not representative; use -c release)"
        #else
        "release build"
        #endif
    }

    /// `2 cores (Intel Xeon …)`.
    public static var cores: String {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        return "\(cores) cores" + (cpuModel.map { " (\($0))" } ?? "")
    }

    /// The CPU's marketing name from /proc/cpuinfo, if there is one.
    public static var cpuModel: String? {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        for line in info.split(separator: "\n") where line.hasPrefix("model name") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            return line[line.index(after: colon)...].split(separator: " ").joined(separator: " ")
        }
        return nil
    }

    /// The running kernel's release, e.g. `6.1.0-18-amd64`.
    public static var kernel: String? {
        (try? String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A count argument: `1000`, `10k`, `1_000`, `1m`.
public func parseCount(_ text: String) -> Int? {
    var digits = text.lowercased().replacing("_", with: "")
    var scale = 1
    if digits.hasSuffix("k") { scale = 1_000 } else if digits.hasSuffix("m") { scale = 1_000_000 }
    if scale != 1 { digits.removeLast() }
    guard let number = Int(digits) else { return nil }
    let (product, overflow) = number.multipliedReportingOverflow(by: scale)
    return overflow ? nil : product
}
