/// Describes how an installed table differs from the desired one, for `turnout status`:
/// `-` lines are installed only, `+` lines desired only, elements printed as nft prints them.
public enum TableComparison {
    /// Elements listed per set before the rest is summarised.
    static let elementLinesPerSet = 20

    public static func lines(installed: WireTable?, desired: WireTable) -> [String] {
        guard let installed else { return ["+ table \(ObjectEncoding.familyName(desired.family)) \(desired.name) (not installed)"] }
        var lines: [String] = []
        let installedChains = Dictionary(uniqueKeysWithValues: installed.chains.map { ($0.name, $0) })
        let desiredChains = Dictionary(uniqueKeysWithValues: desired.chains.map { ($0.name, $0) })
        for name in Set(installedChains.keys).union(desiredChains.keys).sorted() {
            switch (installedChains[name], desiredChains[name]) {
            case (nil, let wanted?): lines.append("+ chain \(name) (\(wanted.rules.count) rules)")
            case (let found?, nil): lines.append("- chain \(name) (\(found.rules.count) rules)")
            case (let found?, let wanted?) where found != wanted:
                lines.append("~ chain \(name): \(found.rules.count) rules installed, \(wanted.rules.count) wanted, \(zip(found.rules, wanted.rules).filter { $0 != $1 }.count + abs(found.rules.count - wanted.rules.count)) differ"
                             + (found.hook != wanted.hook ? "; hook differs" : ""))
            default: break
            }
        }
        let installedSets = Dictionary(uniqueKeysWithValues: installed.sets.map { ($0.name, $0) })
        let desiredSets = Dictionary(uniqueKeysWithValues: desired.sets.map { ($0.name, $0) })
        for name in Set(installedSets.keys).union(desiredSets.keys).sorted() {
            switch (installedSets[name], desiredSets[name]) {
            case (nil, let wanted?): lines.append("+ \(kind(wanted)) \(name) (\(wanted.elements.count) elements)")
            case (let found?, nil): lines.append("- \(kind(found)) \(name) (\(found.elements.count) elements)")
            case (let found?, let wanted?) where found.definition != wanted.definition:
                lines.append("~ \(kind(wanted)) \(name): definition differs (key, flags or timeout)")
            case (let found?, let wanted?) where !wanted.isDynamic && found.elements != wanted.elements:
                let before = Set(found.elements), after = Set(wanted.elements)
                let removed = found.elements.filter { !after.contains($0) }
                let added = wanted.elements.filter { !before.contains($0) }
                let format = ElementFormat(wanted)
                let changed = removed.map { "- \(kind(wanted)) \(name): \(format.text($0))" } + added.map { "+ \(kind(wanted)) \(name): \(format.text($0))" }
                lines += changed.prefix(elementLinesPerSet)
                if changed.count > elementLinesPerSet { lines.append("  … and \(changed.count - elementLinesPerSet) more element changes in \(name)") }
            default: break
            }
        }
        return lines
    }

    private static func kind(_ set: WireSet) -> String { set.isMap ? "map" : "set" }
}

/// Prints elements from their bytes, reading the field layout from the set's nft datatype ids.
struct ElementFormat {
    let keyFields: [UInt32]
    let dataFields: [UInt32]
    let concatenated: Bool
    let bigEndianIntegers: Bool

    init(_ set: WireSet) {
        keyFields = ElementFormat.fields(set.keyType)
        dataFields = set.dataType == NftablesLowering.verdictDataType ? [] : ElementFormat.fields(set.dataType ?? 0)
        concatenated = keyFields.count > 1
        bigEndianIntegers = set.flags & WireSet.intervalFlag != 0
    }

    /// Six bits per field, first field in the highest bits.
    static func fields(_ type: UInt32) -> [UInt32] {
        var fields: [UInt32] = []
        var rest = type
        while rest != 0 {
            fields.insert(rest & 0x3f, at: 0)
            rest >>= 6
        }
        return fields
    }

    func text(_ element: WireElement) -> String {
        var out = key(element.key, end: element.keyEnd)
        if element.isIntervalEnd { out += " (interval end)" }
        if let verdict = element.verdict {
            let name = switch verdict.code {
            case WireVerdict.gotoCode: "goto"
            case WireVerdict.jumpCode: "jump"
            case WireVerdict.acceptCode: "accept"
            case WireVerdict.dropCode: "drop"
            default: "verdict \(verdict.code)"
            }
            out += " : \(name)\(verdict.chain.map { " \($0)" } ?? "")"
        }
        if let data = element.data { out += " : " + values(data, dataFields, concatenated: true, end: nil) }
        return out
    }

    private func key(_ bytes: [UInt8], end: [UInt8]?) -> String {
        values(bytes, keyFields, concatenated: concatenated, end: end)
    }

    private func values(_ bytes: [UInt8], _ fields: [UInt32], concatenated: Bool, end: [UInt8]?) -> String {
        var parts: [String] = []
        var offset = 0
        for field in fields {
            let length = ElementFormat.length(field)
            guard offset + length <= bytes.count else { break }
            var text = value(Array(bytes[offset..<offset + length]), field)
            if let end, offset + length <= end.count {
                let upper = value(Array(end[offset..<offset + length]), field)
                if upper != text { text += "-\(upper)" }
            }
            parts.append(text)
            offset += concatenated ? (length + 3) / 4 * 4 : length
        }
        return parts.isEmpty ? bytes.map { String($0, radix: 16) }.joined(separator: ":") : parts.joined(separator: " . ")
    }

    static func length(_ field: UInt32) -> Int {
        switch field {
        case NftablesLowering.ipv6Type: 16
        case NftablesLowering.protocolType: 1
        case NftablesLowering.serviceType: 2
        default: 4
        }
    }

    private func value(_ bytes: [UInt8], _ field: UInt32) -> String {
        switch field {
        case NftablesLowering.ipv4Type:
            return bytes.map(String.init).joined(separator: ".")
        case NftablesLowering.ipv6Type:
            return stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }.joined(separator: ":")
        case NftablesLowering.protocolType:
            return switch bytes[0] { case 6: "tcp"; case 17: "udp"; case 132: "sctp"; default: "\(bytes[0])" }
        case NftablesLowering.serviceType:
            return "\(UInt16(bytes[0]) << 8 | UInt16(bytes[1]))"
        default:
            let number = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            return "\(bigEndianIntegers ? UInt32(bigEndian: number) : UInt32(littleEndian: number))"
        }
    }
}
