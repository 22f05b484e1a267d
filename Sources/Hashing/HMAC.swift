internal import COpenSSL

/// Keyed-hash message authentication codes computed by OpenSSL.
public enum HMAC {
    /// Returns the 32-byte HMAC-SHA256 of `message` under `key`.
    ///
    /// Keys of any length are accepted: keys longer than 64 bytes are hashed first, as RFC 2104 specifies.
    /// Used for SigV4 signing-key derivation and request signatures.
    public static func sha256(key: some Sequence<UInt8>, message: some Sequence<UInt8>) -> [UInt8] {
        withContiguousBytes(key) { key in
            withContiguousBytes(message) { message in
                compute(.sha256, key: key, message: message)
            }
        }
    }

    private static func compute(
        _ algorithm: DigestAlgorithm, key: UnsafeRawBufferPointer, message: UnsafeRawBufferPointer
    ) -> [UInt8] {
        precondition(key.count <= Int32.max, "HMAC key longer than 2 GiB")
        return [UInt8](unsafeUninitializedCapacity: algorithm.byteCount) { output, count in
            // An empty buffer may have no base address, and OpenSSL does not document null as valid for zero lengths.
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1) { placeholder in
                let placeholderPointer = UnsafeRawPointer(placeholder.baseAddress!)
                let keyPointer = key.baseAddress ?? placeholderPointer
                let messagePointer = (message.baseAddress ?? placeholderPointer).assumingMemoryBound(to: UInt8.self)
                var length: UInt32 = 0
                let result = COpenSSL.HMAC(
                    algorithm.md, keyPointer, Int32(key.count), messagePointer, message.count, output.baseAddress,
                    &length)
                guard result != nil, Int(length) == algorithm.byteCount else {
                    fatalError("HMAC failed: \(openSSLErrorDescription())")
                }
                count = Int(length)
            }
        }
    }
}
