import Foundation
import Hashing

/// A CreateMultipartUpload request.
public struct CreateMultipartUploadRequest: Sendable {
    /// The bucket.
    public var bucket: String
    /// The key.
    public var key: String
    /// `Content-Type` of the final object.
    public var contentType: String?
    /// User metadata of the final object.
    public var metadata: [String: String] = [:]
    /// Storage class.
    public var storageClass: String?
    /// Server-side encryption.
    public var serverSideEncryption: ServerSideEncryption?
    /// Send a CRC32C with every part (`x-amz-checksum-algorithm: CRC32C`).
    public var crc32cPerPart = true
    /// Object tags.
    public var tags: [String: String] = [:]

    /// A request for `key`.
    public init(bucket: String, key: String) {
        self.bucket = bucket
        self.key = key
    }
}

/// A part as uploaded, or as ListParts reports it.
public struct UploadedPart: Sendable, Hashable {
    /// 1...10,000.
    public var partNumber: Int
    /// ETag without quotes.
    public var etag: String
    /// Size in bytes.
    public var size: Int64
    /// CRC32C, base64, when sent.
    public var checksumCRC32C: String?

    /// A part.
    public init(partNumber: Int, etag: String, size: Int64, checksumCRC32C: String? = nil) {
        self.partNumber = partNumber
        self.etag = etag
        self.size = size
        self.checksumCRC32C = checksumCRC32C
    }
}

/// One page of ListParts.
public struct PartPage: Sendable {
    /// The parts.
    public var parts: [UploadedPart]
    /// The marker for the next page; nil on the last page.
    public var nextPartNumberMarker: Int?
}

/// An unfinished multipart upload.
public struct MultipartUpload: Sendable, Hashable {
    /// The key.
    public var key: String
    /// The upload id.
    public var uploadID: String
    /// When it was started.
    public var initiated: Date?
}

/// One page of ListMultipartUploads.
public struct MultipartUploadPage: Sendable {
    /// The uploads.
    public var uploads: [MultipartUpload]
    /// Markers for the next page; nil on the last page.
    public var nextKeyMarker: String?
    /// Markers for the next page.
    public var nextUploadIDMarker: String?
}

extension S3Client {
    /// Starts a multipart upload and returns its upload id (CreateMultipartUpload).
    ///
    /// - Throws: `S3Error`.
    public func createMultipartUpload(_ request: CreateMultipartUploadRequest) async throws -> String {
        try Self.checkKey(request.key, operation: "CreateMultipartUpload")
        var headers: [(name: String, value: String)] = []
        if let contentType = request.contentType { headers.append(("Content-Type", contentType)) }
        headers += try UserMetadata.headers(request.metadata)
        if let storageClass = request.storageClass { headers.append(("x-amz-storage-class", storageClass)) }
        if let encryption = request.serverSideEncryption { headers += encryption.headers }
        if request.crc32cPerPart { headers.append(("x-amz-checksum-algorithm", "CRC32C")) }
        if !request.tags.isEmpty {
            headers.append(("x-amz-tagging", URIEncoding.canonicalQuery(request.tags.map { ($0.key, $0.value) })))
        }
        let response = try await send(
            Operation(
                name: "CreateMultipartUpload", method: "POST", bucket: request.bucket, key: request.key,
                query: [("uploads", "")], headers: headers))
        let root = try parseXML(response, operation: "CreateMultipartUpload")
        guard let uploadID = root.string("UploadId"), !uploadID.isEmpty else {
            throw Self.invalidResponse(response, operation: "CreateMultipartUpload", "it has no UploadId")
        }
        return uploadID
    }

    /// Uploads one part (UploadPart).
    ///
    /// - Throws: `S3Error`: `NoSuchUpload` when the upload was aborted or completed, `BadDigest`, transport errors.
    public func uploadPart(
        bucket: String, key: String, uploadID: String, partNumber: Int, body: RequestBody,
        checksums: BodyChecksums = BodyChecksums(), timeout: Duration? = nil
    ) async throws -> UploadedPart {
        guard (1...10_000).contains(partNumber) else {
            throw S3Error.invalidRequest("part number \(partNumber) is outside 1...10000", operation: "UploadPart")
        }
        var headers: [(name: String, value: String)] = [("Content-Length", String(body.length))]
        headers += checksums.headers
        let response = try await send(
            Operation(
                name: "UploadPart", method: "PUT", bucket: bucket, key: key,
                query: [("partNumber", String(partNumber)), ("uploadId", uploadID)], headers: headers, body: body,
                payload: payloadHash(for: checksums, body: body), timeout: timeout))
        return UploadedPart(
            partNumber: partNumber, etag: try Self.requiredETag(response, operation: "UploadPart"), size: body.length,
            checksumCRC32C: response.header("x-amz-checksum-crc32c")
                ?? checksums.crc32c.map { CRC32C(resuming: $0).base64BigEndian })
    }

    /// One page of the parts S3 holds for an upload (ListParts).
    ///
    /// - Throws: `S3Error` `NoSuchUpload` when the upload was aborted or completed.
    public func listParts(
        bucket: String, key: String, uploadID: String, partNumberMarker: Int? = nil, maxParts: Int? = nil
    ) async throws -> PartPage {
        var query: [(name: String, value: String)] = [("uploadId", uploadID)]
        if let partNumberMarker { query.append(("part-number-marker", String(partNumberMarker))) }
        if let maxParts { query.append(("max-parts", String(maxParts))) }
        let response = try await send(
            Operation(name: "ListParts", method: "GET", bucket: bucket, key: key, query: query))
        let root = try parseXML(response, operation: "ListParts")
        let parts = try root.children("Part").map { part in
            guard let number = part.int("PartNumber"), (1...10_000).contains(number),
                let etag = part.string("ETag")?.unquoted, !etag.isEmpty,
                let size = part.string("Size").flatMap({ Int64($0) }), size >= 0
            else {
                throw Self.invalidResponse(
                    response, operation: "ListParts", "a <Part> lacks a valid PartNumber, ETag or Size")
            }
            return UploadedPart(
                partNumber: number, etag: etag, size: size, checksumCRC32C: part.string("ChecksumCRC32C"))
        }
        let truncated = root.bool("IsTruncated") ?? false
        return PartPage(parts: parts, nextPartNumberMarker: truncated ? root.int("NextPartNumberMarker") : nil)
    }

    /// Every part S3 holds for an upload, following the markers.
    ///
    /// - Throws: `S3Error`.
    public func listAllParts(bucket: String, key: String, uploadID: String, pageSize: Int? = nil) async throws
        -> [UploadedPart]
    {
        var all: [UploadedPart] = []
        var marker: Int?
        repeat {
            let page = try await listParts(
                bucket: bucket, key: key, uploadID: uploadID, partNumberMarker: marker, maxParts: pageSize)
            all += page.parts
            marker = page.nextPartNumberMarker
        } while marker != nil
        return all
    }

    /// Completes an upload from its parts (CompleteMultipartUpload). A 200 answer whose body is an `<Error>` is an
    /// error, as S3 documents.
    ///
    /// - Parameter ifNoneMatch: `If-None-Match: *`: complete only if the key does not exist (412 otherwise).
    /// - Throws: `S3Error`: `PreconditionFailed`, `NoSuchUpload`, `InvalidPart`, `InvalidPartOrder`, ...
    @discardableResult
    public func completeMultipartUpload(
        bucket: String, key: String, uploadID: String, parts: [UploadedPart], ifNoneMatch: Bool = false
    ) async throws -> PutObjectOutput {
        var xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        for part in parts.sorted(by: { $0.partNumber < $1.partNumber }) {
            xml += "<Part><PartNumber>\(part.partNumber)</PartNumber><ETag>\"\(XMLText.escape(part.etag))\"</ETag>"
            if let checksum = part.checksumCRC32C {
                xml += "<ChecksumCRC32C>\(XMLText.escape(checksum))</ChecksumCRC32C>"
            }
            xml += "</Part>"
        }
        xml += "</CompleteMultipartUpload>"
        var headers: [(name: String, value: String)] = [("Content-Type", "application/xml")]
        if ifNoneMatch { headers.append(("If-None-Match", "*")) }
        let response = try await send(
            Operation(
                name: "CompleteMultipartUpload", method: "POST", bucket: bucket, key: key,
                query: [("uploadId", uploadID)], headers: headers, body: .bytes(Array(xml.utf8)),
                timeout: .seconds(600)))
        let root = try parseXML(response, operation: "CompleteMultipartUpload")
        return PutObjectOutput(
            etag: try Self.requiredETag(
                response, operation: "CompleteMultipartUpload",
                fallback: root.string("ETag") ?? response.header("etag")),
            versionID: response.header("x-amz-version-id"),
            checksumCRC32C: root.string("ChecksumCRC32C") ?? response.header("x-amz-checksum-crc32c"))
    }

    /// Aborts an upload and frees its parts (AbortMultipartUpload).
    ///
    /// - Throws: `S3Error` (`NoSuchUpload` when it is already gone).
    public func abortMultipartUpload(bucket: String, key: String, uploadID: String) async throws {
        _ = try await send(
            Operation(
                name: "AbortMultipartUpload", method: "DELETE", bucket: bucket, key: key,
                query: [("uploadId", uploadID)]))
    }

    /// One page of unfinished uploads under a prefix (ListMultipartUploads).
    ///
    /// - Throws: `S3Error`.
    public func listMultipartUploads(
        bucket: String, prefix: String? = nil, keyMarker: String? = nil, uploadIDMarker: String? = nil,
        maxUploads: Int? = nil
    ) async throws -> MultipartUploadPage {
        var query: [(name: String, value: String)] = [("uploads", "")]
        if let prefix { query.append(("prefix", prefix)) }
        if let keyMarker { query.append(("key-marker", keyMarker)) }
        if let uploadIDMarker { query.append(("upload-id-marker", uploadIDMarker)) }
        if let maxUploads { query.append(("max-uploads", String(maxUploads))) }
        let response = try await send(
            Operation(name: "ListMultipartUploads", method: "GET", bucket: bucket, query: query))
        let root = try parseXML(response, operation: "ListMultipartUploads")
        let uploads = root.children("Upload").map { upload in
            MultipartUpload(
                key: upload.string("Key") ?? "", uploadID: upload.string("UploadId") ?? "",
                initiated: upload.string("Initiated").flatMap(HTTPDate.parseISO8601))
        }
        let truncated = root.bool("IsTruncated") ?? false
        return MultipartUploadPage(
            uploads: uploads, nextKeyMarker: truncated ? root.string("NextKeyMarker") : nil,
            nextUploadIDMarker: truncated ? root.string("NextUploadIdMarker") : nil)
    }

    /// Every unfinished upload under a prefix, following the markers.
    ///
    /// - Throws: `S3Error`.
    public func listAllMultipartUploads(bucket: String, prefix: String? = nil) async throws -> [MultipartUpload] {
        var all: [MultipartUpload] = []
        var keyMarker: String?
        var uploadMarker: String?
        repeat {
            let page = try await listMultipartUploads(
                bucket: bucket, prefix: prefix, keyMarker: keyMarker, uploadIDMarker: uploadMarker)
            all += page.uploads
            keyMarker = page.nextKeyMarker
            uploadMarker = page.nextUploadIDMarker
        } while keyMarker != nil
        return all
    }
}

/// Escaping text for XML documents we send.
enum XMLText {
    static func escape(_ text: String) -> String {
        var output = ""
        for character in text {
            switch character {
            case "&": output += "&amp;"
            case "<": output += "&lt;"
            case ">": output += "&gt;"
            case "\"": output += "&quot;"
            case "'": output += "&apos;"
            default: output.append(character)
            }
        }
        return output
    }
}
