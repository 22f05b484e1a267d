import Foundation
import Hashing

/// The bucket set-up a destination asks for (SPEC §6), resolved from its options and the key prefixes its bundles
/// use: what the drainer applies before the destination's first delivery, and the fingerprint that tells it whether
/// it already did.
///
/// The drainer applies it in this order: create → public-access block → policy → versioning → default encryption →
/// lifecycle. A nil (or `unmanaged`) setting leaves that part of the bucket as it is.
public struct BucketSetup: Sendable, Hashable, Codable {
    /// A bucket policy to apply.
    public enum Policy: Sendable, Hashable, Codable {
        /// This document replaces the bucket's policy.
        case document(String)
        /// `public-read`: one statement per prefix (`BucketPolicy.publicReadStatements`) is added to the bucket's
        /// policy, replacing earlier statements with the same `Sid`.
        case publicRead
    }

    /// Bumped when the way options turn into bucket settings changes, so that every destination is set up again.
    static let formatVersion = 1

    /// The bucket.
    public var bucket: String
    /// The key prefixes the destination's bundles use (sorted, distinct): lifecycle rules and `public-read` are
    /// scoped to them.
    public var prefixes: [String]
    /// Create the bucket when it does not exist.
    public var createBucket: Bool
    /// The public-access block.
    public var publicAccessBlock: StorageOptions.PublicAccessBlock
    /// The policy; nil leaves the bucket's alone.
    public var policy: Policy?
    /// Versioning on (true), suspended (false), or left alone (nil).
    public var versioning: Bool?
    /// The bucket's default encryption; nil leaves it alone.
    public var encryption: StorageOptions.Encryption?
    /// The lifecycle for the prefixes; nil leaves the bucket's alone.
    public var lifecycle: LifecycleRules?
    /// The preset the lifecycle came from (nil for given rules).
    public var lifecyclePreset: String?
    private var version = BucketSetup.formatVersion

    /// The set-up for a bucket destination.
    ///
    /// - Parameters:
    ///   - bucket: The bucket name.
    ///   - options: The destination's options (validated here).
    ///   - prefixes: The key prefixes of the destination's bundles.
    /// - Throws: `SpoolError.invalidConfiguration` when the options are not valid.
    public init(bucket: String, options: StorageOptions, prefixes: [String]) throws {
        try options.validate()
        self.bucket = bucket
        self.prefixes = Array(Set(prefixes)).sorted()
        self.createBucket = options.createBucket
        self.publicAccessBlock = try options.resolvedPublicAccessBlock()
        switch options.bucketPolicy {
        case nil: policy = nil
        case BucketPolicy.publicRead?: policy = .publicRead
        case let document?: policy = .document(document)
        }
        self.versioning = options.versioning
        self.encryption = options.encryption
        self.lifecycle = try options.resolvedLifecycle()
        self.lifecyclePreset = options.lifecycleRules == nil ? options.lifecyclePolicy : nil
    }

    /// Whether there is nothing to apply.
    public var isEmpty: Bool {
        !createBucket && publicAccessBlock == .unmanaged && policy == nil && versioning == nil && encryption == nil
            && lifecycle == nil
    }

    /// A SHA-256 (hex) of everything above: equal fingerprints mean nothing changed since the last application.
    ///
    /// - Throws: `EncodingError` (not expected: the set-up is strings, numbers and booleans).
    public func fingerprint() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return SHA256Hasher.hexDigest(Array(try encoder.encode(self)))
    }

    /// What is applied, for the audit trail and logs: no secret is among it (a custom policy appears as its
    /// SHA-256, a KMS key by its id or ARN).
    public var settings: [String: String] {
        var settings = [
            "bucket": bucket, "prefixes": prefixes.map { $0.isEmpty ? "(all)" : $0 }.joined(separator: ","),
            "create_bucket": String(createBucket), "public_access_block": publicAccessBlock.rawValue,
        ]
        switch policy {
        case nil: break
        case .publicRead: settings["policy"] = BucketPolicy.publicRead
        case .document(let document):
            settings["policy"] = "document sha256:" + SHA256Hasher.hexDigest(Array(document.utf8))
        }
        if let versioning { settings["versioning"] = versioning ? "enabled" : "suspended" }
        switch encryption {
        case nil: break
        case .aes256: settings["encryption"] = "AES256"
        case .kms(let keyID, let bucketKey):
            settings["encryption"] = "aws:kms"
            settings["kms_key_id"] = keyID ?? "aws/s3"
            settings["bucket_key"] = String(bucketKey)
        }
        if let lifecycle {
            settings["lifecycle"] = lifecyclePreset ?? "rules"
            if !lifecycle.transitions.isEmpty {
                settings["lifecycle_transitions"] = lifecycle.transitions.map { "\($0.storageClass)@\($0.days)d" }
                    .joined(separator: ",")
            }
            if let days = lifecycle.expirationDays { settings["lifecycle_expiration_days"] = String(days) }
            if let days = lifecycle.noncurrentVersionExpirationDays {
                settings["lifecycle_noncurrent_expiration_days"] = String(days)
            }
            settings["lifecycle_abort_incomplete_uploads_days"] = String(lifecycle.abortIncompleteUploadsAfterDays)
        }
        return settings
    }
}
