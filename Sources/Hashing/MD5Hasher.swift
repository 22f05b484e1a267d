/// An incremental MD5 digest computed by OpenSSL, for S3's `Content-MD5` header.
///
/// MD5 is broken as a cryptographic hash; use it only where a protocol asks for it as an integrity check. It is
/// fetched with FIPS requirements waived, so it keeps working on hosts that run OpenSSL in FIPS mode.
/// Same semantics as ``SHA256Hasher``: a value with copy-on-write state, allocation-free `update`, and a `finalize()`
/// that leaves the hasher usable.
public struct MD5Hasher: Sendable {
    /// The length of an MD5 digest in bytes: 16.
    public static let digestByteCount = 16

    private var state = DigestState(.md5)

    /// Creates a hasher for the empty message.
    public init() {}

    /// Feeds `bytes` to the digest.
    ///
    /// An empty buffer, including one with a nil base address, is a no-op.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        state.update(bytes)
    }

    /// Feeds `bytes` to the digest: `[UInt8]`, `ArraySlice<UInt8>`, `Data`, `String.UTF8View` and the like.
    ///
    /// Sequences with contiguous storage are hashed in place; any other sequence is first copied into an array.
    public mutating func update(_ bytes: some Sequence<UInt8>) {
        withContiguousBytes(bytes) { state.update($0) }
    }

    /// Returns the 16-byte digest of everything fed so far.
    ///
    /// The hasher is left unchanged, so it can keep absorbing data and be finalised again.
    public func finalize() -> [UInt8] {
        state.finalize()
    }

    /// Returns the 16-byte MD5 digest of `bytes` in one call.
    ///
    /// Sequences with contiguous storage are hashed in place; any other sequence is first copied into an array.
    public static func hash(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        withContiguousBytes(bytes) { DigestState.oneShot(.md5, $0) }
    }
}
