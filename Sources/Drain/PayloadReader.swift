import BlockingWork
import Dispatch
import Foundation
import Hashing

/// Reads spool payload files back for delivery, on threads of its own (never the cooperative pool).
///
/// A single-PUT payload is read whole for its SHA-256 (the payload hash that is signed) and CRC32C before it is
/// streamed. A multipart payload is read part by part — up to four equal parts at a time, hashed side by side — right before
/// the parts are sent, for each part's SHA-256 and CRC32C; the whole file's CRC32C is then combined from the parts'
/// instead of being read for again. So each byte is read once to be hashed and once to be sent, and hashed once.
enum PayloadReader {
    private static let queue = BlockingQueue(label: "pipeline-storage.payload-read")
    /// Bytes per read: enough that system calls cost nothing next to the hashing, few enough that a piece is still in
    /// the CPU's cache when it is hashed right after.
    private static let pieceBytes = 256 << 10

    /// What a read found: the size read, and the digests of those bytes.
    struct Digest: Sendable {
        var size: Int64
        /// Hex SHA-256.
        var sha256: String
        var crc32c: UInt32
    }

    /// The whole file's size, SHA-256 and CRC32C, in one pass.
    ///
    /// - Throws: `PayloadError` `payload-missing` when it cannot be opened or read.
    static func digestFile(path: String) async throws -> Digest {
        try await blocking { try digest(path: path, offset: 0, length: nil) }
    }

    /// The SHA-256 and CRC32C of `length` bytes at `offset` (a part, before it is sent).
    ///
    /// - Throws: `PayloadError`: `payload-missing` when the file cannot be read, `corrupt-payload` when it ends
    ///   before the range does (it shrank after its size was checked).
    static func digestRange(path: String, offset: Int64, length: Int64) async throws -> Digest {
        try await blocking { try digest(path: path, offset: offset, length: length) }
    }

    /// The SHA-256s and CRC32Cs of up to four ranges of the same length (parts before they are sent), hashed side by
    /// side (``SHA256MultiHasher``): four parts cost about 57% of what hashing them one after the other does.
    ///
    /// - Throws: `PayloadError`, as ``digestRange(path:offset:length:)``.
    static func digestRanges(path: String, offsets: [Int64], length: Int64) async throws -> [Digest] {
        try await blocking { try digestGroup(path: path, offsets: offsets, length: length) }
    }

    /// The CRC32C of `length` bytes at `offset` (a part the store already holds whose checksum was never recorded).
    ///
    /// - Throws: `PayloadError`, as ``digestRange(path:offset:length:)``.
    static func crc32c(path: String, offset: Int64, length: Int64) async throws -> UInt32 {
        try await blocking {
            var crc32c = CRC32C()
            try read(path: path, offset: offset, length: length) { crc32c.update($0) }
            return crc32c.value
        }
    }

    /// The file's size, without reading it.
    ///
    /// - Throws: `PayloadError` `payload-missing` when it does not exist or cannot be examined.
    static func size(path: String) async throws -> Int64 {
        try await blocking {
            var info = stat()
            guard stat(path, &info) == 0 else { throw unreadable(path) }
            return Int64(info.st_size)
        }
    }

    // MARK: Blocking I/O

    private static func digest(path: String, offset: Int64, length: Int64?) throws -> Digest {
        var sha256 = SHA256Hasher()
        var crc32c = CRC32C()
        let size = try read(path: path, offset: offset, length: length) { piece in
            sha256.update(piece)
            crc32c.update(piece)
        }
        return Digest(size: size, sha256: sha256.finalize().hexString, crc32c: crc32c.value)
    }

    private static func digestGroup(path: String, offsets: [Int64], length: Int64) throws -> [Digest] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw unreadable(path) }
        defer { close(descriptor) }
        var sha256 = SHA256MultiHasher(count: offsets.count)
        var crc32c = Array(repeating: CRC32C(), count: offsets.count)
        // A piece of each range per round: together they stay within the CPU's second-level cache while hashed.
        let piece = groupPieceBytes
        var buffers = Array(repeating: [UInt8](repeating: 0, count: piece), count: offsets.count)
        var done: Int64 = 0
        while done < length {
            let wanted = Int(min(Int64(piece), length - done))
            for (index, offset) in offsets.enumerated() {
                try readFully(
                    descriptor, path: path, into: &buffers[index], count: wanted, at: offset + done,
                    rangeEnd: offset + length)
            }
            withPieces(buffers, count: wanted) { pieces in
                sha256.update(pieces)
                for (index, bytes) in pieces.enumerated() { crc32c[index].update(bytes) }
            }
            done += Int64(wanted)
        }
        return zip(sha256.finalize(), crc32c).map { Digest(size: length, sha256: $0.hexString, crc32c: $1.value) }
    }

    /// Bytes read from each range per round when several are hashed together.
    private static let groupPieceBytes = 128 << 10

    /// Calls `body` with the first `count` bytes of each buffer.
    private static func withPieces(
        _ buffers: [[UInt8]], count: Int, _ body: ([UnsafeRawBufferPointer]) -> Void
    ) {
        func nest(_ index: Int, _ pieces: [UnsafeRawBufferPointer]) {
            guard index < buffers.count else { return body(pieces) }
            buffers[index].withUnsafeBytes {
                nest(index + 1, pieces + [UnsafeRawBufferPointer(rebasing: $0.prefix(count))])
            }
        }
        nest(0, [])
    }

    /// Reads exactly `count` bytes at `offset` into the start of `buffer`.
    ///
    /// - Throws: `PayloadError` `payload-missing` when reading fails, `corrupt-payload` when the file ends first.
    private static func readFully(
        _ descriptor: Int32, path: String, into buffer: inout [UInt8], count: Int, at offset: Int64, rangeEnd: Int64
    ) throws {
        var got = 0
        while got < count {
            let read = buffer.withUnsafeMutableBytes {
                pread(descriptor, $0.baseAddress! + got, count - got, off_t(offset + Int64(got)))
            }
            if read < 0 && errno == EINTR { continue }
            guard read >= 0 else { throw readFailed(path) }
            guard read > 0 else { throw endedEarly(path, at: offset + Int64(got), rangeEnd: rangeEnd) }
            got += read
        }
    }

    /// Reads from `offset` to `offset + length` (to the end of the file when `length` is nil), handing each piece to
    /// `body` as it arrives; returns the bytes read.
    @discardableResult
    private static func read(
        path: String, offset: Int64, length: Int64?, _ body: (UnsafeRawBufferPointer) -> Void
    ) throws -> Int64 {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw unreadable(path) }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: pieceBytes)
        var done: Int64 = 0
        while length.map({ done < $0 }) ?? true {
            let wanted = Int(min(Int64(buffer.count), length.map { $0 - done } ?? Int64(buffer.count)))
            let got = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, wanted, off_t(offset + done)) }
            if got < 0 && errno == EINTR { continue }
            guard got >= 0 else { throw readFailed(path) }
            if got == 0 {
                guard let length else { break }
                throw endedEarly(path, at: offset + done, rangeEnd: offset + length)
            }
            buffer.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0.prefix(got))) }
            done += Int64(got)
        }
        return done
    }

    private static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await queue.run(body)
    }

    private static func readFailed(_ path: String) -> PayloadError {
        PayloadError(
            code: "payload-missing",
            message: "reading \(path) failed: \(String(cString: strerror(errno))); it was not uploaded")
    }

    private static func endedEarly(_ path: String, at end: Int64, rangeEnd: Int64) -> PayloadError {
        PayloadError(
            code: "corrupt-payload",
            message: "the spooled payload file \(path) ends at byte \(end), before byte \(rangeEnd) it had when its "
                + "delivery began; it was not uploaded. Check the disk, then write the resource again")
    }

    private static func unreadable(_ path: String) -> PayloadError {
        PayloadError(
            code: "payload-missing",
            message: "the spooled payload file \(path) cannot be read: \(String(cString: strerror(errno))); it was not "
                + "uploaded")
    }
}
