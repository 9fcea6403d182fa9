import TurnoutModel

/// Brings one rule's text (everything after `-A CHAIN`) to the form `iptables-save` prints it in,
/// so the rules Turnout renders can be compared with the rules the kernel holds.
///
/// iptables stores a rule as binary match and target data and prints it back from that data, so
/// the text differs from what was given: header options come first in a fixed order (`-s -d -i
/// -o -p -f`), addresses carry a prefix length and are masked, comments are quoted only when they
/// need it, a `statistic` probability is stored as a 31-bit fraction and printed with eleven
/// decimals, `MARK --or-mark/--xor-mark` print as `--set-xmark value/mask`, `recent` prints its
/// options in its own order with the defaults spelled out, `REJECT` prints its default. Matches
/// keep the order they were given in. The result is deterministic and a fixed point: the
/// canonical form of a canonical rule is itself, which is what lets both sides of a comparison go
/// through it. Options of modules this file does not know are kept as written.
enum IptablesRuleText {
    // MARK: - canonical form

    static func canonical(_ spec: some StringProtocol, family: IPFamily) -> String {
        let rule = ParsedRule(words: words(spec))
        var out: [String] = []
        for key in ["-s", "-d", "-i", "-o", "-p", "-f"] {
            guard let option = rule.header[key] else { continue }
            if option.negated { out.append("!") }
            out.append(key)
            switch key {
            case "-s", "-d": out.append(address(option.value, family: family))
            case "-p": out.append(protocolName(option.value))
            case "-f": break
            default: out.append(option.value)
            }
        }
        for match in rule.matches {
            out += ["-m", match.name] + canonicalMatch(match, family: family)
        }
        if let target = rule.target {
            out += [target.isGoto ? "-g" : "-j", target.name] + canonicalTarget(target, family: family)
        }
        return out.joined(separator: " ")
    }

    /// The chain a rule jumps or goes to, when its target is a chain (or any target name).
    static func target(of spec: some StringProtocol) -> String? {
        ParsedRule(words: words(spec)).target?.name
    }

    // MARK: - words and quoting

    /// Splits a line as iptables-restore does: on blanks, except inside double quotes, where a
    /// backslash takes the next character literally. A closing quote ends the word.
    static func words(_ text: some StringProtocol) -> [String] {
        // Bytes, not Characters: only ASCII separators matter, and this runs for every rule line.
        let space = UInt8(ascii: " "), tab = UInt8(ascii: "\t"), newline = UInt8(ascii: "\n")
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        var words: [String] = [], word: [UInt8] = [], quoted = false, escaped = false, started = false
        func finish() {
            words.append(String(decoding: word, as: UTF8.self))
            word.removeAll(keepingCapacity: true)
            started = false
        }
        for byte in text.utf8 {
            if quoted {
                if escaped {
                    word.append(byte)
                    escaped = false
                } else if byte == backslash {
                    escaped = true
                } else if byte == quote {
                    quoted = false
                    finish()
                } else {
                    word.append(byte)
                }
            } else if byte == quote {
                quoted = true
                started = true
            } else if byte == space || byte == tab || byte == newline {
                if started { finish() }
            } else {
                word.append(byte)
                started = true
            }
        }
        if started { finish() }
        return words
    }

    /// A value as `xtables_save_string` prints it: bare when it is only letters, digits, `_` and
    /// `-`, else in double quotes with `"`, `\` and `'` escaped by a backslash.
    static func saveQuoted(_ value: String) -> String {
        let bare = !value.isEmpty && value.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (scalar == "_" || scalar == "-" || ("0"..."9").contains(scalar)
                || ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar))
        }
        if bare { return value }
        var out = "\""
        for character in value {
            if character == "\"" || character == "\\" || character == "'" { out.append("\\") }
            out.append(character)
        }
        return out + "\""
    }

    /// Quotes a word of an unknown module only when it could not be read back as one word.
    private static func plain(_ value: String) -> String {
        value.isEmpty || value.contains(where: { $0 == " " || $0 == "\t" || $0 == "\"" }) ? saveQuoted(value) : value
    }

    // MARK: - parsing

    struct Option {
        var negated: Bool
        var name: String
        var values: [String]
    }

    struct Section {
        var name: String
        var isGoto = false
        var options: [Option] = []

        func first(_ names: String...) -> Option? { options.first { names.contains($0.name) } }
        func has(_ names: String...) -> Bool { options.contains { names.contains($0.name) } }
    }

    struct ParsedRule {
        var header: [String: (negated: Bool, value: String)] = [:]
        var matches: [Section] = []
        var target: Section?

        static let headerAliases: [String: String] = [
            "-s": "-s", "--source": "-s", "--src": "-s",
            "-d": "-d", "--destination": "-d", "--dst": "-d",
            "-i": "-i", "--in-interface": "-i",
            "-o": "-o", "--out-interface": "-o",
            "-p": "-p", "--protocol": "-p",
            "-f": "-f", "--fragment": "-f",
        ]

        /// Options that take no value. Any other option takes one value, except unknown options of
        /// unknown modules, which take every following word up to the next option.
        static let flags: Set<String> = [
            "--set", "--rcheck", "--update", "--remove", "--reap", "--rttl", "--rsource", "--rdest",
            "--random", "--random-fully", "--persistent", "--syn", "--socket-exists", "--suppl-groups",
        ]
        static let singleValued: Set<String> = [
            "--comment", "--mode", "--probability", "--every", "--packet", "--mark", "--ctstate", "--ctstatus",
            "--state", "--name", "--seconds", "--hitcount", "--mask", "--uid-owner", "--gid-owner",
            "--sport", "--dport", "--source-port", "--destination-port", "--to-destination", "--to-source",
            "--to-ports", "--to-port", "--reject-with", "--set-xmark", "--set-mark", "--or-mark", "--xor-mark",
            "--and-mark", "--ctproto", "--ctdir", "--ctexpire",
        ]

        init(words: [String]) {
            var index = 0, negated = false
            func next() -> String? {
                guard index < words.count else { return nil }
                defer { index += 1 }
                return words[index]
            }
            while let word = next() {
                if word == "!" { negated = true; continue }
                defer { negated = false }
                if let key = Self.headerAliases[word] {
                    header[key] = (negated, key == "-f" ? "" : next() ?? "")
                } else if word == "-m" || word == "--match" {
                    matches.append(Section(name: next() ?? ""))
                } else if word == "-j" || word == "--jump" || word == "-g" || word == "--goto" {
                    target = Section(name: next() ?? "", isGoto: word == "-g" || word == "--goto")
                } else if word.hasPrefix("-") {
                    var values: [String] = []
                    if Self.singleValued.contains(word) {
                        if let value = next() { values.append(value) }
                    } else if !Self.flags.contains(word) {
                        while index < words.count, !words[index].hasPrefix("-"), words[index] != "!" {
                            values.append(words[index])
                            index += 1
                        }
                    }
                    let option = Option(negated: negated, name: word, values: values)
                    if target != nil {
                        target!.options.append(option)
                    } else if !matches.isEmpty {
                        matches[matches.count - 1].options.append(option)
                    } else {
                        // `-p tcp --dport 80` loads the protocol's match implicitly; save prints it.
                        matches.append(Section(name: header["-p"].map { protocolName($0.value) } ?? "", options: [option]))
                    }
                }
            }
        }
    }

    // MARK: - header values

    static func address(_ text: String, family: IPFamily) -> String {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let first = parts.first, let parsed = IPAddress(first) else { return text }
        let width = parsed.family == .ipv4 ? 32 : 128
        var length = width
        if parts.count == 2 {
            if let number = Int(parts[1]), (0...width).contains(number) {
                length = number
            } else if let mask = IPAddress(parts[1]), let ones = prefixLength(of: mask) {
                length = ones
            } else {
                return text
            }
        }
        return "\(parsed.masked(to: length))/\(length)"
    }

    private static func prefixLength(of mask: IPAddress) -> Int? {
        let bits: [Bool] = mask.bytes.flatMap { byte in (0..<8).map { (bit: Int) -> Bool in byte & (0x80 >> bit) != 0 } }
        let ones = bits.prefix { $0 }.count
        return bits.dropFirst(ones).contains(true) ? nil : ones
    }

    static func protocolName(_ text: String) -> String {
        let numbers = ["1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp", "132": "sctp", "136": "udplite"]
        let lowered = text.lowercased()
        return numbers[lowered] ?? (lowered == "icmpv6" ? "ipv6-icmp" : lowered)
    }

    // MARK: - matches

    private static func canonicalMatch(_ match: Section, family: IPFamily) -> [String] {
        func flag(_ option: Option, _ words: [String]) -> [String] { (option.negated ? ["!"] : []) + words }
        switch match.name {
        case "tcp", "udp", "sctp", "udplite", "dccp":
            let source = match.first("--sport", "--source-port"), destination = match.first("--dport", "--destination-port")
            let rest = match.options.filter { !["--sport", "--source-port", "--dport", "--destination-port"].contains($0.name) }
            return (source.map { flag($0, ["--sport", port($0.values.first ?? "")]) } ?? [])
                + (destination.map { flag($0, ["--dport", port($0.values.first ?? "")]) } ?? [])
                + rest.flatMap { flag($0, [$0.name] + $0.values.map(plain)) }
        case "comment":
            return match.first("--comment").map { ["--comment", saveQuoted($0.values.first ?? "")] } ?? []
        case "statistic":
            guard match.first("--mode")?.values.first == "random", let option = match.first("--probability"),
                  let probability = option.values.first.flatMap(savedProbability) else { break }
            return ["--mode", "random"] + flag(option, ["--probability", probability])
        case "mark":
            guard let option = match.first("--mark"), let value = option.values.first,
                  let (mark, mask) = markAndMask(value) else { break }
            return flag(option, ["--mark", mask == ~0 ? hex(mark) : "\(hex(mark))/\(hex(mask))"])
        case "conntrack":
            return conntrack(match)
        case "recent":
            return recent(match, family: family)
        case "owner":
            let order = ["--uid-owner", "--gid-owner", "--socket-exists", "--suppl-groups"]
            let known = order.compactMap { name in match.first(name) }
            let rest = match.options.filter { !order.contains($0.name) }
            return (known + rest).flatMap { flag($0, [$0.name] + $0.values.map(plain)) }
        default:
            break
        }
        return match.options.flatMap { flag($0, [$0.name] + $0.values.map(plain)) }
    }

    private static func port(_ text: String) -> String {
        let bounds = text.split(separator: ":", omittingEmptySubsequences: false)
        if bounds.count == 2, bounds[0] == bounds[1] { return String(bounds[0]) }
        return text
    }

    /// `%.11f` of the probability as the kernel keeps it: `lround(p × 2³¹)` / 2³¹, exactly as
    /// `libxt_statistic` parses (strtod) and prints it. Computed in integers; glibc's printf
    /// rounds an exact tie to even, and so does this.
    static func savedProbability(_ text: String) -> String? {
        guard let value = Double(text), value >= 0, value <= 1 else { return nil }
        let fixed = UInt64((value * 2_147_483_648).rounded(.toNearestOrAwayFromZero))
        let scale: UInt64 = 100_000_000_000
        let product = fixed.multipliedFullWidth(by: scale)
        var quotient = product.high << 33 | product.low >> 31
        let remainder = product.low & 0x7FFF_FFFF, half: UInt64 = 0x4000_0000
        if remainder > half || (remainder == half && quotient & 1 == 1) { quotient += 1 }
        let fraction = String(quotient % scale)
        return "\(quotient / scale)." + String(repeating: "0", count: 11 - fraction.count) + fraction
    }

    private static func conntrack(_ match: Section) -> [String] {
        let stateOrder = ["INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT"]
        let statusOrder = ["NONE", "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED"]
        func sorted(_ list: String, by order: [String]) -> String {
            list.split(separator: ",").map { $0.uppercased() }
                .sorted { (order.firstIndex(of: $0) ?? order.count, $0) < (order.firstIndex(of: $1) ?? order.count, $1) }
                .joined(separator: ",")
        }
        let order = ["--ctstate", "--ctproto", "--ctorigsrc", "--ctorigdst", "--ctreplsrc", "--ctrepldst",
                     "--ctorigsrcport", "--ctorigdstport", "--ctreplsrcport", "--ctrepldstport",
                     "--ctstatus", "--ctexpire", "--ctdir"]
        let options = match.options.sorted { (order.firstIndex(of: $0.name) ?? order.count) < (order.firstIndex(of: $1.name) ?? order.count) }
        return options.flatMap { option -> [String] in
            var values = option.values
            if option.name == "--ctstate", let list = values.first { values = [sorted(list, by: stateOrder)] }
            if option.name == "--ctstatus", let list = values.first { values = [sorted(list, by: statusOrder)] }
            return (option.negated ? ["!"] : []) + [option.name] + values.map(plain)
        }
    }

    /// `recent` (revision 1) prints: [!] action, --seconds, --reap, --hitcount, --rttl, --name
    /// (default DEFAULT), --mask (default all ones), --rsource or --rdest (default rsource).
    private static func recent(_ match: Section, family: IPFamily) -> [String] {
        var out: [String] = []
        if let action = match.options.first(where: { ["--set", "--rcheck", "--update", "--remove"].contains($0.name) }) {
            out += (action.negated ? ["!"] : []) + [action.name]
        }
        if let seconds = match.first("--seconds")?.values.first { out += ["--seconds", seconds] }
        if match.has("--reap") { out.append("--reap") }
        if let hits = match.first("--hitcount")?.values.first { out += ["--hitcount", hits] }
        if match.has("--rttl") { out.append("--rttl") }
        out += ["--name", match.first("--name")?.values.first ?? "DEFAULT"]
        let fullMask = family == .ipv4 ? "255.255.255.255" : "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        let mask = match.first("--mask")?.values.first.flatMap { IPAddress($0) }
        out += ["--mask", mask.map { $0.family == .ipv6 ? fullV6(mask: $0) : $0.description } ?? fullMask]
        out.append(match.has("--rdest") ? "--rdest" : "--rsource")
        return out
    }

    /// recent prints an IPv6 mask group by group, without `::` compression.
    private static func fullV6(mask: IPAddress) -> String {
        let bytes = mask.bytes
        return stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
            .joined(separator: ":")
    }

    // MARK: - targets

    private static func canonicalTarget(_ target: Section, family: IPFamily) -> [String] {
        switch target.name {
        case "MARK":
            guard let option = target.options.first, let value = option.values.first,
                  let (bits, mask) = markAndMask(value) else { break }
            let pair: (UInt32, UInt32)? = switch option.name {
            case "--set-xmark": (bits, mask)
            case "--set-mark": (bits, mask | bits)
            case "--or-mark": (bits, bits)
            case "--xor-mark": (bits, 0)
            case "--and-mark": (0, ~bits)
            default: nil
            }
            guard let (mark, saveMask) = pair else { break }
            return ["--set-xmark", "\(hex(mark))/\(hex(saveMask))"]
        case "DNAT", "SNAT":
            let name = target.name == "DNAT" ? "--to-destination" : "--to-source"
            let rest = target.options.filter { $0.name != name }.map(\.name).sorted {
                (["--random", "--random-fully", "--persistent"].firstIndex(of: $0) ?? 3) < (["--random", "--random-fully", "--persistent"].firstIndex(of: $1) ?? 3)
            }
            return (target.first(name).map { [name, natDestination($0.values.first ?? "")] } ?? []) + rest
        case "REJECT":
            let value = target.first("--reject-with")?.values.first
            return ["--reject-with", rejectKind(value, family: family)]
        case "REDIRECT", "MASQUERADE":
            return target.options.flatMap { option in
                option.name == "--to-port" ? ["--to-ports"] + option.values : [option.name] + option.values.map(plain)
            }
        default:
            break
        }
        return target.options.flatMap { ($0.negated ? ["!"] : []) + [$0.name] + $0.values.map(plain) }
    }

    /// `10.1.0.5:8080` or `[fd00::5]:8080`, with the address in its canonical text.
    private static func natDestination(_ text: String) -> String {
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            let inner = text[text.index(after: text.startIndex)..<close]
            guard let parsed = IPAddress(inner) else { return text }
            return "[\(parsed)]" + text[text.index(after: close)...]
        }
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        if let parsed = IPAddress(parts[0]), parsed.family == .ipv4 {
            return parts.count == 2 ? "\(parsed):\(parts[1])" : "\(parsed)"
        }
        if let parsed = IPAddress(text) { return parsed.description }
        return text
    }

    private static func rejectKind(_ value: String?, family: IPFamily) -> String {
        let aliases: [String: String] = family == .ipv4
            ? ["tcp-rst": "tcp-reset", "port-unreach": "icmp-port-unreachable", "net-unreach": "icmp-net-unreachable",
               "host-unreach": "icmp-host-unreachable", "proto-unreach": "icmp-proto-unreachable",
               "net-prohib": "icmp-net-prohibited", "host-prohib": "icmp-host-prohibited", "admin-prohib": "icmp-admin-prohibited"]
            : ["tcp-rst": "tcp-reset", "port-unreach": "icmp6-port-unreachable", "no-route": "icmp6-no-route",
               "adm-prohibited": "icmp6-adm-prohibited", "addr-unreach": "icmp6-addr-unreachable"]
        guard let value else { return family == .ipv4 ? "icmp-port-unreachable" : "icmp6-port-unreachable" }
        return aliases[value] ?? value
    }

    // MARK: - numbers

    private static func markAndMask(_ text: String) -> (UInt32, UInt32)? {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let first = parts.first, let mark = number(first) else { return nil }
        guard parts.count == 2 else { return (mark, ~0) }
        guard let mask = number(parts[1]) else { return nil }
        return (mark, mask)
    }

    /// strtoul with base 0, as xtables parses marks: `0x…` hex, `0…` octal, else decimal.
    private static func number(_ text: String) -> UInt32? {
        if text.hasPrefix("0x") || text.hasPrefix("0X") { return UInt32(text.dropFirst(2), radix: 16) }
        if text.count > 1 && text.hasPrefix("0") { return UInt32(text.dropFirst(), radix: 8) }
        return UInt32(text)
    }

    private static func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16) }
}
