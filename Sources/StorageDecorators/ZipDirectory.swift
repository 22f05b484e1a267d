import Foundation
import Spool

/// One member of a zip archive, as the central directory and the member's local header describe it.
struct ZipEntry: Sendable {
    /// The member's path, decoded (UTF-8 when flagged or valid, else IBM code page 437), not yet sanitised.
    var name: String
    /// General purpose flags (bit 0: encrypted, bit 11: UTF-8 name).
    var flags: UInt16
    /// Compression method (0 stored, 8 deflate; others are not supported).
    var method: UInt16
    /// CRC-32 of the expanded bytes.
    var crc32: UInt32
    /// Bytes of compressed data.
    var compressedSize: Int64
    /// Bytes once expanded.
    var uncompressedSize: Int64
    /// Where its local header starts in the file.
    var localHeaderOffset: Int64
    /// Where its compressed data starts in the file.
    var dataOffset: Int64
    /// Host system of the creator (3: Unix) and its file attributes.
    var madeByHost: UInt8
    var externalAttributes: UInt32

    /// A directory entry (its name ends in '/').
    var isDirectory: Bool { name.hasSuffix("/") }
    /// Encrypted data (traditional PKWARE or strong encryption).
    var isEncrypted: Bool { flags & 1 != 0 }
    /// A Unix symbolic link (its data is the link's target).
    var isSymbolicLink: Bool { madeByHost == 3 && (externalAttributes >> 16) & 0o170000 == 0o120000 }
    /// The compression method can be read (stored or deflate).
    var isSupportedMethod: Bool { method == 0 || method == 8 }
}

/// A zip archive's central directory, read from a scratch file with every offset and size checked against the file
/// (APPNOTE 6.3: end of central directory record, zip64 end record and locator, central directory headers, zip64
/// extra field, local headers). Damage is reported as `ArchiveCorruption`, never a crash or an endless loop; member
/// data is read separately, by `ZipMemberChunks`, bounded by the sizes checked here.
///
/// ZIPFoundation 0.9.20 is not used for reading: its listing stops silently at a malformed directory record, its
/// `extract` does not check CRC-32, and on Linux its inflate loop never ends when a member's deflate data runs out
/// before the end marker (weichsel/ZIPFoundation#389) — three things a fetcher meets in archives from the web.
struct ZipDirectory: Sendable {
    /// The entries, in central directory order.
    var entries: [ZipEntry]

    /// The largest central directory read (it is read into memory whole).
    static let maximumDirectoryBytes: Int64 = 64 << 20
    private static let endRecordBytes = 22
    private static let maximumCommentBytes = 65_535

    /// Reads the central directory of the archive in `file`.
    ///
    /// - Parameters:
    ///   - size: The archive's size in bytes.
    ///   - maxMembers: The most entries accepted (`UnzipOptions.maxMembers`).
    ///   - archive: The archive's URL, for messages.
    /// - Throws: `ArchiveCorruption` when the structure is damaged or unsupported (split archives);
    ///   `SpoolError.archiveLimitExceeded` for too many entries, an oversized directory or overlapping members (a zip
    ///   bomb's trick); `SpoolError.io`.
    static func read(_ file: ScratchFile, size: Int64, maxMembers: Int, archive: String) async throws -> ZipDirectory {
        try await BlockingIO.run {
            try readBlocking(file, size: size, maxMembers: maxMembers, archive: archive)
        }
    }

    private static func readBlocking(
        _ file: ScratchFile, size: Int64, maxMembers: Int, archive: String
    ) throws -> ZipDirectory {
        guard size >= Int64(endRecordBytes) else {
            throw ArchiveCorruption(reason: "\(size) bytes is too short for a zip archive")
        }
        // The end record is in the last 22 + 65,535 bytes (the comment is at most that long).
        let tailStart = max(0, size - Int64(endRecordBytes + maximumCommentBytes))
        let tail = try file.readBlocking(at: tailStart, count: Int(size - tailStart))
        guard let endIndex = findEndRecord(in: tail) else {
            throw ArchiveCorruption(reason: "no end of central directory record (not a zip archive, or truncated)")
        }
        let end = ByteReader(tail, from: endIndex)
        let endOffset = tailStart + Int64(endIndex)
        guard end.u16(4) == 0, end.u16(6) == 0 else {
            throw ArchiveCorruption(reason: "the archive is split across several files, which is not supported")
        }
        var entryCount = UInt64(end.u16(10))
        var directorySize = UInt64(end.u32(12))
        var directoryOffset = UInt64(end.u32(16))
        var directoryEnd = endOffset

        // A zip64 locator just before the end record points at the zip64 end record with 64-bit fields.
        if endOffset >= 20, let locator = try? file.readBlocking(at: endOffset - 20, count: 20),
            locator.count == 20, ByteReader(locator).u32(0) == 0x0706_4b50
        {
            let recordOffset = ByteReader(locator).u64(8)
            guard recordOffset <= UInt64(endOffset) - 56 else {
                throw ArchiveCorruption(reason: "the zip64 end record is outside the file")
            }
            let record = ByteReader(try file.readBlocking(at: Int64(recordOffset), count: 56))
            guard record.count == 56, record.u32(0) == 0x0606_4b50 else {
                throw ArchiveCorruption(reason: "the zip64 locator does not point at a zip64 end record")
            }
            entryCount = record.u64(32)
            directorySize = record.u64(40)
            directoryOffset = record.u64(48)
            directoryEnd = Int64(recordOffset)
        } else if entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            throw ArchiveCorruption(reason: "the end record asks for zip64 values but there is no zip64 record")
        }

        guard entryCount <= UInt64(maxMembers) else {
            throw SpoolError(
                .archiveLimitExceeded,
                "zip archive \(Validation.quoted(archive)) has \(entryCount) entries, more than the limit of "
                    + "\(maxMembers) (UnzipOptions.maxMembers); refused and nothing of it was stored: raise the limit, "
                    + "or write it without unzipResources")
        }
        guard directorySize <= UInt64(maximumDirectoryBytes) else {
            throw SpoolError(
                .archiveLimitExceeded,
                "zip archive \(Validation.quoted(archive)) has a central directory of \(directorySize) bytes, more "
                    + "than the \(maximumDirectoryBytes) read; refused and nothing of it was stored: write it without "
                    + "unzipResources")
        }
        // Bytes before the archive proper (a self-extractor's stub) shift every recorded offset by the same amount.
        guard directoryOffset <= UInt64(directoryEnd), directorySize <= UInt64(directoryEnd) - directoryOffset else {
            throw ArchiveCorruption(reason: "the central directory's recorded position is past its end")
        }
        let shift = Int64(UInt64(directoryEnd) - directoryOffset - directorySize)
        let directoryStart = Int64(directoryOffset) + shift
        let directory = try file.readBlocking(at: directoryStart, count: Int(directorySize))
        guard directory.count == Int(directorySize) else {
            throw ArchiveCorruption(reason: "the central directory is cut short")
        }

        var entries: [ZipEntry] = []
        entries.reserveCapacity(Int(entryCount))
        var position = 0
        for index in 0..<Int(entryCount) {
            var entry = try readDirectoryHeader(directory, at: &position, index: index, shift: shift)
            entry.dataOffset = try dataOffset(of: entry, in: file, before: directoryStart)
            entries.append(entry)
        }
        try checkNoOverlap(entries, archive: archive)
        return ZipDirectory(entries: entries)
    }

    /// The start of the last end record signature whose comment fits in the file.
    private static func findEndRecord(in tail: [UInt8]) -> Int? {
        var index = tail.count - endRecordBytes
        while index >= 0 {
            if tail[index] == 0x50, tail[index + 1] == 0x4b, tail[index + 2] == 0x05, tail[index + 3] == 0x06,
                index + endRecordBytes + Int(ByteReader(tail, from: index).u16(20)) <= tail.count
            {
                return index
            }
            index -= 1
        }
        return nil
    }

    private static func readDirectoryHeader(
        _ directory: [UInt8], at position: inout Int, index: Int, shift: Int64
    ) throws -> ZipEntry {
        let header = ByteReader(directory, from: position)
        guard header.available >= 46, header.u32(0) == 0x0201_4b50 else {
            throw ArchiveCorruption(reason: "central directory entry \(index + 1) is damaged")
        }
        let nameLength = Int(header.u16(28))
        let extraLength = Int(header.u16(30))
        let commentLength = Int(header.u16(32))
        guard header.available >= 46 + nameLength + extraLength + commentLength else {
            throw ArchiveCorruption(reason: "central directory entry \(index + 1) runs past the directory")
        }
        let flags = header.u16(8)
        let nameBytes = Array(directory[(position + 46)..<(position + 46 + nameLength)])
        var compressedSize = UInt64(header.u32(20))
        var uncompressedSize = UInt64(header.u32(24))
        var localOffset = UInt64(header.u32(42))
        // Zip64 extra field: 64-bit values, in this order, for the fields set to all ones.
        var extra = ByteReader(directory, from: position + 46 + nameLength, count: extraLength)
        while extra.available >= 4 {
            let id = extra.u16(0)
            let length = Int(extra.u16(2))
            guard extra.available >= 4 + length else { break }
            if id == 0x0001 {
                var field = ByteReader(extra, from: 4, count: length)
                if uncompressedSize == 0xFFFF_FFFF { uncompressedSize = try field.next64(entry: index) }
                if compressedSize == 0xFFFF_FFFF { compressedSize = try field.next64(entry: index) }
                if localOffset == 0xFFFF_FFFF { localOffset = try field.next64(entry: index) }
            }
            extra = ByteReader(extra, from: 4 + length, count: extra.available - 4 - length)
        }
        guard compressedSize <= UInt64(Int64.max), uncompressedSize <= UInt64(Int64.max),
            localOffset <= UInt64(Int64.max - shift)
        else {
            throw ArchiveCorruption(reason: "central directory entry \(index + 1) has impossible sizes")
        }
        position += 46 + nameLength + extraLength + commentLength
        return ZipEntry(
            name: decodeName(nameBytes, utf8Flag: flags & 0x0800 != 0), flags: flags, method: header.u16(10),
            crc32: header.u32(16), compressedSize: Int64(compressedSize), uncompressedSize: Int64(uncompressedSize),
            localHeaderOffset: Int64(localOffset) + shift, dataOffset: 0, madeByHost: UInt8(header.u16(4) >> 8),
            externalAttributes: header.u32(38))
    }

    /// Where the member's data starts: after its local header, whose own name and extra lengths count.
    private static func dataOffset(of entry: ZipEntry, in file: ScratchFile, before directoryStart: Int64) throws
        -> Int64
    {
        let header = ByteReader(try file.readBlocking(at: entry.localHeaderOffset, count: 30))
        guard header.count == 30, header.u32(0) == 0x0403_4b50 else {
            throw ArchiveCorruption(
                reason: "member \(Validation.quoted(entry.name)) has no local header where the directory "
                    + "says")
        }
        let start = entry.localHeaderOffset + 30 + Int64(header.u16(26)) + Int64(header.u16(28))
        guard start <= directoryStart, entry.compressedSize <= directoryStart - start else {
            throw ArchiveCorruption(
                reason: "member \(Validation.quoted(entry.name)) runs into the central directory "
                    + "(truncated or damaged)")
        }
        return start
    }

    /// Members whose bytes overlap are how non-recursive zip bombs reach huge ratios (Fifield, 2019): refused.
    private static func checkNoOverlap(_ entries: [ZipEntry], archive: String) throws {
        let sorted = entries.sorted { $0.localHeaderOffset < $1.localHeaderOffset }
        for (previous, next) in zip(sorted, sorted.dropFirst())
        where previous.dataOffset + previous.compressedSize > next.localHeaderOffset {
            throw SpoolError(
                .archiveLimitExceeded,
                "zip archive \(Validation.quoted(archive)): members \(Validation.quoted(previous.name)) and "
                    + "\(Validation.quoted(next.name)) share bytes, a zip bomb's trick; refused and "
                    + "nothing of it was stored")
        }
    }

    /// UTF-8 when the flag says so or the bytes are valid UTF-8 (many tools omit the flag); else code page 437,
    /// the format's original character set.
    private static func decodeName(_ bytes: [UInt8], utf8Flag: Bool) -> String {
        if utf8Flag || bytes.allSatisfy({ $0 < 0x80 }) {
            return String(decoding: bytes, as: UTF8.self)
        }
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        return String(bytes.map { $0 < 0x80 ? Character(UnicodeScalar($0)) : codePage437High[Int($0 - 0x80)] })
    }

    private static let codePage437High = Array(
        "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀"
            + "αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{00A0}")
}

/// Little-endian fields of a byte array, read at offsets from a base; reads past the end give zero (callers check
/// `available` first where it matters).
private struct ByteReader {
    let bytes: [UInt8]
    let base: Int
    let count: Int

    init(_ bytes: [UInt8], from base: Int = 0, count: Int? = nil) {
        self.bytes = bytes
        self.base = base
        self.count = count ?? max(0, bytes.count - base)
    }

    init(_ reader: ByteReader, from offset: Int, count: Int) {
        self.init(reader.bytes, from: reader.base + offset, count: count)
    }

    var available: Int { count }

    func byte(_ offset: Int) -> UInt64 {
        guard offset < count, base + offset < bytes.count else { return 0 }
        return UInt64(bytes[base + offset])
    }

    func u16(_ offset: Int) -> UInt16 { UInt16(byte(offset) | byte(offset + 1) << 8) }
    func u32(_ offset: Int) -> UInt32 { UInt32(UInt64(u16(offset)) | UInt64(u16(offset + 2)) << 16) }
    func u64(_ offset: Int) -> UInt64 { UInt64(u32(offset)) | UInt64(u32(offset + 4)) << 32 }

    /// Reads the next 64-bit value of a zip64 extra field.
    mutating func next64(entry index: Int) throws -> UInt64 {
        guard count >= 8 else {
            throw ArchiveCorruption(reason: "central directory entry \(index + 1) has a short zip64 field")
        }
        let value = u64(0)
        self = ByteReader(self, from: 8, count: count - 8)
        return value
    }
}
