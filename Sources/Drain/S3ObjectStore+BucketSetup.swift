import Foundation
import Hashing
import Logging
import S3
import Spool

/// A store whose bucket the drainer sets up before delivering to it (SPEC §6). S3 is one; a local directory has no
/// bucket set-up.
public protocol BucketConfigurable: ObjectStore {
    /// Applies a bucket set-up. Every step is safe to repeat; a failure part-way leaves the steps before it in place
    /// and the whole set-up is applied again next time.
    ///
    /// - Returns: The steps applied, in order (`create`, `public-access-block`, `policy`, `versioning`, `encryption`,
    ///   `lifecycle`).
    /// - Throws: `ObjectStoreError`: `configuration` for permission and configuration errors (the destination is
    ///   paused), `transient` for what may pass.
    func applyBucketSetup(_ setup: BucketSetup, logger: Logger) async throws -> [String]
}

extension S3ObjectStore: BucketConfigurable {
    /// The prefix of the lifecycle rule ids the drainer owns; rules with other ids are kept as they are.
    static let lifecycleRuleIDPrefix = "pipeline-storage:"

    /// Applies the set-up in order: create → public-access block → policy → versioning → default encryption →
    /// lifecycle. The public-access block comes before the policy because a block left on refuses a public policy;
    /// the lifecycle and `public-read` keep rules and statements that are not the drainer's.
    public func applyBucketSetup(_ setup: BucketSetup, logger: Logger) async throws -> [String] {
        var applied: [String] = []
        func step(_ name: String, permission: String, optionHint: String, _ body: () async throws -> Void)
            async throws
        {
            do {
                try await body()
                applied.append(name)
            } catch let error as S3Error {
                throw Self.setupError(error, bucket: bucket, step: name, permission: permission, optionHint: optionHint)
            }
        }
        if setup.createBucket {
            try await step("create", permission: "s3:CreateBucket", optionHint: "create the bucket yourself") {
                if try await !client.bucketExists(bucket) { try await client.createBucket(bucket) }
            }
        }
        if setup.publicAccessBlock != .unmanaged {
            let blocked = setup.publicAccessBlock == .blocked
            try await step(
                "public-access-block", permission: "s3:PutBucketPublicAccessBlock",
                optionHint: "set publicAccessBlock to unmanaged"
            ) {
                try await client.putPublicAccessBlock(bucket, blocked ? .allBlocked : .noneBlocked)
            }
        }
        if let policy = setup.policy {
            try await step(
                "policy", permission: "s3:GetBucketPolicy and s3:PutBucketPolicy", optionHint: "drop bucketPolicy"
            ) {
                switch policy {
                case .document(let document):
                    try await client.putBucketPolicy(bucket, policy: document)
                case .publicRead:
                    logger.warning(
                        "bucket policy public-read: anyone can read the destination's objects; public-access block lifted",
                        metadata: [
                            "bucket": "\(bucket)", "prefixes": "\(setup.prefixes.joined(separator: ","))",
                        ])
                    let merged = try Self.policy(
                        merging: try BucketPolicy.publicReadStatements(bucket: bucket, prefixes: setup.prefixes),
                        ids: Set(setup.prefixes.map(BucketPolicy.publicReadStatementID)),
                        into: try await client.getBucketPolicy(bucket), bucket: bucket)
                    try await client.putBucketPolicy(bucket, policy: merged)
                }
            }
        }
        if let versioning = setup.versioning {
            try await step("versioning", permission: "s3:PutBucketVersioning", optionHint: "drop versioning") {
                try await client.putBucketVersioning(bucket, enabled: versioning)
            }
        }
        if let encryption = setup.encryption {
            try await step(
                "encryption", permission: "s3:PutEncryptionConfiguration (and, for aws:kms, use of the key)",
                optionHint: "drop encryption"
            ) {
                try await client.putBucketEncryption(bucket, Self.serverSideEncryption(encryption))
            }
        }
        if let lifecycle = setup.lifecycle {
            try await step(
                "lifecycle", permission: "s3:GetLifecycleConfiguration and s3:PutLifecycleConfiguration",
                optionHint: "drop lifecyclePolicy and lifecycleRules"
            ) {
                let ours = Self.lifecycleRules(lifecycle, prefixes: setup.prefixes)
                let owned = Set(setup.prefixes.flatMap { Self.lifecycleRuleIDs(prefix: $0) })
                let kept = try await client.getBucketLifecycleConfiguration(bucket).filter { !owned.contains($0.id) }
                try await client.putBucketLifecycleConfiguration(bucket, rules: kept + ours)
            }
        }
        return applied
    }

    // MARK: Lifecycle

    /// The ids of the rules the drainer writes for a prefix: the abort of unfinished uploads, and the transitions
    /// and expirations.
    static func lifecycleRuleIDs(prefix: String) -> [String] {
        ["abort-incomplete-uploads", "lifecycle"].map { kind in
            let id = lifecycleRuleIDPrefix + kind + ":" + (prefix.isEmpty ? "*" : prefix)
            // S3 allows 255 characters; a prefix may be longer (up to 512 bytes): name it by its hash then.
            return id.utf8.count <= 255
                ? id : lifecycleRuleIDPrefix + kind + ":sha256:" + SHA256Hasher.hexDigest(Array(prefix.utf8))
        }
    }

    /// The drainer's rules for each prefix: always one that aborts unfinished uploads, and one with the
    /// transitions and expirations when there are any.
    static func lifecycleRules(_ lifecycle: LifecycleRules, prefixes: [String]) -> [BucketLifecycleRule] {
        prefixes.flatMap { prefix -> [BucketLifecycleRule] in
            let ids = lifecycleRuleIDs(prefix: prefix)
            var rules = [
                BucketLifecycleRule(
                    id: ids[0], prefix: prefix, abortIncompleteUploadDays: lifecycle.abortIncompleteUploadsAfterDays)
            ]
            if !lifecycle.transitions.isEmpty || lifecycle.expirationDays != nil
                || lifecycle.noncurrentVersionExpirationDays != nil
            {
                rules.append(
                    BucketLifecycleRule(
                        id: ids[1], prefix: prefix,
                        transitions: lifecycle.transitions.map {
                            BucketLifecycleRule.Transition(days: $0.days, storageClass: $0.storageClass)
                        },
                        expirationDays: lifecycle.expirationDays,
                        noncurrentVersionExpirationDays: lifecycle.noncurrentVersionExpirationDays))
            }
            return rules
        }
    }

    // MARK: Policy

    /// A policy document: `existing` (or an empty one) with the statements whose `Sid` is in `ids` replaced by
    /// `statements`.
    ///
    /// - Throws: `S3Error` `MalformedPolicy` when the bucket's policy is not a JSON object.
    static func policy(merging statements: [String], ids: Set<String>, into existing: String?, bucket: String)
        throws -> String
    {
        func object(_ text: String) -> [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
        }
        var document: [String: Any] = ["Version": "2012-10-17"]
        if let existing {
            guard let parsed = object(existing) else {
                throw S3Error(
                    status: 0, code: "MalformedPolicy",
                    message: "the policy of bucket '\(bucket)' is not a JSON object; fix or delete it",
                    isRetryable: false)
            }
            document = parsed
        }
        var current: [Any] = []
        if let list = document["Statement"] as? [Any] {
            current = list
        } else if let single = document["Statement"] {
            current = [single]
        }
        current.removeAll { statement in
            ((statement as? [String: Any])?["Sid"] as? String).map(ids.contains) ?? false
        }
        document["Statement"] = current + statements.compactMap(object)
        let data = try JSONSerialization.data(
            withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    // MARK: Errors

    /// A set-up step's S3 error in delivery's terms: what may pass is `transient`; anything else pauses the
    /// destination with a message that says which step failed and what would fix it.
    static func setupError(
        _ error: S3Error, bucket: String, step: String, permission: String, optionHint: String
    ) -> ObjectStoreError {
        let what = "bucket set-up of s3://\(bucket) failed at \(step)"
        if error.isRetryable {
            return ObjectStoreError(.transient, code: error.code, message: "\(what): \(error)")
        }
        let fix: String
        switch error.code {
        case "AccessDenied", "AllAccessDisabled":
            fix = "the drainer's credentials need \(permission) on the bucket; grant it, or \(optionHint)"
        case "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
            "CredentialsNotFound":
            fix = "check the drainer's credentials"
        case "NoSuchBucket":
            fix = "the bucket does not exist; create it, or set createBucket"
        case "BucketAlreadyExists":
            fix = "the name is taken by another account: use another bucket name"
        default:
            fix = "check the destination's options, or \(optionHint)"
        }
        return ObjectStoreError(.configuration, code: error.code, message: "\(what): \(error); \(fix)")
    }
}
