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

    /// What the drainer does with the bucket's public-access block.
    public enum PublicAccessBlock: String, Sendable, Hashable, Codable, CaseIterable {
        /// All four settings on: BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets.
        case blocked
        /// All four off: what `bucketPolicy: public-read` needs (and implies).
        case lifted
        /// Left as the bucket has it; the drainer needs no `s3:PutBucketPublicAccessBlock` permission.
        case unmanaged
    }

    /// Create the bucket when it does not exist.
    public var createBucket = false
    /// Turn bucket versioning on (true), suspend it (false), or leave it alone (nil).
    public var versioning: Bool? = nil
    /// A bucket policy: a JSON document (replaces the bucket's policy), or the canned `public-read` (adds a
    /// statement letting anyone read the destination's prefixes, and lifts the public-access block); nil leaves the
    /// bucket's policy alone.
    public var bucketPolicy: String? = nil
    /// The bucket's public-access block; nil means `blocked`, or `lifted` with `bucketPolicy: public-read`.
    public var publicAccessBlock: PublicAccessBlock? = nil
    /// A lifecycle preset name (`LifecycleRules.presetNames`, e.g. `archive-after-30-days`); an
    /// AbortIncompleteMultipartUpload rule is always part of it. Give this or `lifecycleRules`, not both; neither
    /// leaves the bucket's lifecycle alone.
    public var lifecyclePolicy: String? = nil
    /// Lifecycle rules (transitions, expiration, noncurrent-version expiration, abort of unfinished uploads), scoped
    /// to the destination's prefixes.
    public var lifecycleRules: LifecycleRules? = nil
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

    enum CodingKeys: String, CodingKey {
        case createBucket, versioning, bucketPolicy, publicAccessBlock, lifecyclePolicy, lifecycleRules, encryption
        case storageClass, multipartThresholdBytes, multipartChunkSizeBytes, maxConcurrentUploads, uploadTimeoutSeconds
        case maxRetries, retryDelaySeconds, exponentialBackoff, cloudwatchMetrics, metricsNamespace
        case awsProfile, roleARN, allowInsecureHTTP
    }

    /// Decodes options as the spool recorded them. A missing key takes its default, so options written by an older
    /// build (before a field existed) still read; unknown keys are ignored.
    ///
    /// - Throws: `DecodingError` when a present key has the wrong type.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = StorageOptions()
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try container.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        createBucket = try value(.createBucket, defaults.createBucket)
        versioning = try container.decodeIfPresent(Bool.self, forKey: .versioning)
        bucketPolicy = try container.decodeIfPresent(String.self, forKey: .bucketPolicy)
        publicAccessBlock = try container.decodeIfPresent(PublicAccessBlock.self, forKey: .publicAccessBlock)
        lifecyclePolicy = try container.decodeIfPresent(String.self, forKey: .lifecyclePolicy)
        lifecycleRules = try container.decodeIfPresent(LifecycleRules.self, forKey: .lifecycleRules)
        encryption = try container.decodeIfPresent(Encryption.self, forKey: .encryption)
        storageClass = try container.decodeIfPresent(String.self, forKey: .storageClass)
        multipartThresholdBytes = try value(.multipartThresholdBytes, defaults.multipartThresholdBytes)
        multipartChunkSizeBytes = try value(.multipartChunkSizeBytes, defaults.multipartChunkSizeBytes)
        maxConcurrentUploads = try value(.maxConcurrentUploads, defaults.maxConcurrentUploads)
        uploadTimeoutSeconds = try value(.uploadTimeoutSeconds, defaults.uploadTimeoutSeconds)
        maxRetries = try value(.maxRetries, defaults.maxRetries)
        retryDelaySeconds = try value(.retryDelaySeconds, defaults.retryDelaySeconds)
        exponentialBackoff = try value(.exponentialBackoff, defaults.exponentialBackoff)
        cloudwatchMetrics = try value(.cloudwatchMetrics, defaults.cloudwatchMetrics)
        metricsNamespace = try value(.metricsNamespace, defaults.metricsNamespace)
        awsProfile = try container.decodeIfPresent(String.self, forKey: .awsProfile)
        roleARN = try container.decodeIfPresent(String.self, forKey: .roleARN)
        allowInsecureHTTP = try value(.allowInsecureHTTP, defaults.allowInsecureHTTP)
    }

    /// Reads options recorded in the spool (`DestinationSpec.optionsJSON`).
    ///
    /// - Parameters:
    ///   - json: The recorded JSON object.
    ///   - destination: Who they belong to, for the message.
    /// - Throws: `SpoolError.invalidConfiguration` naming the destination and what could not be read: the drainer
    ///   pauses such a destination rather than deliver it with defaults it was not given.
    public static func decode(json: String, destination: String) throws -> StorageOptions {
        do {
            return try JSONDecoder().decode(StorageOptions.self, from: Data(json.utf8))
        } catch {
            throw SpoolError(
                .invalidConfiguration,
                "the options recorded for \(destination) cannot be read (\(Self.describe(error))); write to the "
                    + "destination again with valid options (they replace the recorded ones)")
        }
    }

    private static func describe(_ error: any Error) -> String {
        switch error as? DecodingError {
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .keyNotFound(_, let context),
            .dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return (path.isEmpty ? "" : "at '\(path)': ") + context.debugDescription
        default:
            return "\(error)"
        }
    }

    /// The lifecycle the options ask for: the preset's rules, the given rules, or nil (leave the bucket's alone).
    ///
    /// - Throws: `SpoolError.invalidConfiguration` for an unknown preset, both a preset and rules, or rules S3
    ///   would refuse.
    public func resolvedLifecycle() throws -> LifecycleRules? {
        switch (lifecyclePolicy, lifecycleRules) {
        case (nil, nil): return nil
        case (let name?, nil): return try LifecycleRules.preset(named: name)
        case (nil, let rules?):
            try rules.validate()
            return rules
        case (let name?, _?):
            throw SpoolError(
                .invalidConfiguration,
                "both lifecyclePolicy \(Validation.quoted(name)) and lifecycleRules are given; give one of them")
        }
    }

    /// The public-access block the options ask for, with the default filled in.
    ///
    /// - Throws: `SpoolError.invalidConfiguration` when `public-read` meets a block it cannot lift.
    public func resolvedPublicAccessBlock() throws -> PublicAccessBlock {
        guard bucketPolicy == BucketPolicy.publicRead else { return publicAccessBlock ?? .blocked }
        if let publicAccessBlock, publicAccessBlock != .lifted {
            throw SpoolError(
                .invalidConfiguration,
                "bucketPolicy public-read lifts the public-access block, but publicAccessBlock is "
                    + "\(publicAccessBlock.rawValue); leave publicAccessBlock unset or set it to lifted")
        }
        return .lifted
    }

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
        if let bucketPolicy { try BucketPolicy.validate(bucketPolicy) }
        _ = try resolvedPublicAccessBlock()
        _ = try resolvedLifecycle()
        if case .kms(let keyID?, _) = encryption,
            keyID.isEmpty || keyID.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value >= 0x7F })
        {
            throw reject("kmsKeyID '\(keyID)' is not a KMS key id, alias or ARN")
        }
        if let awsProfile,
            awsProfile.isEmpty || awsProfile.count > 128
                || awsProfile.unicodeScalars.contains(where: {
                    $0.value <= 0x20 || $0.value >= 0x7F || "[]".unicodeScalars.contains($0)
                })
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
