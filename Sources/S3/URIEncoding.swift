/// Percent-encoding as Signature Version 4 and RFC 3986 define it.
///
/// The unreserved characters `A-Z a-z 0-9 - . _ ~` are kept; every other byte of the text's UTF-8 form becomes `%XX`
/// with uppercase hexadecimal digits. A space is always `%20` (never `+`) and `+` is always `%2B`, because S3 and the
/// signature both read the path and query byte for byte: an encoding that differs from the signed one by a single
/// character gives `SignatureDoesNotMatch`.
///
/// ```swift
/// URIEncoding.encodePath("/logs/2024 01/ü.json")  // "/logs/2024%2001/%C3%BC.json"
/// URIEncoding.encode("a/b c")                      // "a%2Fb%20c"
/// ```
public enum URIEncoding {
    /// Encodes one path segment, or a query name or value: `/` is encoded, like every reserved character.
    ///
    /// - Parameter text: The decoded text.
    /// - Returns: The text with every byte outside the unreserved set written as `%XX`.
    public static func encode(_ text: String) -> String {
        percentEncode(text, keepingSlash: false)
    }

    /// Encodes an object key, or any path, keeping `/` as the segment separator.
    ///
    /// The result serves both as the path of the request line and, for S3, as the canonical URI: S3 signs the path
    /// exactly as sent, encoded once and never normalised, so `a//b` keeps both slashes and `.` and `..` segments stay
    /// as they are (they are legitimate parts of an object key).
    ///
    /// - Parameter path: The decoded path or key, such as `/bucket/logs/a b.json`.
    /// - Returns: The path with every byte outside the unreserved set and `/` written as `%XX`.
    public static func encodePath(_ path: String) -> String {
        percentEncode(path, keepingSlash: true)
    }

    /// The canonical query string of Signature Version 4.
    ///
    /// Each name and value is encoded with ``encode(_:)``; the pairs are sorted by encoded name, then by encoded value
    /// (byte order, so uppercase sorts before lowercase), and joined as `name=value` with `&`. A name with an empty
    /// value gives `name=`, which is how S3's subresources such as `?uploads` are signed.
    ///
    /// - Parameter items: The decoded query names and values, in any order; repeated names are allowed.
    /// - Returns: The canonical query string; empty when there are no items.
    public static func canonicalQuery(_ items: [(name: String, value: String)]) -> String {
        items
            .map { (name: encode($0.name), value: encode($0.value)) }
            .sorted { left, right in
                if left.name != right.name {
                    return left.name.utf8.lexicographicallyPrecedes(right.name.utf8)
                }
                return left.value.utf8.lexicographicallyPrecedes(right.value.utf8)
            }
            .map { "\($0.name)=\($0.value)" }
            .joined(separator: "&")
    }

    private static let uppercaseHexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    private static func percentEncode(_ text: String, keepingSlash: Bool) -> String {
        var encoded: [UInt8] = []
        encoded.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if isUnreserved(byte) || (keepingSlash && byte == UInt8(ascii: "/")) {
                encoded.append(byte)
            } else {
                encoded.append(UInt8(ascii: "%"))
                encoded.append(uppercaseHexDigits[Int(byte >> 4)])
                encoded.append(uppercaseHexDigits[Int(byte & 0x0F)])
            }
        }
        return String(decoding: encoded, as: UTF8.self)
    }
}
