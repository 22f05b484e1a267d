import Foundation
import Hashing

/// Bucket policies as `StorageOptions.bucketPolicy` gives them: a JSON policy document, or a canned name.
public enum BucketPolicy {
    /// The canned policy that lets anyone read the destination's objects (`s3:GetObject` on `bucket/prefix*`). It
    /// also lifts the bucket's public-access block, and the drainer logs a warning when it applies it.
    public static let publicRead = "public-read"
    /// Every canned name.
    public static let cannedNames = [publicRead]
    /// S3's limit on a bucket policy, in bytes.
    public static let maximumBytes = 20 * 1024
    /// The `Sid` of the statements `public-read` adds start with this, followed by a hash of the prefix: one
    /// statement per prefix, so that spools on several hosts sharing a bucket each keep their own.
    public static let publicReadStatementIDPrefix = "PipelineStoragePublicRead"

    /// Checks a policy option: a canned name, or a JSON object with a `Statement` (an object or a non-empty array)
    /// of at most 20 KB.
    ///
    /// - Throws: `SpoolError.invalidConfiguration` saying what is wrong.
    public static func validate(_ policy: String) throws {
        if cannedNames.contains(policy) { return }
        let trimmed = policy.drop(while: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" })
        guard trimmed.hasPrefix("{") else {
            throw SpoolError(
                .invalidConfiguration,
                "bucketPolicy \(Validation.quoted(String(policy.prefix(60)))) is neither a canned policy ("
                    + cannedNames.joined(separator: ", ") + ") nor a JSON policy document")
        }
        guard policy.utf8.count <= maximumBytes else {
            throw SpoolError(
                .invalidConfiguration,
                "bucketPolicy is \(policy.utf8.count) bytes; S3 accepts bucket policies up to \(maximumBytes)")
        }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(policy.utf8))
        } catch {
            throw SpoolError(
                .invalidConfiguration, "bucketPolicy is not valid JSON (\(error.localizedDescription))")
        }
        guard let document = parsed as? [String: Any] else {
            throw SpoolError(.invalidConfiguration, "bucketPolicy must be a JSON object (a policy document)")
        }
        let statement = document["Statement"]
        let statements = (statement as? [Any]) ?? (statement is [String: Any] ? [statement!] : nil)
        guard let statements, !statements.isEmpty, statements.allSatisfy({ $0 is [String: Any] }) else {
            throw SpoolError(
                .invalidConfiguration,
                "bucketPolicy has no Statement; a policy document is {\"Version\": \"2012-10-17\", \"Statement\": "
                    + "[{\"Effect\": ..., \"Principal\": ..., \"Action\": ..., \"Resource\": ...}]}")
        }
    }

    /// The `Sid` of the `public-read` statement for one prefix.
    public static func publicReadStatementID(prefix: String) -> String {
        publicReadStatementIDPrefix + String(SHA256Hasher.hexDigest(Array(prefix.utf8)).prefix(16))
    }

    /// The statements `public-read` adds for a bucket: one per prefix, allowing `s3:GetObject` to everyone on
    /// `arn:aws:s3:::bucket/prefix*`, as JSON objects.
    ///
    /// - Throws: `EncodingError` (not expected: the statements are strings only).
    public static func publicReadStatements(bucket: String, prefixes: [String]) throws -> [String] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try prefixes.map { prefix in
            let statement: [String: String] = [
                "Sid": publicReadStatementID(prefix: prefix), "Effect": "Allow", "Principal": "*",
                "Action": "s3:GetObject", "Resource": "arn:aws:s3:::\(bucket)/\(prefix)*",
            ]
            return String(decoding: try encoder.encode(statement), as: UTF8.self)
        }
    }
}
