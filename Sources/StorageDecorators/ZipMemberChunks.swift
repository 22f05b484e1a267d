import Spool

/// A zip member's expanded bytes, read from the archive's scratch file a chunk at a time and inflated through zlib,
/// never reading past the member's compressed size and never producing more than its declared size; at the end the
/// size and CRC-32 are checked. Any mismatch is an `ArchiveCorruption`. Iterate once.
struct ZipMemberChunks: AsyncSequence {
    typealias Element = [UInt8]

    /// Compressed bytes are read in chunks of this size; expanded ones handed on in chunks of at most this size.
    static let chunkBytes = 256 << 10

    let file: ScratchFile
    let entry: ZipEntry

    func makeAsyncIterator() -> Iterator { Iterator(file: file, entry: entry) }

    /// Reads and expands one member.
    final class Iterator: AsyncIteratorProtocol {
        private let file: ScratchFile
        private let entry: ZipEntry
        private var inflater: ZlibInflater?
        private var position: Int64
        private var remaining: Int64
        private var input: [UInt8] = []
        private var inputIndex = 0
        private var output: [UInt8]
        private var produced: Int64 = 0
        private var crc: UInt32 = 0
        private var ended = false
        private var finished = false

        init(file: ScratchFile, entry: ZipEntry) {
            self.file = file
            self.entry = entry
            position = entry.dataOffset
            remaining = entry.compressedSize
            output = entry.method == 8 ? [UInt8](repeating: 0, count: ZipMemberChunks.chunkBytes) : []
        }

        func next() async throws -> [UInt8]? {
            if finished { return nil }
            if entry.method == 0 { return try await nextStored() }
            return try await nextInflated()
        }

        private func nextStored() async throws -> [UInt8]? {
            guard remaining > 0 else { return try finish() }
            let chunk = try await readCompressed()
            try account(chunk.count)
            chunk.withUnsafeBytes { crc = ZlibInflater.crc32(crc, $0) }
            return chunk
        }

        private func nextInflated() async throws -> [UInt8]? {
            if inflater == nil { inflater = try ZlibInflater(.rawDeflate) }
            while !ended {
                if inputIndex == input.count {
                    guard remaining > 0 else { throw corruption("its deflate data ends early (truncated)") }
                    input = try await readCompressed()
                    inputIndex = 0
                }
                let step = try input.withUnsafeBytes { bytes in
                    try output.withUnsafeMutableBytes { room in
                        try inflater!.inflate(UnsafeRawBufferPointer(rebasing: bytes[inputIndex...]), into: room)
                    }
                }
                inputIndex += step.consumed
                ended = step.ended
                if step.produced > 0 {
                    try account(step.produced)
                    output.withUnsafeBytes {
                        crc = ZlibInflater.crc32(crc, UnsafeRawBufferPointer(rebasing: $0[..<step.produced]))
                    }
                    return Array(output[..<step.produced])
                }
                if step.consumed == 0 && !step.ended { throw corruption("zlib made no progress on its deflate data") }
            }
            return try finish()
        }

        private func readCompressed() async throws -> [UInt8] {
            let count = Int(Swift.min(Int64(ZipMemberChunks.chunkBytes), remaining))
            let chunk = try await file.read(at: position, count: count)
            guard chunk.count == count else { throw corruption("its data is cut short") }
            position += Int64(count)
            remaining -= Int64(count)
            return chunk
        }

        /// Counts expanded bytes; more than the declared size is damage (or a lie meant to slip past the limits).
        private func account(_ count: Int) throws {
            produced += Int64(count)
            guard produced <= entry.uncompressedSize else {
                throw corruption("it expands past its declared size of \(entry.uncompressedSize) bytes")
            }
        }

        private func finish() throws -> [UInt8]? {
            guard produced == entry.uncompressedSize else {
                throw corruption("it has \(produced) bytes where its header says \(entry.uncompressedSize)")
            }
            guard crc == entry.crc32 else {
                throw corruption(
                    "its CRC-32 is \(hex(crc)) where its header says \(hex(entry.crc32)) (damaged data)")
            }
            finished = true
            return nil
        }

        private func corruption(_ reason: String) -> ArchiveCorruption {
            ArchiveCorruption(reason: "member \(Validation.quoted(entry.name)) is corrupt: \(reason)")
        }

        private func hex(_ value: UInt32) -> String {
            let digits = String(value, radix: 16)
            return String(repeating: "0", count: 8 - digits.count) + digits
        }
    }
}
