import Foundation
import Hashing

/// Server-side encryption of an object.
public enum ServerSideEncryption: Sendable, Hashable {
    /// SSE-S3 (`AES256`).
    case aes256
    /// SSE-KMS with a key id, alias or ARN (nil: the AWS-managed key), optionally with an S3 bucket key.
    case kms(keyID: String?, bucketKey: Bool)

    var headers: [(name: String, value: String)] {
        switch self {
        case .aes256: return [("x-amz-server-side-encryption", "AES256")]
        case .kms(let keyID, let bucketKey):
            var headers = [(name: "x-amz-server-side-encryption", value: "aws:kms")]
            if let keyID { headers.append(("x-amz-server-side-encryption-aws-kms-key-id", keyID)) }
            if bucketKey { headers.append(("x-amz-server-side-encryption-bucket-key-enabled", "true")) }
            return headers
        }
    }
}

/// Checksums sent with a body, for S3 to verify before it stores anything.
public struct BodyChecksums: Sendable, Hashable {
    /// CRC32C of the body (sent as `x-amz-checksum-crc32c`).
    public var crc32c: UInt32?
    /// Hex SHA-256 of the body (sent as `x-amz-checksum-sha256`, and used as the signed payload hash).
    public var sha256Hex: String?
    /// Base64 MD5 of the body (sent as `Content-MD5`).
    public var md5Base64: String?

    /// Checksums; all optional.
    public init(crc32c: UInt32? = nil, sha256Hex: String? = nil, md5Base64: String? = nil) {
        self.crc32c = crc32c
        self.sha256Hex = sha256Hex
        self.md5Base64 = md5Base64
    }

    var headers: [(name: String, value: String)] {
        var headers: [(name: String, value: String)] = []
        if let crc32c { headers.append(("x-amz-checksum-crc32c", CRC32C(resuming: crc32c).base64BigEndian)) }
        if let sha256Hex, let bytes = Hex.decode(sha256Hex) {
            headers.append(("x-amz-checksum-sha256", Data(bytes).base64EncodedString()))
        }
        if let md5Base64 { headers.append(("Content-MD5", md5Base64)) }
        return headers
    }

    var isEmpty: Bool { crc32c == nil && sha256Hex == nil && md5Base64 == nil }
}

/// A PutObject request.
public struct PutObjectRequest: Sendable {
    /// The bucket.
    public var bucket: String
    /// The object key (any UTF-8, up to 1,024 bytes).
    public var key: String
    /// The bytes.
    public var body: RequestBody
    /// `Content-Type`.
    public var contentType: String?
    /// Checksums S3 verifies.
    public var checksums = BodyChecksums()
    /// `If-None-Match: *`: create only if absent (412 `PreconditionFailed` otherwise).
    public var ifNoneMatch = false
    /// User metadata (`x-amz-meta-*`); see `UserMetadata` for the encoding of non-ASCII values and the 2 KB limit.
    public var metadata: [String: String] = [:]
    /// Storage class.
    public var storageClass: String?
    /// Server-side encryption.
    public var serverSideEncryption: ServerSideEncryption?
    /// Object tags.
    public var tags: [String: String] = [:]
    /// Bound on the whole upload.
    public var timeout: Duration?

    /// A request to store `body` under `key`.
    public init(bucket: String, key: String, body: RequestBody) {
        self.bucket = bucket
        self.key = key
        self.body = body
    }
}

/// What S3 answered to a write.
public struct PutObjectOutput: Sendable, Hashable {
    /// The object's ETag (with its quotes removed).
    public var etag: String
    /// The version id, on a versioned bucket.
    public var versionID: String?
    /// The CRC32C S3 computed, base64, when one was sent.
    public var checksumCRC32C: String?
}

/// An object's metadata, from HeadObject or GetObject.
public struct ObjectMetadata: Sendable, Hashable {
    /// Size in bytes.
    public var contentLength: Int64
    /// ETag without quotes.
    public var etag: String
    /// Version id.
    public var versionID: String?
    /// `Content-Type`.
    public var contentType: String?
    /// User metadata, keys lowercased, values decoded (RFC 2047 encoded words are decoded).
    public var metadata: [String: String]
    /// CRC32C, base64, when S3 has it.
    public var checksumCRC32C: String?
    /// Storage class (nil means STANDARD).
    public var storageClass: String?
    /// Server-side encryption algorithm.
    public var serverSideEncryption: String?
    /// KMS key, for SSE-KMS.
    public var kmsKeyID: String?
    /// Last modified.
    public var lastModified: Date?

    init(response: HTTPResponse) {
        contentLength = Int64(response.header("content-length") ?? "") ?? response.bodyBytes
        etag = (response.header("etag") ?? "").unquoted
        versionID = response.header("x-amz-version-id")
        contentType = response.header("content-type")
        var metadata: [String: String] = [:]
        for (name, value) in response.headers where name.hasPrefix("x-amz-meta-") {
            metadata[String(name.dropFirst("x-amz-meta-".count))] = UserMetadata.decode(value)
        }
        self.metadata = metadata
        checksumCRC32C = response.header("x-amz-checksum-crc32c")
        storageClass = response.header("x-amz-storage-class")
        serverSideEncryption = response.header("x-amz-server-side-encryption")
        kmsKeyID = response.header("x-amz-server-side-encryption-aws-kms-key-id")
        lastModified = response.header("last-modified").flatMap(HTTPDate.parse)
    }
}

/// User metadata as S3 carries it in `x-amz-meta-*` headers.
///
/// - Keys: 1–128 characters of letters, digits, `-`, `_`, `.` (HTTP token characters S3 keeps as they are);
///   S3 stores them lowercased.
/// - Values: printable ASCII goes as it is. A value with other characters is sent as an RFC 2047 encoded word
///   (`=?UTF-8?B?<base64>?=`), which is what S3 itself does with non-ASCII metadata ("decoded on store, encoded on
///   return"); reading decodes encoded words, so values round-trip whatever the server.
/// - Size: keys plus values (their UTF-8 bytes) at most 2,048 bytes, checked before anything is sent.
public enum UserMetadata {
    /// S3's limit on user metadata, in bytes.
    public static let maximumBytes = 2048

    /// The headers for the metadata.
    ///
    /// - Throws: `S3Error` `MetadataTooLarge` or `InvalidArgument`, naming the key.
    public static func headers(_ metadata: [String: String]) throws -> [(name: String, value: String)] {
        var total = 0
        var headers: [(name: String, value: String)] = []
        for key in metadata.keys.sorted() {
            let value = metadata[key]!
            guard (1...128).contains(key.utf8.count),
                key.utf8.allSatisfy({
                    (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0)
                        || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0)
                        || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-")
                        || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".")
                })
            else {
                throw S3Error(
                    status: 0, code: "InvalidArgument",
                    message: "metadata key '\(key)' is not valid; use 1–128 letters, digits, '-', '_' or '.'",
                    isRetryable: false)
            }
            total += key.utf8.count + value.utf8.count
            headers.append(("x-amz-meta-" + key.lowercased(), encode(value)))
        }
        guard total <= maximumBytes else {
            throw S3Error(
                status: 0, code: "MetadataTooLarge",
                message: "user metadata is \(total) bytes (keys plus values); S3 allows \(maximumBytes): keep large "
                    + "values elsewhere (e.g. a manifest object)", isRetryable: false)
        }
        return headers
    }

    /// A header-safe value: as it is when printable ASCII, else an RFC 2047 encoded word.
    public static func encode(_ value: String) -> String {
        let printable = value.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
        if printable && !value.hasPrefix("=?") { return value }
        return "=?UTF-8?B?" + Data(value.utf8).base64EncodedString() + "?="
    }

    /// Decodes RFC 2047 encoded words (`=?UTF-8?B?...?=`, `=?UTF-8?Q?...?=`); other values are returned as they are.
    public static func decode(_ value: String) -> String {
        guard value.hasPrefix("=?"), value.hasSuffix("?="), value.count > 7 else { return value }
        var result = ""
        for word in value.split(separator: " ") {
            let parts = word.split(separator: "?", omittingEmptySubsequences: false)
            guard parts.count == 5, parts[0] == "=", parts[4] == "=", parts[1].uppercased() == "UTF-8" else {
                return value
            }
            switch parts[2].uppercased() {
            case "B":
                guard let data = Data(base64Encoded: String(parts[3])), let text = String(data: data, encoding: .utf8)
                else { return value }
                result += text
            case "Q":
                var bytes: [UInt8] = []
                var scalars = Array(parts[3].utf8)[...]
                while let byte = scalars.popFirst() {
                    if byte == UInt8(ascii: "_") {
                        bytes.append(0x20)
                    } else if byte == UInt8(ascii: "="), scalars.count >= 2,
                        let decoded = UInt8(String(decoding: scalars.prefix(2), as: UTF8.self), radix: 16)
                    {
                        bytes.append(decoded)
                        scalars = scalars.dropFirst(2)
                    } else {
                        bytes.append(byte)
                    }
                }
                result += String(decoding: bytes, as: UTF8.self)
            default:
                return value
            }
        }
        return result
    }
}

extension S3Client {
    /// The longest object key S3 accepts, in UTF-8 bytes.
    public static let maximumKeyBytes = 1024

    static func checkKey(_ key: String, operation: String) throws {
        guard !key.isEmpty, key.utf8.count <= maximumKeyBytes else {
            throw S3Error.invalidRequest(
                "object key is \(key.utf8.count) bytes; S3 keys are 1–\(maximumKeyBytes) bytes of UTF-8",
                operation: operation)
        }
    }

    /// Stores an object (PutObject).
    ///
    /// Over plain HTTP the payload's SHA-256 is signed (computed by reading the body once more unless
    /// `checksums.sha256Hex` gives it); over TLS with a checksum header the payload is sent `UNSIGNED-PAYLOAD`.
    /// - Throws: `S3Error`: `PreconditionFailed` (412) with `ifNoneMatch` when the key exists, `MetadataTooLarge`,
    ///   `BadDigest`/`InvalidDigest` when a checksum does not match, and transport or service errors.
    @discardableResult
    public func putObject(_ request: PutObjectRequest) async throws -> PutObjectOutput {
        try Self.checkKey(request.key, operation: "PutObject")
        var headers: [(name: String, value: String)] = [("Content-Length", String(request.body.length))]
        if let contentType = request.contentType { headers.append(("Content-Type", contentType)) }
        headers += request.checksums.headers
        if request.ifNoneMatch { headers.append(("If-None-Match", "*")) }
        headers += try UserMetadata.headers(request.metadata)
        if let storageClass = request.storageClass { headers.append(("x-amz-storage-class", storageClass)) }
        if let encryption = request.serverSideEncryption { headers += encryption.headers }
        if !request.tags.isEmpty {
            headers.append(("x-amz-tagging", URIEncoding.canonicalQuery(request.tags.map { ($0.key, $0.value) })))
        }
        let response = try await send(
            Operation(
                name: "PutObject", method: "PUT", bucket: request.bucket, key: request.key, headers: headers,
                body: request.body, payload: payloadHash(for: request.checksums, body: request.body),
                timeout: request.timeout))
        return PutObjectOutput(
            etag: try Self.requiredETag(response, operation: "PutObject"),
            versionID: response.header("x-amz-version-id"),
            checksumCRC32C: response.header("x-amz-checksum-crc32c"))
    }

    func payloadHash(for checksums: BodyChecksums, body: RequestBody) -> PayloadHash {
        if let sha256Hex = checksums.sha256Hex { return .known(sha256Hex) }
        if configuration.usesTLS && !checksums.isEmpty, case .file = body { return .unsigned }
        return .compute
    }

    /// An object's metadata (HeadObject).
    ///
    /// - Throws: `S3Error` `NotFound` (404) when there is no such object.
    public func headObject(bucket: String, key: String, versionID: String? = nil) async throws -> ObjectMetadata {
        try Self.checkKey(key, operation: "HeadObject")
        let response = try await send(
            Operation(
                name: "HeadObject", method: "HEAD", bucket: bucket, key: key,
                query: versionID.map { [("versionId", $0)] } ?? [], headers: [("x-amz-checksum-mode", "ENABLED")]))
        // The size decides whether an object at a taken key is ours: an answer without it must not read as 0 bytes.
        guard response.header("content-length").flatMap({ Int64($0) }) != nil else {
            throw Self.invalidResponse(response, operation: "HeadObject", "it has no Content-Length")
        }
        return ObjectMetadata(response: response)
    }

    /// An object's metadata, or nil when it does not exist.
    ///
    /// - Throws: `S3Error` other than `NotFound`/`NoSuchKey`.
    public func headObjectIfExists(bucket: String, key: String) async throws -> ObjectMetadata? {
        do {
            return try await headObject(bucket: bucket, key: key)
        } catch let error as S3Error where error.status == 404 {
            return nil
        }
    }

    /// Downloads an object into a file (created or replaced, mode 0600), streamed (GetObject).
    ///
    /// - Throws: `S3Error` `NoSuchKey` (404), transport and local I/O errors.
    @discardableResult
    public func getObject(
        bucket: String, key: String, versionID: String? = nil, range: ClosedRange<Int64>? = nil, to path: String
    ) async throws -> ObjectMetadata {
        try Self.checkKey(key, operation: "GetObject")
        var headers: [(name: String, value: String)] = []
        if let range { headers.append(("Range", "bytes=\(range.lowerBound)-\(range.upperBound)")) }
        let response = try await send(
            Operation(
                name: "GetObject", method: "GET", bucket: bucket, key: key,
                query: versionID.map { [("versionId", $0)] } ?? [], headers: headers,
                destination: .file(path: path)))
        return ObjectMetadata(response: response)
    }

    /// Downloads a small object into memory (GetObject).
    ///
    /// - Throws: `S3Error` `NoSuchKey`, `ResponseTooLarge` beyond `limit`.
    public func getObjectBytes(
        bucket: String, key: String, versionID: String? = nil, limit: Int = 64 << 20
    ) async throws -> (bytes: [UInt8], metadata: ObjectMetadata) {
        try Self.checkKey(key, operation: "GetObject")
        let response = try await send(
            Operation(
                name: "GetObject", method: "GET", bucket: bucket, key: key,
                query: versionID.map { [("versionId", $0)] } ?? [], destination: .memory(limit: limit)))
        return (response.body, ObjectMetadata(response: response))
    }

    /// An object's tags (GetObjectTagging).
    ///
    /// - Throws: `S3Error` `NoSuchKey`.
    public func getObjectTagging(bucket: String, key: String) async throws -> [String: String] {
        try Self.checkKey(key, operation: "GetObjectTagging")
        let response = try await send(
            Operation(name: "GetObjectTagging", method: "GET", bucket: bucket, key: key, query: [("tagging", "")]))
        let root = try parseXML(response, operation: "GetObjectTagging")
        var tags: [String: String] = [:]
        for tag in root.child("TagSet")?.children("Tag") ?? [] {
            if let key = tag.string("Key") { tags[key] = tag.string("Value") ?? "" }
        }
        return tags
    }

    /// Deletes an object, or one version of it (DeleteObject). Deleting a missing key succeeds, as in S3.
    ///
    /// - Throws: `S3Error`.
    public func deleteObject(bucket: String, key: String, versionID: String? = nil) async throws {
        try Self.checkKey(key, operation: "DeleteObject")
        _ = try await send(
            Operation(
                name: "DeleteObject", method: "DELETE", bucket: bucket, key: key,
                query: versionID.map { [("versionId", $0)] } ?? []))
    }
}

extension String {
    /// Without surrounding double quotes (ETags come quoted).
    var unquoted: String {
        guard count >= 2, hasPrefix("\""), hasSuffix("\"") else { return self }
        return String(dropFirst().dropLast())
    }
}

/// Hex decoding.
enum Hex {
    static func decode(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func value(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
