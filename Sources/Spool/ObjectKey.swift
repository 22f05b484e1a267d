/// The object layout shared by S3 and the `file://` target (SPEC §4):
///
///     {prefix}{bundleID}/{seq:06}-{name}     one object per resource
///     {prefix}{bundleID}/_bundle.json        the completion marker, written last
public enum ObjectKey {
    /// The name of a bundle's completion marker.
    public static let manifestName = "_bundle.json"

    /// The key of a resource.
    public static func resource(prefix: String, bundleID: String, seq: Int, name: String) -> String {
        let digits = String(seq)
        let padded = digits.count >= 6 ? digits : String(repeating: "0", count: 6 - digits.count) + digits
        return prefix + bundleID + "/" + padded + "-" + name
    }

    /// The key of a bundle's `_bundle.json`.
    public static func manifest(prefix: String, bundleID: String) -> String {
        prefix + bundleID + "/" + manifestName
    }

    /// The prefix a resource or manifest key was made with (`data/` for `data/b-1/000001-x`); nil when the key does
    /// not end in `{bundleID}/{name}`.
    public static func prefix(ofKey key: String, bundleID: String) -> String? {
        guard let slash = key.lastIndex(of: "/") else { return nil }
        let head = key[..<slash]
        guard head.hasSuffix(bundleID) else { return nil }
        return String(head.dropLast(bundleID.count))
    }

    /// Normalises a key prefix: no leading or repeated slashes, one trailing slash (`data`, `data/` and `/data//`
    /// all give `data/`); empty stays empty.
    ///
    /// - Throws: `SpoolError.invalidConfiguration` when a segment is `.` or `..`, or has characters outside the key
    ///   set, or the prefix is too long.
    public static func normalizePrefix(_ prefix: String) throws -> String {
        let segments = prefix.split(separator: "/", omittingEmptySubsequences: true)
        for segment in segments {
            let bytes = Array(segment.utf8)
            if segment == "." || segment == ".." || !bytes.allSatisfy(Validation.isKeyCharacter) {
                throw SpoolError(
                    .invalidConfiguration,
                    "prefix \(Validation.quoted(prefix)) has the segment \(Validation.quoted(String(segment))); use "
                        + "segments of \(Validation.keyCharactersDescription) separated by '/', without '.' or '..'")
            }
        }
        let normalized = segments.isEmpty ? "" : segments.joined(separator: "/") + "/"
        guard normalized.utf8.count <= Validation.maximumPrefixBytes else {
            throw SpoolError(
                .invalidConfiguration,
                "prefix \(Validation.quoted(prefix)) is \(normalized.utf8.count) bytes; the limit is "
                    + "\(Validation.maximumPrefixBytes)")
        }
        return normalized
    }

    /// Derives a resource name from its URL: the last non-empty path segment, percent-decoded, with characters
    /// outside the key set replaced by `_`, cut to the length limit (keeping the extension); `index` when the path
    /// has no segment.
    public static func name(fromURL url: String) -> String {
        var rest = Substring(url)
        if let schemeEnd = rest.range(of: "://") {
            rest = rest[schemeEnd.upperBound...]
            // Skip the authority: everything up to the first '/', '?' or '#'.
            let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
            rest = rest[authorityEnd...]
        } else if let colon = rest.firstIndex(of: ":") {
            rest = rest[rest.index(after: colon)...]
        }
        if let end = rest.firstIndex(where: { $0 == "?" || $0 == "#" }) { rest = rest[..<end] }
        let segment = rest.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? ""
        let decoded = percentDecoded(segment)
        var bytes = decoded.utf8.map { Validation.isKeyCharacter($0) ? $0 : UInt8(ascii: "_") }
        // No leading dots and no '..' anywhere: both would read as path navigation.
        while let first = bytes.first, first == UInt8(ascii: ".") { bytes[0] = UInt8(ascii: "_") }
        var index = 1
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "."), bytes[index - 1] == UInt8(ascii: ".") {
                bytes[index] = UInt8(ascii: "_")
            }
            index += 1
        }
        if bytes.isEmpty { return "index" }
        if bytes.count > Validation.maximumResourceNameBytes {
            let dot = bytes.lastIndex(of: UInt8(ascii: "."))
            let extensionBytes = dot.map { Array(bytes[$0...]) } ?? []
            let keep = extensionBytes.count < 16 ? extensionBytes : []
            var head = Array(bytes.prefix(Validation.maximumResourceNameBytes - keep.count))
            // A dot just before the cut would meet the extension's dot and make '..'.
            if !keep.isEmpty, head.last == UInt8(ascii: ".") { head[head.count - 1] = UInt8(ascii: "_") }
            bytes = head + keep
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func percentDecoded(_ text: String) -> String {
        var output: [UInt8] = []
        let bytes = Array(text.utf8)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count,
                let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
            {
                output.append(high << 4 | low)
                index += 3
            } else {
                output.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
