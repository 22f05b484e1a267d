import Foundation

/// One object in a listing.
public struct ObjectSummary: Sendable, Hashable {
    /// The key.
    public var key: String
    /// Size in bytes.
    public var size: Int64
    /// ETag without quotes.
    public var etag: String
    /// Last modified.
    public var lastModified: Date?
    /// Storage class.
    public var storageClass: String?
}

/// One page of ListObjectsV2.
public struct ObjectPage: Sendable {
    /// The objects.
    public var objects: [ObjectSummary]
    /// Common prefixes, with a delimiter.
    public var commonPrefixes: [String]
    /// Pass to the next call; nil on the last page.
    public var nextContinuationToken: String?
}

/// One version (or delete marker) in a ListObjectVersions page.
public struct ObjectVersion: Sendable, Hashable {
    /// The key.
    public var key: String
    /// The version id (`null` for objects written before versioning was on).
    public var versionID: String
    /// Whether it is the current version.
    public var isLatest: Bool
    /// Size (0 for delete markers).
    public var size: Int64
    /// ETag (empty for delete markers).
    public var etag: String
    /// Whether this is a delete marker.
    public var isDeleteMarker: Bool
}

/// One page of ListObjectVersions.
public struct VersionPage: Sendable {
    /// Versions and delete markers, in S3's order.
    public var versions: [ObjectVersion]
    /// Markers for the next call; nil on the last page.
    public var nextKeyMarker: String?
    /// Markers for the next call.
    public var nextVersionIDMarker: String?
}

extension S3Client {
    /// One page of keys under a prefix (ListObjectsV2). Keys are asked for URL-encoded (`encoding-type=url`), so
    /// keys with characters XML 1.0 cannot carry still come back intact, and are decoded here.
    ///
    /// - Throws: `S3Error` (`NoSuchBucket`, ...).
    public func listObjectsV2(
        bucket: String, prefix: String? = nil, delimiter: String? = nil, continuationToken: String? = nil,
        maxKeys: Int? = nil
    ) async throws -> ObjectPage {
        var query: [(name: String, value: String)] = [("list-type", "2"), ("encoding-type", "url")]
        if let prefix { query.append(("prefix", prefix)) }
        if let delimiter { query.append(("delimiter", delimiter)) }
        if let continuationToken { query.append(("continuation-token", continuationToken)) }
        if let maxKeys { query.append(("max-keys", String(maxKeys))) }
        let response = try await send(
            Operation(name: "ListObjectsV2", method: "GET", bucket: bucket, query: query))
        let root = try parseXML(response, operation: "ListObjectsV2")
        let encoded = root.string("EncodingType") == "url"
        func decoded(_ value: String) -> String { encoded ? (value.removingPercentEncoding ?? value) : value }
        let objects = root.children("Contents").map { item in
            ObjectSummary(
                key: decoded(item.string("Key") ?? ""), size: Int64(item.string("Size") ?? "") ?? 0,
                etag: (item.string("ETag") ?? "").unquoted,
                lastModified: item.string("LastModified").flatMap(HTTPDate.parseISO8601),
                storageClass: item.string("StorageClass"))
        }
        let prefixes = root.children("CommonPrefixes").compactMap { $0.string("Prefix").map(decoded) }
        let truncated = root.bool("IsTruncated") ?? false
        return ObjectPage(
            objects: objects, commonPrefixes: prefixes,
            nextContinuationToken: truncated ? root.string("NextContinuationToken") : nil)
    }

    /// Every object under a prefix, following continuation tokens.
    ///
    /// - Throws: `S3Error`.
    public func listAllObjects(bucket: String, prefix: String? = nil, pageSize: Int? = nil) async throws
        -> [ObjectSummary]
    {
        var all: [ObjectSummary] = []
        var token: String?
        repeat {
            let page = try await listObjectsV2(
                bucket: bucket, prefix: prefix, continuationToken: token, maxKeys: pageSize)
            all += page.objects
            token = page.nextContinuationToken
        } while token != nil
        return all
    }

    /// One page of versions under a prefix (ListObjectVersions).
    ///
    /// - Throws: `S3Error`.
    public func listObjectVersions(
        bucket: String, prefix: String? = nil, keyMarker: String? = nil, versionIDMarker: String? = nil,
        maxKeys: Int? = nil
    ) async throws -> VersionPage {
        var query: [(name: String, value: String)] = [("versions", ""), ("encoding-type", "url")]
        if let prefix { query.append(("prefix", prefix)) }
        if let keyMarker { query.append(("key-marker", keyMarker)) }
        if let versionIDMarker { query.append(("version-id-marker", versionIDMarker)) }
        if let maxKeys { query.append(("max-keys", String(maxKeys))) }
        let response = try await send(
            Operation(name: "ListObjectVersions", method: "GET", bucket: bucket, query: query))
        let root = try parseXML(response, operation: "ListObjectVersions")
        let encoded = root.string("EncodingType") == "url"
        func decoded(_ value: String) -> String { encoded ? (value.removingPercentEncoding ?? value) : value }
        var versions: [ObjectVersion] = []
        for child in root.children where child.name == "Version" || child.name == "DeleteMarker" {
            versions.append(
                ObjectVersion(
                    key: decoded(child.string("Key") ?? ""), versionID: child.string("VersionId") ?? "null",
                    isLatest: child.bool("IsLatest") ?? false, size: Int64(child.string("Size") ?? "") ?? 0,
                    etag: (child.string("ETag") ?? "").unquoted, isDeleteMarker: child.name == "DeleteMarker"))
        }
        let truncated = root.bool("IsTruncated") ?? false
        return VersionPage(
            versions: versions, nextKeyMarker: truncated ? root.string("NextKeyMarker").map(decoded) : nil,
            nextVersionIDMarker: truncated ? root.string("NextVersionIdMarker") : nil)
    }

    /// Every version and delete marker under a prefix, following the markers.
    ///
    /// - Throws: `S3Error`.
    public func listAllObjectVersions(bucket: String, prefix: String? = nil, pageSize: Int? = nil) async throws
        -> [ObjectVersion]
    {
        var all: [ObjectVersion] = []
        var keyMarker: String?
        var versionMarker: String?
        repeat {
            let page = try await listObjectVersions(
                bucket: bucket, prefix: prefix, keyMarker: keyMarker, versionIDMarker: versionMarker,
                maxKeys: pageSize)
            all += page.versions
            keyMarker = page.nextKeyMarker
            versionMarker = page.nextVersionIDMarker
        } while keyMarker != nil
        return all
    }

    func parseXML(_ response: HTTPResponse, operation: String) throws -> XMLNode {
        do {
            return try XMLNode.parse(response.body)
        } catch {
            throw Self.invalidResponse(
                response, operation: operation, "its body is not valid XML (\(error), \(response.body.count) bytes)")
        }
    }

    /// A 2xx answer that does not say what it must (a body that is not XML, a missing ETag or Content-Length): cut
    /// short or garbled on the way, most likely. Retryable: every write this client makes is safe to repeat (parts
    /// are replaced, conditional writes settle on 412), and the answer may be whole the next time.
    static func invalidResponse(_ response: HTTPResponse, operation: String, _ problem: String) -> S3Error {
        S3Error(
            status: response.status, code: "InvalidResponse",
            message: "the answer to \(operation) is unusable: \(problem)",
            requestID: response.header("x-amz-request-id"), operation: operation, isRetryable: true)
    }

    /// The response's ETag, without quotes; a 2xx write answer without one is refused.
    static func requiredETag(_ response: HTTPResponse, operation: String, fallback: String? = nil) throws -> String {
        guard let etag = (fallback ?? response.header("etag"))?.unquoted, !etag.isEmpty else {
            throw invalidResponse(response, operation: operation, "it has no ETag")
        }
        return etag
    }
}
