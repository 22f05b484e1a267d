/// Where a spool's resources are delivered: an S3 bucket or a local directory, with the options the drainer applies.
///
/// The writer records destinations in the spool (it never touches the network); `spool-drain` reads them back.
public struct DestinationSpec: Sendable, Hashable, Codable {
    /// The kind of target.
    public enum Kind: String, Sendable, Codable {
        /// An S3 (or S3-compatible) bucket.
        case s3
        /// A local directory with the same object layout (`file://`).
        case file
    }

    /// S3 or a local directory.
    public var kind: Kind
    /// The bucket name (`s3`) or the absolute directory path (`file`).
    public var location: String
    /// A custom S3 endpoint URL; empty for AWS.
    public var endpoint: String
    /// The bucket's region; empty to let the drainer resolve it (AWS_REGION, profile).
    public var region: String
    /// Upload and bucket set-up options, as a JSON object (recorded verbatim for the drainer).
    public var optionsJSON: String

    /// An S3 bucket.
    ///
    /// - Throws: `SpoolError.invalidConfiguration` for a bucket name S3 would refuse or a malformed endpoint.
    public static func s3(bucket: String, region: String? = nil, endpoint: String? = nil, optionsJSON: String = "{}")
        throws -> DestinationSpec
    {
        try checkBucketName(bucket)
        if let endpoint, !endpoint.isEmpty { try checkEndpoint(endpoint) }
        if let region, !region.isEmpty { try checkRegion(region) }
        return DestinationSpec(
            kind: .s3, location: bucket, endpoint: endpoint ?? "", region: region ?? "", optionsJSON: optionsJSON)
    }

    /// A local directory (`file://` target).
    ///
    /// - Throws: `SpoolError.invalidConfiguration` for an empty path.
    public static func directory(_ path: String, optionsJSON: String = "{}") throws -> DestinationSpec {
        var path = path
        if path.hasPrefix("file://") { path.removeFirst("file://".count) }
        guard !path.isEmpty else {
            throw SpoolError(.invalidConfiguration, "the target directory path is empty; pass an absolute path")
        }
        return DestinationSpec(
            kind: .file, location: SpoolLayout.absolutePath(path), endpoint: "", region: "", optionsJSON: optionsJSON)
    }

    /// A short name for people: `s3://bucket`, `s3://bucket@http://127.0.0.1:9000`, `file:///srv/out`.
    public var displayName: String {
        switch kind {
        case .s3: endpoint.isEmpty ? "s3://\(location)" : "s3://\(location)@\(endpoint)"
        case .file: "file://\(location)"
        }
    }

    /// Checks a bucket name against S3's rules: 3–63 characters of lowercase letters, digits, `.` and `-`, starting
    /// and ending with a letter or digit, no `..`, not an IP address.
    ///
    /// - Throws: `SpoolError.invalidConfiguration` naming the bucket.
    public static func checkBucketName(_ bucket: String) throws {
        let bytes = Array(bucket.utf8)
        func reject(_ reason: String) -> SpoolError {
            SpoolError(
                .invalidConfiguration,
                "bucket name \(Validation.quoted(bucket)) \(reason); S3 bucket names are 3–63 lowercase letters, "
                    + "digits, '.' and '-', starting and ending with a letter or digit")
        }
        guard (3...63).contains(bytes.count) else { throw reject("is \(bytes.count) characters long") }
        let allowed = bytes.allSatisfy {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-")
        }
        guard allowed else { throw reject("has characters S3 does not allow (uppercase, '_', '/', spaces, ...)") }
        guard Validation.isAlphanumeric(bytes.first!), Validation.isAlphanumeric(bytes.last!) else {
            throw reject("does not start and end with a letter or digit")
        }
        guard !bucket.contains("..") else { throw reject("contains '..'") }
        let octets = bucket.split(separator: ".")
        if octets.count == 4, octets.allSatisfy({ UInt8($0) != nil }) { throw reject("is formatted as an IP address") }
    }

    /// Checks an endpoint URL: `http://` or `https://`, a host, no path beyond `/`, no credentials, no whitespace.
    ///
    /// - Throws: `SpoolError.invalidConfiguration` naming the endpoint.
    public static func checkEndpoint(_ endpoint: String) throws {
        let lower = endpoint.lowercased()
        let rest: Substring
        if lower.hasPrefix("https://") {
            rest = endpoint.dropFirst(8)
        } else if lower.hasPrefix("http://") {
            rest = endpoint.dropFirst(7)
        } else {
            throw SpoolError(
                .invalidConfiguration,
                "endpoint \(Validation.quoted(endpoint)) is not an http:// or https:// URL; e.g. "
                    + "https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000")
        }
        let authority = rest.prefix(while: { $0 != "/" })
        let path = rest.dropFirst(authority.count)
        guard !authority.isEmpty, !authority.contains("@"), path.isEmpty || path == "/",
            !endpoint.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F })
        else {
            throw SpoolError(
                .invalidConfiguration,
                "endpoint \(Validation.quoted(endpoint)) must be scheme://host[:port] with no path, user or spaces")
        }
    }

    /// Whether `endpoint` is plain `http://` to a host that is not loopback (`localhost`, `127.x.x.x`, `[::1]`): where
    /// credentials and data would cross a network in the clear. Such endpoints need `allowInsecureHTTP`.
    public static func isPlainHTTPToRemoteHost(_ endpoint: String) -> Bool {
        guard endpoint.lowercased().hasPrefix("http://") else { return false }
        let authority = endpoint.dropFirst(7).prefix(while: { $0 != "/" }).lowercased()
        let host: Substring
        if authority.hasPrefix("[") {
            host = authority.prefix(while: { $0 != "]" }).dropFirst()
        } else {
            host = authority.prefix(while: { $0 != ":" })
        }
        return !(host == "localhost" || host == "::1" || host.hasPrefix("127."))
    }

    /// Checks an AWS region name (`us-east-1`, `eu-central-2`, ...).
    ///
    /// - Throws: `SpoolError.invalidConfiguration` naming the region.
    public static func checkRegion(_ region: String) throws {
        let bytes = Array(region.utf8)
        guard (1...32).contains(bytes.count),
            bytes.allSatisfy({ Validation.isAlphanumeric($0) || $0 == UInt8(ascii: "-") }),
            Validation.isAlphanumeric(bytes.first!)
        else {
            throw SpoolError(
                .invalidConfiguration,
                "region \(Validation.quoted(region)) is not a region name; use e.g. us-east-1 or eu-west-1")
        }
    }
}

/// A destination as recorded in the spool.
public struct DestinationRecord: Sendable, Codable, Hashable {
    /// Destination id.
    public var id: Int64
    /// What and where.
    public var spec: DestinationSpec
    /// When it was paused (Unix ms); nil when delivering.
    public var pausedAt: Int64?
    /// Why it was paused: the error code.
    public var pausedErrorCode: String?
    /// Why it was paused: the message.
    public var pausedErrorMessage: String?
    /// The bucket set-up the drainer last applied; nil when none was (and always for a local directory).
    public var bucketSetup: BucketSetupRecord? = nil
}
