import Foundation

/// A destination's bucket set-up as the drainer last applied it.
public struct BucketSetupRecord: Sendable, Codable, Hashable {
    /// `BucketSetup.fingerprint()` of what was applied.
    public var fingerprint: String
    /// When (Unix ms).
    public var appliedAt: Int64
    /// The drainer that applied it (`host/pid/nonce`); nil when not recorded.
    public var appliedBy: String?
    /// What was applied (`BucketSetup.settings`): never a secret.
    public var settings: [String: String]
}

extension SpoolStore {
    /// The bucket set-up last applied to a destination, or nil when none was.
    ///
    /// - Throws: `SpoolError` from the index.
    public func bucketSetupRecord(destinationID: Int64) async throws -> BucketSetupRecord? {
        try await database.run { connection in
            try DestinationRows.fetch(connection, id: destinationID)?.bucketSetup
        }
    }

    /// The key prefixes of a destination's bundles, sorted: what its lifecycle rules and `public-read` cover.
    ///
    /// - Throws: `SpoolError` from the index.
    public func keyPrefixes(destinationID: Int64) async throws -> [String] {
        try await database.run { connection in
            try Self.keyPrefixes(connection, destinationID: destinationID)
        }
    }

    static func keyPrefixes(_ connection: SQLiteConnection, destinationID: Int64) throws -> [String] {
        try connection.query(
            "SELECT DISTINCT key_prefix FROM bundles WHERE destination_id = ? ORDER BY key_prefix",
            [.integer(destinationID)], { $0.text(0) })
    }

    /// Records that a destination's bucket set-up was applied, and appends a `destination.bucket_configured` audit
    /// event with the settings.
    ///
    /// - Parameters:
    ///   - destinationID: The destination.
    ///   - fingerprint: `BucketSetup.fingerprint()` of what was applied.
    ///   - settings: `BucketSetup.settings` (never a secret).
    ///   - appliedBy: The drainer's lease owner name.
    /// - Throws: `SpoolError` from the index.
    public func recordBucketSetup(
        destinationID: Int64, fingerprint: String, settings: [String: String], appliedBy: String
    ) async throws {
        let now = clock.nowMilliseconds()
        let identity = self.identity
        try await database.run { connection in
            try connection.transaction {
                try connection.execute(
                    """
                    UPDATE destinations SET setup_fingerprint = ?, setup_applied_at = ?, setup_applied_by = ?,
                           setup_settings = ?
                    WHERE id = ?
                    """,
                    [
                        .text(fingerprint), .integer(now), .text(appliedBy), .text(MetadataJSON.encode(settings)),
                        .integer(destinationID),
                    ])
                var detail = settings
                detail["destination_id"] = String(destinationID)
                detail["fingerprint"] = fingerprint
                try Audit.append(
                    connection, at: now, identity: identity, action: "destination.bucket_configured", detail: detail)
            }
        }
    }
}

/// Where a destination's bucket set-up stands, for `spool-inspect`.
public struct DestinationStatus: Sendable, Codable, Hashable {
    /// What the set-up state means.
    public enum BucketSetupState: String, Sendable, Codable {
        /// Applied, and the options and prefixes have not changed since.
        case applied
        /// Applied, but the options or prefixes changed: the next delivery applies it again.
        case outdated
        /// Not applied yet: the drainer applies it before the first delivery.
        case pending
        /// The options cannot be read or are not valid: the drainer pauses the destination.
        case invalid
        /// A local directory: there is no bucket to set up.
        case notApplicable = "not-applicable"
    }

    /// The destination id.
    public var id: Int64
    /// Its display name.
    public var destination: String
    /// `s3` or `file`.
    public var kind: String
    /// Where its bucket set-up stands.
    public var bucketSetup: BucketSetupState
    /// When the set-up was last applied (Unix ms).
    public var bucketSetupAppliedAt: Int64?
    /// Why it is `invalid`.
    public var bucketSetupProblem: String?
    /// Whether the drainer paused it.
    public var paused: Bool

    /// The status of a recorded destination, given its bundles' prefixes.
    static func of(_ record: DestinationRecord, prefixes: [String]) -> DestinationStatus {
        var status = DestinationStatus(
            id: record.id, destination: record.spec.displayName, kind: record.spec.kind.rawValue,
            bucketSetup: .pending, bucketSetupAppliedAt: record.bucketSetup?.appliedAt, bucketSetupProblem: nil,
            paused: record.pausedAt != nil)
        guard record.spec.kind == .s3 else {
            status.bucketSetup = .notApplicable
            return status
        }
        do {
            let options = try StorageOptions.decode(
                json: record.spec.optionsJSON, destination: record.spec.displayName)
            let wanted = try BucketSetup(bucket: record.spec.location, options: options, prefixes: prefixes)
            if let applied = record.bucketSetup {
                status.bucketSetup = try wanted.fingerprint() == applied.fingerprint ? .applied : .outdated
            }
        } catch {
            status.bucketSetup = .invalid
            status.bucketSetupProblem = (error as? SpoolError)?.message ?? "\(error)"
        }
        return status
    }
}
