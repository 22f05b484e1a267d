import Foundation

/// A bucket's public-access block (PutPublicAccessBlock, GetPublicAccessBlock).
public struct PublicAccessBlockConfiguration: Sendable, Hashable {
    /// Refuse requests that would set a public ACL.
    public var blockPublicAcls: Bool
    /// Ignore public ACLs already there.
    public var ignorePublicAcls: Bool
    /// Refuse bucket policies that grant public access.
    public var blockPublicPolicy: Bool
    /// Restrict access to a bucket with a public policy to AWS services and the owner's account.
    public var restrictPublicBuckets: Bool

    /// A configuration.
    public init(blockPublicAcls: Bool, ignorePublicAcls: Bool, blockPublicPolicy: Bool, restrictPublicBuckets: Bool) {
        self.blockPublicAcls = blockPublicAcls
        self.ignorePublicAcls = ignorePublicAcls
        self.blockPublicPolicy = blockPublicPolicy
        self.restrictPublicBuckets = restrictPublicBuckets
    }

    /// All four on: nothing in the bucket can be made public.
    public static let allBlocked = PublicAccessBlockConfiguration(
        blockPublicAcls: true, ignorePublicAcls: true, blockPublicPolicy: true, restrictPublicBuckets: true)
    /// All four off: a public policy (such as `public-read`) takes effect.
    public static let noneBlocked = PublicAccessBlockConfiguration(
        blockPublicAcls: false, ignorePublicAcls: false, blockPublicPolicy: false, restrictPublicBuckets: false)
}

/// One rule of a bucket's lifecycle configuration.
///
/// The fields cover what `spool-drain` sets. A rule read from S3 keeps its XML (`original`), and `put` sends such a
/// rule back exactly as it was, so rules someone else wrote (tag filters, dates, noncurrent transitions, ...) survive
/// a read-modify-write.
public struct BucketLifecycleRule: Sendable, Hashable {
    /// Objects move to `storageClass` `days` after creation.
    public struct Transition: Sendable, Hashable {
        /// Days after creation.
        public var days: Int
        /// The storage class (`STANDARD_IA`, `GLACIER`, ...).
        public var storageClass: String

        /// A transition.
        public init(days: Int, storageClass: String) {
            self.days = days
            self.storageClass = storageClass
        }
    }

    /// The rule's id (at most 255 characters).
    public var id: String
    /// The key prefix it applies to (`Filter/Prefix`); `""` for the whole bucket; nil when its filter is something
    /// else (a rule read from S3).
    public var prefix: String?
    /// `Status` Enabled (true) or Disabled.
    public var enabled: Bool
    /// Transitions.
    public var transitions: [Transition]
    /// `Expiration/Days`.
    public var expirationDays: Int?
    /// `NoncurrentVersionExpiration/NoncurrentDays`.
    public var noncurrentVersionExpirationDays: Int?
    /// `AbortIncompleteMultipartUpload/DaysAfterInitiation`.
    public var abortIncompleteUploadDays: Int?
    /// The rule as S3 returned it, sent back unchanged; nil for a rule built here.
    public var original: XMLNode?

    /// A rule for a prefix.
    public init(
        id: String, prefix: String, enabled: Bool = true, transitions: [Transition] = [], expirationDays: Int? = nil,
        noncurrentVersionExpirationDays: Int? = nil, abortIncompleteUploadDays: Int? = nil
    ) {
        self.id = id
        self.prefix = prefix
        self.enabled = enabled
        self.transitions = transitions
        self.expirationDays = expirationDays
        self.noncurrentVersionExpirationDays = noncurrentVersionExpirationDays
        self.abortIncompleteUploadDays = abortIncompleteUploadDays
    }

    init(parsing rule: XMLNode) {
        id = rule.string("ID") ?? ""
        // The current form is Filter/Prefix; rules written with the older API have a Prefix of their own.
        if let filter = rule.child("Filter") {
            if filter.children.isEmpty {
                prefix = ""
            } else if filter.children.count == 1, let only = filter.child("Prefix") {
                prefix = only.text
            } else {
                prefix = nil
            }
        } else {
            prefix = rule.child("Prefix")?.text
        }
        enabled = rule.string("Status") == "Enabled"
        transitions = rule.children("Transition").compactMap { transition in
            guard let days = transition.int("Days"), let storageClass = transition.string("StorageClass") else {
                return nil
            }
            return Transition(days: days, storageClass: storageClass)
        }
        expirationDays = rule.child("Expiration")?.int("Days")
        noncurrentVersionExpirationDays = rule.child("NoncurrentVersionExpiration")?.int("NoncurrentDays")
        abortIncompleteUploadDays = rule.child("AbortIncompleteMultipartUpload")?.int("DaysAfterInitiation")
        original = rule
    }

    /// The `<Rule>` element, in the order of S3's schema.
    var xml: XMLNode {
        if let original { return original }
        var children: [XMLNode] = []
        if let expirationDays {
            children.append(XMLNode("Expiration", children: [.text("Days", String(expirationDays))]))
        }
        children.append(.text("ID", id))
        children.append(XMLNode("Filter", children: [.text("Prefix", prefix ?? "")]))
        children.append(.text("Status", enabled ? "Enabled" : "Disabled"))
        for transition in transitions {
            children.append(
                XMLNode(
                    "Transition",
                    children: [.text("Days", String(transition.days)), .text("StorageClass", transition.storageClass)]))
        }
        if let noncurrentVersionExpirationDays {
            children.append(
                XMLNode(
                    "NoncurrentVersionExpiration",
                    children: [.text("NoncurrentDays", String(noncurrentVersionExpirationDays))]))
        }
        if let abortIncompleteUploadDays {
            children.append(
                XMLNode(
                    "AbortIncompleteMultipartUpload",
                    children: [.text("DaysAfterInitiation", String(abortIncompleteUploadDays))]))
        }
        return XMLNode("Rule", children: children)
    }
}

extension S3Client {
    // MARK: Lifecycle

    /// Replaces a bucket's lifecycle configuration with these rules (PutBucketLifecycleConfiguration); rules read
    /// with `getBucketLifecycleConfiguration` are sent back as they were.
    ///
    /// - Throws: `S3Error` (`MalformedXML`, `InvalidArgument` for rules S3 refuses, `AccessDenied`, ...).
    public func putBucketLifecycleConfiguration(_ bucket: String, rules: [BucketLifecycleRule]) async throws {
        let document = XMLNode(
            "LifecycleConfiguration", attributes: ["xmlns": Self.xmlNamespace], children: rules.map(\.xml))
        try await putBucketSubresource(
            bucket, "lifecycle", operation: "PutBucketLifecycleConfiguration", document: document)
    }

    /// A bucket's lifecycle rules (GetBucketLifecycleConfiguration); empty when it has none.
    ///
    /// - Throws: `S3Error` other than `NoSuchLifecycleConfiguration`.
    public func getBucketLifecycleConfiguration(_ bucket: String) async throws -> [BucketLifecycleRule] {
        guard
            let response = try await getBucketSubresource(
                bucket, "lifecycle", operation: "GetBucketLifecycleConfiguration",
                absentCodes: ["NoSuchLifecycleConfiguration"])
        else { return [] }
        return try parseXML(response, operation: "GetBucketLifecycleConfiguration").children("Rule")
            .map(BucketLifecycleRule.init(parsing:))
    }

    /// Removes a bucket's lifecycle configuration (DeleteBucketLifecycle).
    ///
    /// - Throws: `S3Error`.
    public func deleteBucketLifecycle(_ bucket: String) async throws {
        try await deleteBucketSubresource(bucket, "lifecycle", operation: "DeleteBucketLifecycle")
    }

    // MARK: Default encryption

    /// Sets a bucket's default encryption (PutBucketEncryption): `AES256`, or `aws:kms` with a key (`KMSMasterKeyID`;
    /// none for the AWS-managed key) and `BucketKeyEnabled`.
    ///
    /// - Throws: `S3Error` (`AccessDenied`, `KMS.NotFoundException`, ...).
    public func putBucketEncryption(_ bucket: String, _ encryption: ServerSideEncryption) async throws {
        var byDefault: [XMLNode]
        var bucketKey = false
        switch encryption {
        case .aes256:
            byDefault = [.text("SSEAlgorithm", "AES256")]
        case .kms(let keyID, let enabled):
            byDefault = [.text("SSEAlgorithm", "aws:kms")]
            if let keyID { byDefault.append(.text("KMSMasterKeyID", keyID)) }
            bucketKey = enabled
        }
        let rule = XMLNode(
            "Rule",
            children: [
                XMLNode("ApplyServerSideEncryptionByDefault", children: byDefault),
                .text("BucketKeyEnabled", String(bucketKey)),
            ])
        let document = XMLNode(
            "ServerSideEncryptionConfiguration", attributes: ["xmlns": Self.xmlNamespace], children: [rule])
        try await putBucketSubresource(bucket, "encryption", operation: "PutBucketEncryption", document: document)
    }

    /// A bucket's default encryption (GetBucketEncryption); nil when it has none.
    ///
    /// - Throws: `S3Error` other than `ServerSideEncryptionConfigurationNotFoundError`.
    public func getBucketEncryption(_ bucket: String) async throws -> ServerSideEncryption? {
        guard
            let response = try await getBucketSubresource(
                bucket, "encryption", operation: "GetBucketEncryption",
                absentCodes: ["ServerSideEncryptionConfigurationNotFoundError"])
        else { return nil }
        let root = try parseXML(response, operation: "GetBucketEncryption")
        guard let rule = root.child("Rule"), let byDefault = rule.child("ApplyServerSideEncryptionByDefault") else {
            return nil
        }
        switch byDefault.string("SSEAlgorithm") {
        case "AES256": return .aes256
        case "aws:kms", "aws:kms:dsse":
            return .kms(keyID: byDefault.string("KMSMasterKeyID"), bucketKey: rule.bool("BucketKeyEnabled") ?? false)
        default:
            throw S3Error(
                status: response.status, code: "InvalidResponse",
                message: "GetBucketEncryption answered an unknown SSEAlgorithm "
                    + "'\(byDefault.string("SSEAlgorithm") ?? "")'", operation: "GetBucketEncryption",
                isRetryable: false)
        }
    }

    // MARK: Policy

    /// Replaces a bucket's policy with a JSON document (PutBucketPolicy).
    ///
    /// - Throws: `S3Error` (`MalformedPolicy`, `AccessDenied` — also when the public-access block refuses a public
    ///   policy).
    public func putBucketPolicy(_ bucket: String, policy: String) async throws {
        try await putBucketSubresource(
            bucket, "policy", operation: "PutBucketPolicy", body: Array(policy.utf8), contentType: "application/json")
    }

    /// A bucket's policy document (GetBucketPolicy); nil when it has none.
    ///
    /// - Throws: `S3Error` other than `NoSuchBucketPolicy`.
    public func getBucketPolicy(_ bucket: String) async throws -> String? {
        try await getBucketSubresource(
            bucket, "policy", operation: "GetBucketPolicy", absentCodes: ["NoSuchBucketPolicy"]
        ).map { String(decoding: $0.body, as: UTF8.self) }
    }

    /// Removes a bucket's policy (DeleteBucketPolicy).
    ///
    /// - Throws: `S3Error`.
    public func deleteBucketPolicy(_ bucket: String) async throws {
        try await deleteBucketSubresource(bucket, "policy", operation: "DeleteBucketPolicy")
    }

    // MARK: Public-access block

    /// Sets a bucket's public-access block (PutPublicAccessBlock).
    ///
    /// - Throws: `S3Error`.
    public func putPublicAccessBlock(_ bucket: String, _ configuration: PublicAccessBlockConfiguration) async throws {
        let document = XMLNode(
            "PublicAccessBlockConfiguration", attributes: ["xmlns": Self.xmlNamespace],
            children: [
                .text("BlockPublicAcls", String(configuration.blockPublicAcls)),
                .text("IgnorePublicAcls", String(configuration.ignorePublicAcls)),
                .text("BlockPublicPolicy", String(configuration.blockPublicPolicy)),
                .text("RestrictPublicBuckets", String(configuration.restrictPublicBuckets)),
            ])
        try await putBucketSubresource(
            bucket, "publicAccessBlock", operation: "PutPublicAccessBlock", document: document)
    }

    /// A bucket's public-access block (GetPublicAccessBlock); nil when it has none (the account's settings apply).
    ///
    /// - Throws: `S3Error` other than `NoSuchPublicAccessBlockConfiguration`.
    public func getPublicAccessBlock(_ bucket: String) async throws -> PublicAccessBlockConfiguration? {
        guard
            let response = try await getBucketSubresource(
                bucket, "publicAccessBlock", operation: "GetPublicAccessBlock",
                absentCodes: ["NoSuchPublicAccessBlockConfiguration"])
        else { return nil }
        let root = try parseXML(response, operation: "GetPublicAccessBlock")
        return PublicAccessBlockConfiguration(
            blockPublicAcls: root.bool("BlockPublicAcls") ?? false,
            ignorePublicAcls: root.bool("IgnorePublicAcls") ?? false,
            blockPublicPolicy: root.bool("BlockPublicPolicy") ?? false,
            restrictPublicBuckets: root.bool("RestrictPublicBuckets") ?? false)
    }

    /// Removes a bucket's public-access block (DeletePublicAccessBlock): the account's settings apply alone.
    ///
    /// - Throws: `S3Error`.
    public func deletePublicAccessBlock(_ bucket: String) async throws {
        try await deleteBucketSubresource(bucket, "publicAccessBlock", operation: "DeletePublicAccessBlock")
    }
}
