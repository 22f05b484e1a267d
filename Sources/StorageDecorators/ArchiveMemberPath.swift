import Spool

/// Turns a zip member's path into the URL path appended to the archive's URL (`{url}/{member}`), refusing paths that
/// would climb out of the archive if anyone extracted them to disk (zip-slip).
enum ArchiveMemberPath {
    /// The member's path with `.` and empty segments dropped and every segment percent-encoded (RFC 3986 `pchar`
    /// kept), or nil for a directory entry.
    ///
    /// - Parameters:
    ///   - name: The decoded member path.
    ///   - archive: The archive's URL, for the message.
    /// - Throws: `SpoolError.unsafeArchiveMember` naming the member and the archive, for a NUL, a backslash, an
    ///   absolute path (`/…` or a drive letter) or a `..` segment.
    static func sanitize(_ name: String, archive: String) throws -> String? {
        func reject(_ reason: String) -> SpoolError {
            SpoolError(
                .unsafeArchiveMember,
                "zip member \(Validation.quoted(name)) of \(Validation.quoted(archive)) \(reason); refused as a "
                    + "zip-slip attempt and nothing of the archive was stored: write it without unzipResources if "
                    + "it is wanted as it is")
        }
        if name.unicodeScalars.contains("\0") { throw reject("has a NUL character") }
        if name.contains("\\") { throw reject("has a backslash (a Windows path separator)") }
        if name.hasPrefix("/") { throw reject("is an absolute path") }
        let segments = name.split(separator: "/", omittingEmptySubsequences: true)
        if let first = segments.first, first.count >= 2, first.dropFirst().first == ":",
            first.first!.isASCII, first.first!.isLetter
        {
            throw reject("is an absolute Windows path (drive \(first.prefix(2)))")
        }
        if segments.contains("..") { throw reject("climbs out of the archive ('..')") }
        if name.hasSuffix("/") { return nil }
        let kept = segments.filter { $0 != "." }
        guard !kept.isEmpty else { throw reject("has an empty path") }
        return kept.map { percentEncoded($0) }.joined(separator: "/")
    }

    /// `{archive url}/{member}`, with the member inserted before the archive URL's query or fragment (so that the
    /// name derived from the URL is the member's).
    static func memberURL(archive: String, encodedPath: String) -> String {
        let split = archive.firstIndex(where: { $0 == "?" || $0 == "#" }) ?? archive.endIndex
        let path = archive[..<split]
        let separator = path.hasSuffix("/") ? "" : "/"
        return path + separator + encodedPath + archive[split...]
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters and the sub-delimiters, ':' and '@'.
    static func percentEncoded(_ segment: Substring) -> String {
        let kept = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@".utf8)
        let digits = Array("0123456789ABCDEF".utf8)
        var bytes: [UInt8] = []
        for byte in segment.utf8 {
            if kept.contains(byte) {
                bytes.append(byte)
            } else {
                bytes += [UInt8(ascii: "%"), digits[Int(byte >> 4)], digits[Int(byte & 0xF)]]
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
