import Foundation

/// Delivery and bucket options for one destination (SPEC §6), recorded in the spool for `spool-drain`.
///
/// The writer never touches the network: these values are stored with the destination when a `PipelineStorage` is
/// created, and the drainer applies them. They are checked here so a bad value fails where it was written.
public struct StorageOptions: Sendable, Hashable, Codable {
    /// Server-side encryption of objects and of the bucket's default.
    public enum Encryption: Sendable, Hashable, Codable {
        /// SSE-S3 (`AES256`).
        case aes256
        /// SSE-KMS with a key id or ARN (nil: the AWS-managed key), optionally with an S3 bucket key.
        case kms(keyID: String?, bucketKey: Bool)
    }

    /// Create the bucket when it does not exist.
    public var createBucket = false
    /// Turn bucket versioning on (true), suspend it (false), or leave it alone (nil).
    public var versioning: Bool? = nil
    /// A bucket policy: a JSON document, or a canned name such as `public-read`.
    public var bucketPolicy: String? = nil
    /// A lifecycle preset name (e.g. `archive-after-30-days`); an AbortIncompleteMultipartUpload rule is always
    /// added.
    public var lifecyclePolicy: String? = nil
    /// Default and per-object encryption.
    public var encryption: Encryption? = nil
    /// The storage class of uploaded objects (e.g. `STANDARD_IA`); nil for the bucket's default.
    public var storageClass: String? = nil
    /// Objects at least this large go up as multipart uploads.
    public var multipartThresholdBytes: Int64 = 16 << 20
    /// Part size of multipart uploads (raised automatically to stay within 10,000 parts).
    public var multipartChunkSizeBytes: Int64 = 8 << 20
    /// Parts and objects uploaded at once.
    public var maxConcurrentUploads = 8
    /// Bound on one object's upload, in seconds.
    public var uploadTimeoutSeconds: Double = 900
    /// Attempts per resource before it is `failed`.
    public var maxRetries = 10
    /// First delay between attempts, in seconds.
    public var retryDelaySeconds: Double = 1
    /// Grow the delay exponentially (with full jitter) between attempts.
    public var exponentialBackoff = true
    /// The shared-config profile the drainer resolves this destination's credentials from (nil: `AWS_PROFILE`,
    /// else `default`). Only the name is recorded, never a credential.
    public var awsProfile: String? = nil
    /// A role the drainer assumes (STS AssumeRole) on top of whatever the credential chain resolves.
    public var roleARN: String? = nil
    /// Allow a plain `http://` endpoint on a host that is not loopback. Off: credentials and data never cross a
    /// network in the clear by accident (TLS certificates are always verified; there is no option to skip that).
    public var allowInsecureHTTP = false
    /// Send metrics to CloudWatch.
    public var cloudwatchMetrics = false
    /// CloudWatch namespace.
    public var metricsNamespace = "PipelineStorage"

    /// Default options.
    public init() {}

    /// The storage classes S3 accepts on PutObject.
    public static let storageClasses: Set<String> = [
        "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER",
        "DEEP_ARCHIVE", "OUTPOSTS", "GLACIER_IR", "EXPRESS_ONEZONE",
    ]

    /// Checks every value against what S3 and the drainer accept.
    ///
    /// - Throws: `SpoolError.invalidConfiguration` naming the option and the value.
    public func validate() throws {
        func reject(_ message: String) -> SpoolError { SpoolError(.invalidConfiguration, message) }
        let mebibyte: Int64 = 1 << 20
        guard (5 * mebibyte...5 * 1024 * mebibyte).contains(multipartChunkSizeBytes) else {
            throw reject(
                "multipartChunkSize \(multipartChunkSizeBytes) bytes is outside what S3 accepts for a part; use 5 MiB "
                    + "to 5 GiB")
        }
        guard multipartThresholdBytes >= 5 * mebibyte else {
            throw reject("multipartThreshold \(multipartThresholdBytes) bytes is below S3's 5 MiB minimum part size")
        }
        guard (1...64).contains(maxConcurrentUploads) else {
            throw reject("maxConcurrentUploads \(maxConcurrentUploads) is out of range; use 1...64")
        }
        guard uploadTimeoutSeconds > 0, uploadTimeoutSeconds.isFinite else {
            throw reject("uploadTimeout \(uploadTimeoutSeconds) s must be a positive number of seconds")
        }
        guard (0...1000).contains(maxRetries) else {
            throw reject("maxRetries \(maxRetries) is out of range; use 0...1000")
        }
        guard retryDelaySeconds > 0, retryDelaySeconds <= 3600 else {
            throw reject("retryDelay \(retryDelaySeconds) s is out of range; use more than 0 and at most 3600")
        }
        if let storageClass, !Self.storageClasses.contains(storageClass) {
            throw reject(
                "storageClass '\(storageClass)' is not an S3 storage class; use one of "
                    + Self.storageClasses.sorted().joined(separator: ", "))
        }
        if case .kms(let keyID?, _) = encryption,
            keyID.isEmpty || keyID.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value >= 0x7F })
        {
            throw reject("kmsKeyID '\(keyID)' is not a KMS key id, alias or ARN")
        }
        if let awsProfile,
            awsProfile.isEmpty || awsProfile.count > 128
                || awsProfile.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value >= 0x7F || "[]".unicodeScalars.contains($0) })
        {
            throw reject("aws.profile '\(awsProfile)' is not a profile name (printable ASCII, no spaces or brackets)")
        }
        if let roleARN, !Self.isRoleARN(roleARN) {
            throw reject("aws.roleARN '\(roleARN)' is not an IAM role ARN; use arn:aws:iam::<account>:role/<name>")
        }
        let namespace = Array(metricsNamespace.utf8)
        guard (1...255).contains(namespace.count), !metricsNamespace.hasPrefix("AWS/"),
            !namespace.contains(where: { $0 < 0x20 || $0 >= 0x7F })
        else {
            throw reject(
                "metricsNamespace '\(metricsNamespace)' is not a CloudWatch namespace (1–255 ASCII, not AWS/)")
        }
    }

    /// Whether `text` looks like an IAM role ARN: `arn:<partition>:iam::<12-digit account>:role/<path/name>`.
    static func isRoleARN(_ text: String) -> Bool {
        let parts = text.split(separator: ":", maxSplits: 5, omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "arn", parts[1].hasPrefix("aws"), parts[2] == "iam", parts[3].isEmpty,
            parts[4].count == 12, parts[4].allSatisfy(\.isNumber), parts[5].hasPrefix("role/"), parts[5].count > 5,
            text.count <= 2048
        else { return false }
        return !text.unicodeScalars.contains { $0.value <= 0x20 || $0.value >= 0x7F }
    }

    /// The options as the spool records them: JSON with sorted keys, so equal options give equal bytes.
    public func encodedJSON() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
