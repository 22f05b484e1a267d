/// Checks for every value a producer hands over. Each failure names the value and says what would be accepted:
/// these values become S3 key segments and HTTP headers, so nothing is truncated or "fixed" silently.
public enum Validation {
    /// The longest bundle id, in bytes.
    public static let maximumBundleIDBytes = 128
    /// The longest resource name, in bytes.
    public static let maximumResourceNameBytes = 200
    /// The longest resource URL, in bytes.
    public static let maximumURLBytes = 8192
    /// The longest metadata key, in bytes.
    public static let maximumMetadataKeyBytes = 128
    /// The longest metadata value, in bytes.
    public static let maximumMetadataValueBytes = 2048
    /// The largest metadata of one resource or bundle: keys plus values, in bytes.
    public static let maximumMetadataTotalBytes = 8192
    /// The longest content type, in bytes.
    public static let maximumContentTypeBytes = 255
    /// The longest key prefix, in bytes (S3 keys are at most 1,024 bytes).
    public static let maximumPrefixBytes = 512

    /// Characters allowed in bundle ids, resource names and prefix segments: safe in S3 keys, URLs and file names.
    static func isKeyCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "~"), UInt8(ascii: "="),
            UInt8(ascii: ","), UInt8(ascii: "@"):
            return true
        default:
            return false
        }
    }

    static func isAlphanumeric(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return false
        }
    }

    static let keyCharactersDescription = "letters, digits and . _ - ~ = , @"

    /// Checks a bundle id: 1–128 key characters, starting with a letter or digit, no `/` and no `..`.
    ///
    /// - Throws: `SpoolError.invalidBundleID` naming the id.
    public static func checkBundleID(_ id: String) throws {
        let bytes = Array(id.utf8)
        func reject(_ reason: String) -> SpoolError {
            SpoolError(
                .invalidBundleID,
                "bundle id \(quoted(id)) \(reason); use 1–\(maximumBundleIDBytes) \(keyCharactersDescription), "
                    + "starting with a letter or digit (PipelineStorage.newBundleID() makes one)")
        }
        guard !bytes.isEmpty else { throw reject("is empty") }
        guard bytes.count <= maximumBundleIDBytes else { throw reject("is \(bytes.count) bytes long") }
        if let bad = bytes.firstIndex(where: { !isKeyCharacter($0) }) {
            throw reject("has \(describe(byteAt: bad, in: id)) at position \(bad + 1)")
        }
        guard isAlphanumeric(bytes[0]) else { throw reject("does not start with a letter or digit") }
        guard !id.contains("..") else { throw reject("contains '..'") }
    }

    /// Checks a resource name given by the caller: 1–200 key characters, not `.`/`..`, no `..`.
    ///
    /// - Throws: `SpoolError.invalidResourceName` naming the name.
    public static func checkResourceName(_ name: String) throws {
        let bytes = Array(name.utf8)
        func reject(_ reason: String) -> SpoolError {
            SpoolError(
                .invalidResourceName,
                "resource name \(quoted(name)) \(reason); use 1–\(maximumResourceNameBytes) "
                    + "\(keyCharactersDescription), or leave the name out to derive it from the URL")
        }
        guard !bytes.isEmpty else { throw reject("is empty") }
        guard bytes.count <= maximumResourceNameBytes else { throw reject("is \(bytes.count) bytes long") }
        if let bad = bytes.firstIndex(where: { !isKeyCharacter($0) }) {
            throw reject("has \(describe(byteAt: bad, in: name)) at position \(bad + 1)")
        }
        guard !name.contains("..") else { throw reject("contains '..'") }
        guard bytes[0] != UInt8(ascii: ".") else { throw reject("starts with '.'") }
    }

    /// Checks a resource URL: an absolute URL (`scheme:...`), at most 8 KiB, no whitespace or control characters.
    ///
    /// - Throws: `SpoolError.invalidURL` naming the URL.
    public static func checkURL(_ url: String) throws {
        let bytes = Array(url.utf8)
        func reject(_ reason: String) -> SpoolError {
            SpoolError(.invalidURL, "URL \(quoted(url)) \(reason)")
        }
        guard !bytes.isEmpty else { throw reject("is empty; pass the URL the resource was fetched from") }
        guard bytes.count <= maximumURLBytes else {
            throw reject("is \(bytes.count) bytes long; the limit is \(maximumURLBytes)")
        }
        if let bad = bytes.firstIndex(where: { $0 < 0x21 || $0 == 0x7F }) {
            let what = bytes[bad] == 0x20 ? "a space" : "a control character"
            throw reject("has \(what) at position \(bad + 1); percent-encode it (e.g. %20)")
        }
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")), colon > 0, colon < bytes.count - 1,
            bytes[0..<colon].allSatisfy({
                isAlphanumeric($0) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-")
                    || $0 == UInt8(ascii: ".")
            }),
            isAlphanumeric(bytes[0]) && !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[0])
        else {
            throw reject("is not an absolute URL; give it a scheme, e.g. https://example.com/path")
        }
    }

    /// Checks a content type: `type/subtype` with optional `; name=value` parameters, at most 255 bytes.
    ///
    /// - Throws: `SpoolError.invalidContentType` naming the value.
    public static func checkContentType(_ contentType: String) throws {
        // Built only on failure: every resource passes through here, and the message costs more than the check.
        func reject() -> SpoolError {
            SpoolError(
                .invalidContentType,
                "content type \(quoted(contentType)) is not a media type; use type/subtype with optional "
                    + "'; name=value' parameters, e.g. 'text/html; charset=utf-8' (at most "
                    + "\(maximumContentTypeBytes) bytes)")
        }
        let bytes = Array(contentType.utf8)
        guard !bytes.isEmpty, bytes.count <= maximumContentTypeBytes else { throw reject() }
        var parser = MediaTypeParser(bytes: bytes)
        guard parser.parse() else { throw reject() }
    }

    /// Checks an HTTP status code: 100...599.
    ///
    /// - Throws: `SpoolError.invalidStatusCode` naming the value.
    public static func checkStatusCode(_ statusCode: Int) throws {
        guard (100...599).contains(statusCode) else {
            throw SpoolError(
                .invalidStatusCode,
                "status code \(statusCode) is not an HTTP status; use 100...599 (200 for a successful fetch)")
        }
    }

    /// Checks metadata: keys of 1–128 letters, digits, `.`, `_`, `-`; values without control characters (no CR/LF)
    /// of at most 2 KiB; at most 8 KiB in all.
    ///
    /// - Parameter owner: what the metadata belongs to, for the message ("resource", "bundle").
    /// - Throws: `SpoolError.invalidMetadata` naming the key.
    public static func checkMetadata(_ metadata: [String: String], owner: String) throws {
        var total = 0
        for key in metadata.keys.sorted() {
            let value = metadata[key]!
            let keyBytes = Array(key.utf8)
            guard !keyBytes.isEmpty, keyBytes.count <= maximumMetadataKeyBytes,
                keyBytes.allSatisfy({
                    isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_")
                        || $0 == UInt8(ascii: "-")
                })
            else {
                throw SpoolError(
                    .invalidMetadata,
                    "\(owner) metadata key \(quoted(key)) is not valid; use 1–\(maximumMetadataKeyBytes) letters, "
                        + "digits, '.', '_' or '-'")
            }
            let valueBytes = Array(value.utf8)
            if let bad = valueBytes.firstIndex(where: { $0 < 0x20 || $0 == 0x7F }) {
                let what =
                    switch valueBytes[bad] {
                    case 0x0D: "a carriage return (CR)"
                    case 0x0A: "a line feed (LF)"
                    default: "a control character"
                    }
                throw SpoolError(
                    .invalidMetadata,
                    "\(owner) metadata value for key \(quoted(key)) has \(what) at position \(bad + 1); remove it or "
                        + "encode the value (e.g. percent-encoding or base64)")
            }
            guard valueBytes.count <= maximumMetadataValueBytes else {
                throw SpoolError(
                    .invalidMetadata,
                    "\(owner) metadata value for key \(quoted(key)) is \(valueBytes.count) bytes; the limit is "
                        + "\(maximumMetadataValueBytes): store large values in the resource itself")
            }
            total += keyBytes.count + valueBytes.count
        }
        guard total <= maximumMetadataTotalBytes else {
            throw SpoolError(
                .invalidMetadata,
                "\(owner) metadata is \(total) bytes in all (keys plus values); the limit is "
                    + "\(maximumMetadataTotalBytes): drop some keys or store large values in the resource itself")
        }
    }

    /// Quotes a value for a message, escaping what would garble a terminal and eliding very long values.
    package static func quoted(_ value: String) -> String {
        var text = ""
        for scalar in value.unicodeScalars.prefix(120) {
            switch scalar {
            case "\r": text += "\\r"
            case "\n": text += "\\n"
            case "\t": text += "\\t"
            case "'": text += "\\'"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                text += "\\u{" + String(scalar.value, radix: 16) + "}"
            default: text.unicodeScalars.append(scalar)
            }
        }
        if value.unicodeScalars.count > 120 { text += "…" }
        return "'" + text + "'"
    }

    static func describe(byteAt index: Int, in value: String) -> String {
        let byte = Array(value.utf8)[index]
        switch byte {
        case UInt8(ascii: "/"): return "a '/'"
        case 0x20: return "a space"
        case 0..<0x20, 0x7F: return "a control character"
        case 0x80...: return "a non-ASCII character"
        default: return "the character '\(Character(Unicode.Scalar(byte)))'"
        }
    }
}

/// RFC 9110 media type: token "/" token *( OWS ";" OWS token "=" ( token / quoted-string ) ).
private struct MediaTypeParser {
    let bytes: [UInt8]
    var index = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        if Validation.isAlphanumeric(byte) { return true }
        return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
    }

    mutating func parse() -> Bool {
        guard token(), consume(UInt8(ascii: "/")), token() else { return false }
        while true {
            skipWhitespace()
            if index == bytes.count { return true }
            guard consume(UInt8(ascii: ";")) else { return false }
            skipWhitespace()
            if index == bytes.count { return true }  // a trailing ';' is tolerated, as browsers do
            guard token(), consume(UInt8(ascii: "=")) else { return false }
            guard token() || quotedString() else { return false }
        }
    }

    mutating func token() -> Bool {
        let start = index
        while index < bytes.count, Self.isTokenCharacter(bytes[index]) { index += 1 }
        return index > start
    }

    mutating func quotedString() -> Bool {
        guard consume(UInt8(ascii: "\"")) else { return false }
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""): return true
            case UInt8(ascii: "\\"):
                guard index < bytes.count, bytes[index] >= 0x20 || bytes[index] == 0x09, bytes[index] != 0x7F
                else { return false }
                index += 1
            case 0x09, 0x20...0x7E, 0x80...: continue
            default: return false
            }
        }
        return false
    }

    mutating func consume(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    mutating func skipWhitespace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 { index += 1 }
    }
}
