internal import COpenSSL

/// The OpenSSL digests this module uses, fetched once per process.
///
/// Explicit fetches avoid OpenSSL 3's implicit per-initialisation provider lookup, which takes a lock every time.
enum DigestAlgorithm: Sendable {
    case sha256
    case md5

    /// The digest length in bytes.
    var byteCount: Int {
        switch self {
        case .sha256: 32
        case .md5: 16
        }
    }

    /// The fetched `EVP_MD`.
    var md: OpaquePointer {
        switch self {
        case .sha256: fetchedSHA256
        case .md5: fetchedMD5
        }
    }
}

// EVP_MD objects are immutable once fetched and documented as safe to share between threads; they are never freed.
nonisolated(unsafe) private let fetchedSHA256: OpaquePointer = fetchDigest("SHA256", properties: nil)
// "-fips" drops the FIPS requirement for this one fetch: Content-MD5 is an integrity check, not a security control, and
// a host running OpenSSL in FIPS mode would otherwise refuse MD5 and crash the upload path.
nonisolated(unsafe) private let fetchedMD5: OpaquePointer = fetchDigest("MD5", properties: "-fips")

private func fetchDigest(_ name: String, properties: String?) -> OpaquePointer {
    guard let md = EVP_MD_fetch(nil, name, properties) else {
        fatalError("OpenSSL cannot provide \(name): \(openSSLErrorDescription())")
    }
    return md
}

/// The oldest error on OpenSSL's per-thread queue, for crash messages.
func openSSLErrorDescription() -> String {
    let code = ERR_get_error()
    guard code != 0 else { return "no OpenSSL error queued" }
    var buffer = [CChar](repeating: 0, count: 256)
    ERR_error_string_n(code, &buffer, buffer.count)
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Stops the process when OpenSSL reports failure.
///
/// These calls only fail on allocation failure or a broken OpenSSL installation, neither of which a caller can handle.
@inline(__always)
func checkOpenSSL(_ result: Int32, _ operation: StaticString) {
    if result != 1 {
        fatalError("\(operation) failed: \(openSSLErrorDescription())")
    }
}

/// Owns one `EVP_MD_CTX` and frees it with the object.
// @unchecked Sendable: the context is only mutated through `DigestState`, which copies it first unless the box is
// uniquely referenced (copy-on-write, like Array's storage), so a box reachable from two threads is only ever read.
final class DigestContext: @unchecked Sendable {
    let pointer: OpaquePointer

    init(_ algorithm: DigestAlgorithm) {
        guard let context = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed") }
        pointer = context
        checkOpenSSL(EVP_DigestInit_ex(context, algorithm.md, nil), "EVP_DigestInit_ex")
    }

    init(copying other: DigestContext) {
        guard let context = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed") }
        pointer = context
        checkOpenSSL(EVP_MD_CTX_copy_ex(context, other.pointer), "EVP_MD_CTX_copy_ex")
    }

    deinit {
        EVP_MD_CTX_free(pointer)
    }
}

/// A running OpenSSL digest with value semantics, shared by the public hashers.
struct DigestState: Sendable {
    private var context: DigestContext
    private let algorithm: DigestAlgorithm

    init(_ algorithm: DigestAlgorithm) {
        self.algorithm = algorithm
        context = DigestContext(algorithm)
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if !isKnownUniquelyReferenced(&context) {
            context = DigestContext(copying: context)
        }
        checkOpenSSL(EVP_DigestUpdate(context.pointer, base, bytes.count), "EVP_DigestUpdate")
    }

    /// The digest of everything so far; finalises a copy so the running state stays usable and shareable.
    func finalize() -> [UInt8] {
        let scratch = DigestContext(copying: context)
        return [UInt8](unsafeUninitializedCapacity: algorithm.byteCount) { buffer, count in
            var length: UInt32 = 0
            checkOpenSSL(EVP_DigestFinal_ex(scratch.pointer, buffer.baseAddress, &length), "EVP_DigestFinal_ex")
            precondition(Int(length) == algorithm.byteCount, "unexpected digest length \(length)")
            count = Int(length)
        }
    }

    /// The digest of `bytes` without keeping a context around.
    static func oneShot(_ algorithm: DigestAlgorithm, _ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: algorithm.byteCount) { buffer, count in
            var length: UInt32 = 0
            let result = EVP_Digest(bytes.baseAddress, bytes.count, buffer.baseAddress, &length, algorithm.md, nil)
            checkOpenSSL(result, "EVP_Digest")
            precondition(Int(length) == algorithm.byteCount, "unexpected digest length \(length)")
            count = Int(length)
        }
    }
}

/// Calls `body` with the bytes of `bytes` in one contiguous buffer, copying only when the sequence has no storage.
@inline(__always)
func withContiguousBytes<R>(_ bytes: some Sequence<UInt8>, _ body: (UnsafeRawBufferPointer) -> R) -> R {
    if let result = bytes.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) {
        return result
    }
    return Array(bytes).withUnsafeBytes(body)
}
