/// An incremental SHA-256 digest computed by OpenSSL (SHA-NI where the CPU has it).
///
/// A hasher is a value: assigning it to another variable forks the running digest, and the two copies then evolve
/// independently (copy-on-write: the OpenSSL context is duplicated on the first update after a copy, never before).
/// `update` does no allocation, so feeding a multi-GiB stream in chunks costs only the hashing itself.
/// `finalize()` does not consume or reset the hasher: it returns the digest of everything fed so far and may be called
/// again after more updates.
///
/// ```swift
/// var hasher = SHA256Hasher()
/// hasher.update(chunk)
/// let digest = hasher.finalize()
/// ```
public struct SHA256Hasher: Sendable {
    /// The length of a SHA-256 digest in bytes: 32.
    public static let digestByteCount = 32

    private var state = DigestState(.sha256)

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

    /// Returns the 32-byte digest of everything fed so far.
    ///
    /// The hasher is left unchanged, so it can keep absorbing data and be finalised again.
    public func finalize() -> [UInt8] {
        state.finalize()
    }

    /// Returns the 32-byte SHA-256 digest of `bytes` in one call.
    ///
    /// Cheaper than creating, updating and finalising a hasher when the whole message is at hand.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        DigestState.oneShot(.sha256, bytes)
    }

    /// Returns the 32-byte SHA-256 digest of `bytes` in one call.
    ///
    /// Sequences with contiguous storage are hashed in place; any other sequence is first copied into an array.
    public static func hash(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        withContiguousBytes(bytes) { DigestState.oneShot(.sha256, $0) }
    }

    /// Returns the SHA-256 digest of `bytes` as 64 lowercase hexadecimal digits.
    ///
    /// The form SigV4 uses for payload hashes and canonical-request hashes.
    public static func hexDigest(_ bytes: some Sequence<UInt8>) -> String {
        hash(bytes).hexString
    }
}
