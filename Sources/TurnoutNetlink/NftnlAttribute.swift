import CNetfilter

/// libnftnl attribute keys as the `UInt16` its setters and getters take.
///
/// libnftnl declares object attributes in named C enums (imported as structs with `rawValue`)
/// and expression attributes in anonymous ones (imported as `Int`); these two overloads let every
/// call site read the same way.
@inline(__always) func attribute(_ value: Int) -> UInt16 { UInt16(value) }
@inline(__always) func attribute<T: RawRepresentable>(_ value: T) -> UInt16 where T.RawValue == UInt32 { UInt16(value.rawValue) }

/// A byte array as libnftnl's `(pointer, length)` data arguments.
extension Array where Element == UInt8 {
    init(pointer: UnsafeRawPointer?, count: UInt32) {
        guard let pointer, count > 0 else { self = []; return }
        self = Array(UnsafeRawBufferPointer(start: pointer, count: Int(count)))
    }
}
