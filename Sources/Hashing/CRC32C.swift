internal import CCRC32C

/// An incremental CRC-32C (Castagnoli) checksum, the `CRC32C` algorithm of S3's flexible checksums.
///
/// Computed with the CPU's crc32 instruction when it has one (SSE4.2), with portable tables otherwise; both give the
/// same values. The checksum is a plain `UInt32`, so a value can be stored and resumed with ``init(resuming:)``.
///
/// ```swift
/// var crc = CRC32C()
/// crc.update(chunk)
/// headers["x-amz-checksum-crc32c"] = crc.base64BigEndian
/// ```
public struct CRC32C: Sendable, Hashable {
    /// The checksum of everything fed so far; 0 for no data.
    public private(set) var value: UInt32

    /// Creates a checksum of no data.
    public init() {
        value = 0
    }

    /// Continues a checksum from a previously computed `value`.
    ///
    /// Feeding more bytes then gives the checksum of the earlier data followed by the new bytes, so a checksum can be
    /// persisted and resumed, or a stored value turned into a header with ``base64BigEndian``.
    public init(resuming value: UInt32) {
        self.value = value
    }

    /// Feeds `bytes` to the checksum.
    ///
    /// An empty buffer, including one with a nil base address, is a no-op.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        value = pipeline_crc32c_update(value, bytes.baseAddress, bytes.count)
    }

    /// Feeds `bytes` to the checksum: `[UInt8]`, `ArraySlice<UInt8>`, `Data`, `String.UTF8View` and the like.
    ///
    /// Sequences with contiguous storage are read in place; any other sequence is first copied into an array.
    public mutating func update(_ bytes: some Sequence<UInt8>) {
        value = withContiguousBytes(bytes) { pipeline_crc32c_update(value, $0.baseAddress, $0.count) }
    }

    /// Returns the CRC-32C of `bytes` in one call.
    ///
    /// `CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283`.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        pipeline_crc32c_update(0, bytes.baseAddress, bytes.count)
    }

    /// Returns the CRC-32C of `bytes` in one call.
    ///
    /// Sequences with contiguous storage are read in place; any other sequence is first copied into an array.
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        withContiguousBytes(bytes) { pipeline_crc32c_update(0, $0.baseAddress, $0.count) }
    }

    /// The checksum of two pieces of data one after the other, from the checksum of each and the second one's length.
    ///
    /// Needs no data and takes O(log `secondLength`) steps, so the checksums of a file's parts, computed as each part
    /// is read, give the whole file's checksum without reading it again (zlib's `crc32_combine` technique over the
    /// Castagnoli polynomial).
    ///
    /// - Parameters:
    ///   - first: The checksum of the first piece.
    ///   - second: The checksum of the second piece.
    ///   - secondLength: The second piece's length in bytes (not negative).
    /// - Returns: The checksum of the first piece followed by the second.
    public static func combine(_ first: UInt32, _ second: UInt32, secondLength: Int64) -> UInt32 {
        precondition(secondLength >= 0, "a piece of data cannot have a negative length")
        return pipeline_crc32c_combine(first, second, UInt64(secondLength))
    }

    /// Extends the checksum with a piece of data known only by its checksum and length.
    ///
    /// `a.append(checksum: CRC32C.checksum(b), length: b.count)` leaves `a` as if `a.update(b)` had been called.
    ///
    /// - Parameters:
    ///   - checksum: The checksum of the piece that follows.
    ///   - length: Its length in bytes (not negative).
    public mutating func append(checksum: UInt32, length: Int64) {
        value = Self.combine(value, checksum, secondLength: length)
    }

    /// Reads a checksum in the form of S3's `x-amz-checksum-crc32c` header: base64 of four big-endian bytes.
    ///
    /// The inverse of ``base64BigEndian``: `CRC32C(base64BigEndian: "yZRlqg==")?.value == 0xC99465AA`.
    ///
    /// - Parameter text: Eight characters of standard padded base64.
    /// - Returns: nil when `text` is not the base64 of exactly four bytes.
    public init?(base64BigEndian text: String) {
        guard let bytes = base64DecodeFourBytes(text) else { return nil }
        value = bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// The checksum as S3's `x-amz-checksum-crc32c` header wants it: base64 of the four big-endian bytes.
    ///
    /// For example "hello world" has checksum 0xC99465AA and header value "yZRlqg==".
    public var base64BigEndian: String {
        base64Encode([UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)])
    }

    /// Whether this process computes CRC-32C with the CPU's crc32 instruction rather than lookup tables.
    ///
    /// Informational, for benchmarks and diagnostics: the two paths produce identical values.
    public static var isHardwareAccelerated: Bool {
        pipeline_crc32c_hardware_available() != 0
    }

    /// Extends `crc` with `bytes` using the portable table implementation regardless of the CPU.
    ///
    /// Lets tests compare the hardware path against an independent implementation on the same machine.
    @_spi(Testing)
    public static func portableUpdate(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        pipeline_crc32c_update_portable(crc, bytes.baseAddress, bytes.count)
    }
}
