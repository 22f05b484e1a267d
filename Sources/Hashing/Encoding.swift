extension Sequence where Element == UInt8 {
    /// The bytes as lowercase hexadecimal, two digits per byte.
    ///
    /// The form SigV4 and most digest displays use, e.g. `[0xDE, 0xAD].hexString == "dead"`.
    @inlinable
    public var hexString: String {
        // Inlinable, so callers get a copy specialised to their sequence type: every spooled resource and every
        // signed request formats digests, and the generic version costs several times as much.
        var digits: [UInt8] = []
        digits.reserveCapacity(underestimatedCount * 2)
        for byte in self {
            digits.append(hexDigit(byte >> 4))
            digits.append(hexDigit(byte & 0x0F))
        }
        return String(decoding: digits, as: UTF8.self)
    }
}

/// The lowercase hexadecimal digit for a value 0...15.
@inlinable
func hexDigit(_ value: UInt8) -> UInt8 {
    value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10
}

private let base64Alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

/// Standard padded base64 (RFC 4648 §4), so the checksum header needs no Foundation.
func base64Encode(_ bytes: [UInt8]) -> String {
    var output: [UInt8] = []
    output.reserveCapacity((bytes.count + 2) / 3 * 4)
    var index = 0
    while index < bytes.count {
        let remaining = bytes.count - index
        let b0 = UInt32(bytes[index])
        let b1 = remaining > 1 ? UInt32(bytes[index + 1]) : 0
        let b2 = remaining > 2 ? UInt32(bytes[index + 2]) : 0
        let group = b0 << 16 | b1 << 8 | b2
        output.append(base64Alphabet[Int(group >> 18 & 0x3F)])
        output.append(base64Alphabet[Int(group >> 12 & 0x3F)])
        output.append(remaining > 1 ? base64Alphabet[Int(group >> 6 & 0x3F)] : UInt8(ascii: "="))
        output.append(remaining > 2 ? base64Alphabet[Int(group & 0x3F)] : UInt8(ascii: "="))
        index += 3
    }
    return String(decoding: output, as: UTF8.self)
}

/// The four bytes that eight characters of padded base64 ("yZRlqg==") stand for; nil for anything else, including
/// a non-zero value in the bits the padding drops (not canonical base64).
func base64DecodeFourBytes(_ text: String) -> [UInt8]? {
    let characters = Array(text.utf8)
    guard characters.count == 8, characters[6] == UInt8(ascii: "="), characters[7] == UInt8(ascii: "=") else {
        return nil
    }
    var group: UInt64 = 0
    for character in characters[..<6] {
        guard let index = base64Alphabet.firstIndex(of: character) else { return nil }
        group = group << 6 | UInt64(index)
    }
    // 36 bits: four bytes and four bits of padding that must be zero.
    guard group & 0xF == 0 else { return nil }
    group >>= 4
    return [UInt8(group >> 24 & 0xFF), UInt8(group >> 16 & 0xFF), UInt8(group >> 8 & 0xFF), UInt8(group & 0xFF)]
}
