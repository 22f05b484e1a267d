import Foundation

extension S3Client {
    /// Creates a bucket in the client's region (CreateBucket). In us-east-1 no body is sent; elsewhere a
    /// `LocationConstraint` names the region, as S3 requires.
    ///
    /// - Throws: `S3Error`: `BucketAlreadyOwnedByYou` (ours already), `BucketAlreadyExists` (someone else's), ...
    public func createBucket(_ bucket: String) async throws {
        var body: RequestBody = .empty
        var headers: [(name: String, value: String)] = []
        if configuration.region != "us-east-1" {
            let xml =
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                + "<LocationConstraint>\(XMLText.escape(configuration.region))</LocationConstraint>"
                + "</CreateBucketConfiguration>"
            body = .bytes(Array(xml.utf8))
            headers.append(("Content-Type", "application/xml"))
        }
        headers.append(("Content-Length", String(body.length)))
        _ = try await send(Operation(name: "CreateBucket", method: "PUT", bucket: bucket, headers: headers, body: body))
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

    /// Turns versioning on or suspends it (PutBucketVersioning).
    ///
    /// - Throws: `S3Error`.
    public func putBucketVersioning(_ bucket: String, enabled: Bool) async throws {
        let xml =
            "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>"
            + (enabled ? "Enabled" : "Suspended") + "</Status></VersioningConfiguration>"
        _ = try await send(
            Operation(
                name: "PutBucketVersioning", method: "PUT", bucket: bucket, query: [("versioning", "")],
                headers: [("Content-Type", "application/xml"), ("Content-Length", String(xml.utf8.count))],
                body: .bytes(Array(xml.utf8))))
    }

    /// Deletes an empty bucket (DeleteBucket).
    ///
    /// - Throws: `S3Error` (`BucketNotEmpty`, `NoSuchBucket`).
    public func deleteBucket(_ bucket: String) async throws {
        _ = try await send(Operation(name: "DeleteBucket", method: "DELETE", bucket: bucket))
    }
}
