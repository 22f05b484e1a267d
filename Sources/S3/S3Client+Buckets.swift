import Foundation
import Hashing

/// What CreateBucket found.
public enum CreateBucketOutcome: Sendable, Hashable {
    /// The bucket was created (or, in us-east-1, already belonged to this account: S3 answers 200 there).
    case created
    /// The bucket already existed and belongs to these credentials' account (`BucketAlreadyOwnedByYou`).
    case alreadyOwned
}

/// A bucket's versioning state (GetBucketVersioning).
public enum BucketVersioningStatus: String, Sendable, Hashable {
    /// Versioning is on.
    case enabled = "Enabled"
    /// Versioning was on and is suspended.
    case suspended = "Suspended"
    /// Versioning was never turned on.
    case unversioned = ""
}

extension S3Client {
    /// The XML namespace of S3's request documents.
    static let xmlNamespace = "http://s3.amazonaws.com/doc/2006-03-01/"

    /// Creates a bucket in the client's region (CreateBucket). In us-east-1 no body is sent; elsewhere a
    /// `CreateBucketConfiguration` names the region as its `LocationConstraint`, as S3 requires. A bucket this account
    /// already owns is success (`.alreadyOwned`).
    ///
    /// - Throws: `S3Error`: `BucketAlreadyExists` (the name belongs to another account: not retryable, the message
    ///   names the bucket), `InvalidBucketName`, `AccessDenied`, ...
    @discardableResult
    public func createBucket(_ bucket: String) async throws -> CreateBucketOutcome {
        var body: RequestBody = .empty
        var headers: [(name: String, value: String)] = []
        if configuration.region != "us-east-1" {
            let document = XMLNode(
                "CreateBucketConfiguration", attributes: ["xmlns": Self.xmlNamespace],
                children: [.text("LocationConstraint", configuration.region)])
            let bytes = Array(document.serialized().utf8)
            body = .bytes(bytes)
            headers += [("Content-Type", "application/xml"), ("Content-MD5", Self.contentMD5(bytes))]
        }
        headers.append(("Content-Length", String(body.length)))
        do {
            _ = try await send(
                Operation(name: "CreateBucket", method: "PUT", bucket: bucket, headers: headers, body: body))
            return .created
        } catch let error as S3Error where error.code == "BucketAlreadyOwnedByYou" {
            return .alreadyOwned
        } catch var error as S3Error where error.code == "BucketAlreadyExists" {
            error.message =
                "bucket '\(bucket)' already exists and belongs to another AWS account (bucket names are global); "
                + "choose another bucket name"
            error.isRetryable = false
            throw error
        }
    }

    /// Whether a bucket exists and is reachable with these credentials (HeadBucket).
    ///
    /// - Throws: `S3Error` other than `NotFound`.
    public func bucketExists(_ bucket: String) async throws -> Bool {
        do {
            _ = try await send(Operation(name: "HeadBucket", method: "HEAD", bucket: bucket))
            return true
        } catch let error as S3Error where error.status == 404 {
            return false
        }
    }

    /// The region a bucket is in (GetBucketLocation): S3's empty answer is `us-east-1`, its legacy `EU` is
    /// `eu-west-1`.
    ///
    /// - Throws: `S3Error` (`NoSuchBucket`, `AccessDenied`).
    public func getBucketLocation(_ bucket: String) async throws -> String {
        let response = try await send(
            Operation(name: "GetBucketLocation", method: "GET", bucket: bucket, query: [("location", "")]))
        let location = try parseXML(response, operation: "GetBucketLocation").text.trimmed(of: " \t\r\n")
        switch location {
        case "": return "us-east-1"
        case "EU": return "eu-west-1"
        default: return location
        }
    }

    /// Turns versioning on or suspends it (PutBucketVersioning).
    ///
    /// - Throws: `S3Error`.
    public func putBucketVersioning(_ bucket: String, enabled: Bool) async throws {
        let document = XMLNode(
            "VersioningConfiguration", attributes: ["xmlns": Self.xmlNamespace],
            children: [.text("Status", enabled ? "Enabled" : "Suspended")])
        try await putBucketSubresource(bucket, "versioning", operation: "PutBucketVersioning", document: document)
    }

    /// A bucket's versioning state (GetBucketVersioning).
    ///
    /// - Throws: `S3Error`.
    public func getBucketVersioning(_ bucket: String) async throws -> BucketVersioningStatus {
        let response = try await send(
            Operation(name: "GetBucketVersioning", method: "GET", bucket: bucket, query: [("versioning", "")]))
        let status = try parseXML(response, operation: "GetBucketVersioning").string("Status") ?? ""
        return BucketVersioningStatus(rawValue: status) ?? .unversioned
    }

    /// Deletes an empty bucket (DeleteBucket).
    ///
    /// - Throws: `S3Error` (`BucketNotEmpty`, `NoSuchBucket`).
    public func deleteBucket(_ bucket: String) async throws {
        _ = try await send(Operation(name: "DeleteBucket", method: "DELETE", bucket: bucket))
    }

    // MARK: Bucket subresources

    /// The base64 MD5 of a body, for `Content-MD5`: S3 requires it (or a checksum) on its bucket configuration PUTs.
    static func contentMD5(_ bytes: [UInt8]) -> String {
        Data(MD5Hasher.hash(bytes)).base64EncodedString()
    }

    /// PUT `/?subresource` with a body, its `Content-MD5` and length.
    func putBucketSubresource(
        _ bucket: String, _ subresource: String, operation: String, body: [UInt8], contentType: String
    ) async throws {
        _ = try await send(
            Operation(
                name: operation, method: "PUT", bucket: bucket, query: [(subresource, "")],
                headers: [
                    ("Content-Type", contentType), ("Content-MD5", Self.contentMD5(body)),
                    ("Content-Length", String(body.count)),
                ], body: .bytes(body)))
    }

    /// PUT `/?subresource` with an XML document.
    func putBucketSubresource(_ bucket: String, _ subresource: String, operation: String, document: XMLNode)
        async throws
    {
        try await putBucketSubresource(
            bucket, subresource, operation: operation, body: Array(document.serialized().utf8),
            contentType: "application/xml")
    }

    /// GET `/?subresource`; nil when S3 answers with one of `absentCodes` (the bucket has no such configuration).
    func getBucketSubresource(_ bucket: String, _ subresource: String, operation: String, absentCodes: Set<String>)
        async throws -> HTTPResponse?
    {
        do {
            return try await send(
                Operation(name: operation, method: "GET", bucket: bucket, query: [(subresource, "")]))
        } catch let error as S3Error where absentCodes.contains(error.code) {
            return nil
        }
    }

    /// DELETE `/?subresource`.
    func deleteBucketSubresource(_ bucket: String, _ subresource: String, operation: String) async throws {
        _ = try await send(Operation(name: operation, method: "DELETE", bucket: bucket, query: [(subresource, "")]))
    }
}
