import S3
import Spool

/// Delivery into an S3 bucket through our S3 client.
public struct S3ObjectStore: ObjectStore {
    /// The client.
    public let client: S3Client
    /// The bucket.
    public let bucket: String
    /// Storage class, encryption and the per-object timeout, from the destination's options.
    public let options: StorageOptions

    /// A store for one bucket.
    public init(client: S3Client, bucket: String, options: StorageOptions) {
        self.client = client
        self.bucket = bucket
        self.options = options
    }

    /// `s3://bucket`.
    public var displayName: String { "s3://\(bucket)" }

    /// S3 takes multipart uploads.
    public var supportsMultipart: Bool { true }

    /// Sent with PutObject and CreateMultipartUpload. UploadPart and CompleteMultipartUpload carry no encryption
    /// headers: S3 wants them per part only for customer-provided keys (SSE-C), which are not used here.
    var encryption: ServerSideEncryption? { options.encryption.map(Self.serverSideEncryption) }

    static func serverSideEncryption(_ encryption: StorageOptions.Encryption) -> ServerSideEncryption {
        switch encryption {
        case .aes256: .aes256
        case .kms(let keyID, let bucketKey): .kms(keyID: keyID, bucketKey: bucketKey)
        }
    }

    var uploadTimeout: Duration { .milliseconds(Int64(options.uploadTimeoutSeconds * 1000)) }

    /// PutObject with `If-None-Match: *`, CRC32C and SHA-256 checksums.
    public func put(_ object: ObjectWrite) async throws -> StoredObject {
        var request = PutObjectRequest(bucket: bucket, key: object.key, body: Self.body(object.body))
        request.contentType = object.contentType
        request.checksums = BodyChecksums(crc32c: object.crc32c, sha256Hex: object.sha256)
        request.ifNoneMatch = true
        request.metadata = object.metadata
        request.storageClass = options.storageClass
        request.serverSideEncryption = encryption
        request.timeout = uploadTimeout
        let output = try await mapped { try await client.putObject(request) }
        return StoredObject(etag: output.etag, versionID: output.versionID)
    }

    /// HeadObject; the SHA-256 comes from the object's `sha256` metadata.
    public func head(key: String) async throws -> ExistingObject? {
        guard let metadata = try await mapped({ try await client.headObjectIfExists(bucket: bucket, key: key) }) else {
            return nil
        }
        return ExistingObject(
            size: metadata.contentLength, sha256: metadata.metadata["sha256"], etag: metadata.etag,
            versionID: metadata.versionID)
    }

    /// CreateMultipartUpload with CRC32C per part.
    public func createUpload(for object: ObjectWrite) async throws -> String {
        var request = CreateMultipartUploadRequest(bucket: bucket, key: object.key)
        request.contentType = object.contentType
        request.metadata = object.metadata
        request.storageClass = options.storageClass
        request.serverSideEncryption = encryption
        return try await mapped { try await client.createMultipartUpload(request) }
    }

    /// UploadPart with its CRC32C and SHA-256.
    public func uploadPart(
        key: String, uploadID: String, number: Int, body: PayloadBody, crc32c: UInt32, sha256: String
    ) async throws -> StoredPart {
        let part = try await mapped {
            try await client.uploadPart(
                bucket: bucket, key: key, uploadID: uploadID, partNumber: number, body: Self.body(body),
                checksums: BodyChecksums(crc32c: crc32c, sha256Hex: sha256), timeout: uploadTimeout)
        }
        return StoredPart(
            number: part.partNumber, etag: part.etag, size: part.size, checksumCRC32C: part.checksumCRC32C)
    }

    /// ListParts, every page.
    public func listParts(key: String, uploadID: String) async throws -> [StoredPart] {
        try await mapped { try await client.listAllParts(bucket: bucket, key: key, uploadID: uploadID) }.map {
            StoredPart(number: $0.partNumber, etag: $0.etag, size: $0.size, checksumCRC32C: $0.checksumCRC32C)
        }
    }

    /// CompleteMultipartUpload with `If-None-Match: *`.
    public func completeUpload(key: String, uploadID: String, parts: [StoredPart]) async throws -> StoredObject {
        let output = try await mapped {
            try await client.completeMultipartUpload(
                bucket: bucket, key: key, uploadID: uploadID,
                parts: parts.map {
                    UploadedPart(partNumber: $0.number, etag: $0.etag, size: $0.size, checksumCRC32C: $0.checksumCRC32C)
                }, ifNoneMatch: true)
        }
        return StoredObject(etag: output.etag, versionID: output.versionID)
    }

    /// AbortMultipartUpload.
    public func abortUpload(key: String, uploadID: String) async throws {
        try await mapped { try await client.abortMultipartUpload(bucket: bucket, key: key, uploadID: uploadID) }
    }

    /// ListMultipartUploads for the key (as a prefix), keeping exact matches.
    public func listUploads(key: String) async throws -> [String] {
        try await mapped { try await client.listAllMultipartUploads(bucket: bucket, prefix: key) }
            .filter { $0.key == key }.map(\.uploadID)
    }

    static func body(_ body: PayloadBody) -> RequestBody {
        switch body {
        case .bytes(let bytes): .bytes(bytes)
        case .file(let path, let offset, let length): .file(path: path, offset: offset, length: length)
        }
    }

    /// S3's errors in delivery's terms.
    static func classify(_ error: S3Error) -> ObjectStoreError {
        let kind: ObjectStoreError.Kind
        switch error.code {
        case "PreconditionFailed": kind = .alreadyExists
        case "ConditionalRequestConflict", "OperationAborted", "Conflict": kind = .conflict
        case "NoSuchUpload": kind = .noSuchUpload
        case "AccessDenied", "NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
            "AccountProblem", "InvalidBucketName", "PermanentRedirect", "AuthorizationHeaderMalformed",
            "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "CredentialsNotFound", "TLSVerificationFailed",
            "InvalidConfiguration", "InvalidRequest", "EndpointNotHTTP", "KMS.AccessDeniedException",
            "KMS.NotFoundException", "KMS.DisabledException":
            kind = .configuration
        case "BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "IncompleteBody":
            // The bytes S3 received did not match what we sent: the payload is checked again before the next try.
            kind = .transient
        default:
            if error.status == 412 {
                kind = .alreadyExists
            } else if error.status == 409 {
                kind = .conflict
            } else if error.isRetryable {
                kind = .transient
            } else if error.code == "LocalIOError" {
                kind = .permanent
            } else {
                kind = .permanent
            }
        }
        return ObjectStoreError(kind, code: error.code, message: error.description)
    }

    private func mapped<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as S3Error {
            throw Self.classify(error)
        }
    }
}
