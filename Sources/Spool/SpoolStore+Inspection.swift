/// A summary of a spool for operators (`spool-inspect status`).
public struct SpoolStatus: Sendable, Codable {
    /// Resources (or bundles) in one state.
    public struct StateTotal: Sendable, Codable, Hashable {
        /// The state.
        public var state: String
        /// How many.
        public var count: Int
        /// Their payload bytes (0 for bundles).
        public var bytes: Int64
    }

    /// Failed resources sharing an error code.
    public struct ErrorTotal: Sendable, Codable, Hashable {
        /// The error code.
        public var code: String
        /// How many failed resources carry it.
        public var count: Int
    }

    /// A destination the drainer has paused, and why.
    public struct PausedDestination: Sendable, Codable, Hashable {
        /// Its display name.
        public var destination: String
        /// Since when (Unix ms).
        public var pausedAt: Int64
        /// The error code that paused it.
        public var errorCode: String
        /// The error message.
        public var message: String
    }

    /// The spool directory.
    public var spool: String
    /// Schema version of the index.
    public var schemaVersion: Int
    /// When this summary was taken (Unix ms).
    public var generatedAt: Int64
    /// Resources by state (every state listed, zeros included). Manifests are not counted here.
    public var resources: [StateTotal]
    /// Bundles by state.
    public var bundles: [StateTotal]
    /// `_bundle.json` markers waiting to be written.
    public var manifestsPending: Int
    /// Payload bytes the spool holds on disk or inline (what `maxSpoolBytes` limits).
    public var heldBytes: Int64
    /// When the oldest pending resource was spooled (Unix ms); nil when nothing is pending.
    public var oldestPendingSpooledAt: Int64?
    /// Failed resources grouped by error code, most frequent first.
    public var failuresByCode: [ErrorTotal]
    /// Destinations paused by configuration or permission errors.
    public var pausedDestinations: [PausedDestination]
    /// Open bundles whose writer process is gone (same host, pid not running): seal or discard them.
    public var abandonedOpenBundles: [String]
    /// Every destination, with where its bucket set-up stands.
    public var destinations: [DestinationStatus]
}

/// Filters for `listResources`.
public struct ResourceFilter: Sendable {
    /// Only resources in this state.
    public var state: ResourceState?
    /// Only resources of this bundle.
    public var bundleID: String?
    /// Only resources spooled before this time (Unix ms).
    public var spooledBefore: Int64?
    /// At most this many, oldest first.
    public var limit: Int
    /// Include `_bundle.json` rows.
    public var includeManifests: Bool

    /// A filter; everything by default, up to 100 rows.
    public init(
        state: ResourceState? = nil, bundleID: String? = nil, spooledBefore: Int64? = nil, limit: Int = 100,
        includeManifests: Bool = false
    ) {
        self.state = state
        self.bundleID = bundleID
        self.spooledBefore = spooledBefore
        self.limit = limit
        self.includeManifests = includeManifests
    }
}

/// Everything about one resource (`spool-inspect show`).
public struct ResourceDetail: Sendable, Codable {
    /// The row.
    public var resource: ResourceRecord
    /// Its bundle.
    public var bundle: BundleRecord
    /// Its destination.
    public var destination: DestinationRecord
    /// Recorded multipart parts.
    public var parts: [PartRecord]
    /// Its audit trail, oldest first (state changes and error history).
    public var events: [AuditEvent]
}

extension SpoolStore {
    /// Counts and bytes by state, oldest pending, failures by code, paused destinations, abandoned open bundles.
    public func status() async throws -> SpoolStatus {
        let now = clock.nowMilliseconds()
        let root = layout.root
        let host = identity.host
        return try await database.run { connection in
            var byState: [String: (Int, Int64)] = [:]
            for (state, count, bytes) in try connection.query(
                "SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM resources WHERE kind = 'resource' GROUP BY state",
                [], { ($0.text(0), $0.int(1), $0.int64(2)) })
            {
                byState[state] = (count, bytes)
            }
            var bundlesByState: [String: Int] = [:]
            for (state, count) in try connection.query(
                "SELECT state, COUNT(*) FROM bundles GROUP BY state", [], { ($0.text(0), $0.int(1)) })
            {
                bundlesByState[state] = count
            }
            let manifestsPending =
                try connection.queryFirst(
                    "SELECT COUNT(*) FROM resources WHERE kind = 'manifest' AND state IN ('pending', 'uploading')"
                ) { $0.int(0) } ?? 0
            let held =
                try connection.queryFirst(
                    "SELECT COALESCE(SUM(size), 0) FROM resources WHERE payload_storage IN ('file', 'inline')"
                ) { $0.int64(0) } ?? 0
            let oldest =
                try connection.queryFirst(
                    """
                    SELECT MIN(spooled_at) FROM resources
                    WHERE state IN ('pending', 'uploading') AND kind = 'resource'
                    """
                ) { $0.optionalInt64(0) } ?? nil
            let failures = try connection.query(
                """
                SELECT COALESCE(last_error_code, 'unknown'), COUNT(*) FROM resources WHERE state = 'failed'
                GROUP BY 1 ORDER BY 2 DESC, 1
                """, [], { SpoolStatus.ErrorTotal(code: $0.text(0), count: $0.int(1)) })
            let paused = try connection.query(
                """
                SELECT kind, location, endpoint, paused_at, COALESCE(paused_error_code, ''),
                       COALESCE(paused_error_message, '')
                FROM destinations WHERE paused_at IS NOT NULL ORDER BY paused_at
                """
            ) { row in
                let spec = DestinationSpec(
                    kind: DestinationSpec.Kind(rawValue: row.text(0)) ?? .s3, location: row.text(1),
                    endpoint: row.text(2), region: "", optionsJSON: "{}")
                return SpoolStatus.PausedDestination(
                    destination: spec.displayName, pausedAt: row.int64(3), errorCode: row.text(4),
                    message: row.text(5))
            }
            let openBundles = try connection.query(
                "SELECT id, writer_host, writer_pid FROM bundles WHERE state = 'open' ORDER BY created_at", [],
                { ($0.text(0), $0.optionalText(1), $0.optionalInt(2)) })
            let abandoned = openBundles.compactMap { id, writerHost, writerPID -> String? in
                guard writerHost == host, let writerPID else { return nil }
                return processIsAlive(writerPID) ? nil : id
            }
            let destinations = try connection.query("SELECT id FROM destinations ORDER BY id", [], { $0.int64(0) })
                .compactMap { id -> DestinationStatus? in
                    guard let record = try DestinationRows.fetch(connection, id: id) else { return nil }
                    return DestinationStatus.of(record, prefixes: try Self.keyPrefixes(connection, destinationID: id))
                }
            return SpoolStatus(
                spool: root, schemaVersion: try SchemaMigrator.appliedVersion(connection), generatedAt: now,
                resources: ResourceState.allCases.map {
                    let (count, bytes) = byState[$0.rawValue] ?? (0, 0)
                    return SpoolStatus.StateTotal(state: $0.rawValue, count: count, bytes: bytes)
                },
                bundles: BundleState.allCases.map {
                    SpoolStatus.StateTotal(state: $0.rawValue, count: bundlesByState[$0.rawValue] ?? 0, bytes: 0)
                },
                manifestsPending: manifestsPending, heldBytes: held, oldestPendingSpooledAt: oldest,
                failuresByCode: failures, pausedDestinations: paused, abandonedOpenBundles: abandoned,
                destinations: destinations)
        }
    }

    /// Resources matching the filter, oldest first.
    public func listResources(_ filter: ResourceFilter) async throws -> [ResourceRecord] {
        try await database.run { connection in
            try connection.query(
                """
                SELECT \(ResourceRows.columns) FROM resources
                WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR bundle_id = ?2) AND (?3 IS NULL OR spooled_at < ?3)
                  AND (?4 OR kind = 'resource')
                ORDER BY spooled_at, id LIMIT ?5
                """,
                [
                    .optionalText(filter.state?.rawValue), .optionalText(filter.bundleID),
                    .optionalInt64(filter.spooledBefore), .int(filter.includeManifests ? 1 : 0),
                    .int(max(0, filter.limit)),
                ], ResourceRows.map)
        }
    }

    /// One resource with its bundle, destination, parts and audit trail.
    ///
    /// - Throws: `SpoolError.resourceNotFound`.
    public func resourceDetail(_ id: Int64) async throws -> ResourceDetail {
        try await database.run { connection in
            guard
                let resource = try connection.queryFirst(
                    "SELECT \(ResourceRows.columns) FROM resources WHERE id = ?", [.integer(id)], ResourceRows.map)
            else {
                throw SpoolError(
                    .resourceNotFound,
                    "resource \(id) does not exist in this spool; 'spool-inspect list' shows the ids")
            }
            let bundle = try BundleRows.fetch(connection, id: resource.bundleID)!
            let destination = try DestinationRows.fetch(connection, id: resource.destinationID)!
            let parts = try connection.query(
                """
                SELECT upload_id, part_number, size, etag, checksum_crc32c, checksum_sha256, recorded_at
                FROM resource_parts WHERE resource_id = ? ORDER BY part_number
                """, [.integer(id)]
            ) { row in
                PartRecord(
                    uploadID: row.text(0), partNumber: row.int(1), size: row.int64(2), etag: row.text(3),
                    checksumCRC32C: row.optionalText(4), checksumSHA256: row.optionalText(5),
                    recordedAt: row.int64(6))
            }
            // A discarded resource's row is deleted, so a later resource may get its id again: its events are told
            // apart by their bundle (or, for the few without one, by coming after this resource was spooled).
            let events = try connection.query(
                """
                SELECT \(AuditRows.columns) FROM audit_events
                WHERE resource_id = ?1 AND (bundle_id = ?2 OR (bundle_id IS NULL AND at >= ?3)) ORDER BY at, id
                """, [.integer(id), .text(resource.bundleID), .integer(resource.spooledAt)], AuditRows.map)
            return ResourceDetail(
                resource: resource, bundle: bundle, destination: destination, parts: parts, events: events)
        }
    }

    /// The payload bytes of a resource, read back from the spool (inline or file). For checks and tools; the drainer
    /// streams files instead.
    ///
    /// - Throws: `SpoolError.resourceNotFound`, or `.corrupt` when the payload is missing.
    public func payloadBytes(of id: Int64) async throws -> [UInt8] {
        let root = layout.root
        let (storage, path, inline) = try await database.run { connection in
            guard
                let row = try connection.queryFirst(
                    """
                    SELECT r.payload_storage, r.payload_path, p.bytes
                    FROM resources r LEFT JOIN payloads p ON p.resource_id = r.id WHERE r.id = ?
                    """, [.integer(id)], { ($0.text(0), $0.optionalText(1), $0.isNull(2) ? nil : $0.blob(2)) })
            else {
                throw SpoolError(.resourceNotFound, "resource \(id) does not exist in this spool")
            }
            return row
        }
        switch storage {
        case PayloadStorage.inline.rawValue:
            guard let inline else {
                throw SpoolError(.corrupt, "resource \(id) is stored inline but its bytes are missing from the index")
            }
            return inline
        case PayloadStorage.file.rawValue:
            guard let path else { throw SpoolError(.corrupt, "resource \(id) has no payload path") }
            return try await BlockingIO.run { try readWholeFile(root + "/" + path) }
        default:
            throw SpoolError(.invalidState, "resource \(id) holds no payload (\(storage))")
        }
    }
}

/// Reading resource rows.
extension ResourceRows {
    static let columns = """
        id, bundle_id, seq, kind, destination_id, object_key, name, url, content_type, status_code, metadata, size,
        sha256, crc32c, payload_storage, payload_path, state, attempts, next_attempt_at, lease_owner, lease_expires_at,
        fencing_token, last_error_code, last_error_message, upload_id, upload_part_size, etag, version_id, spooled_at,
        updated_at, claimed_at, completed_at
        """

    static func map(_ row: SQLiteRow) -> ResourceRecord {
        ResourceRecord(
            id: row.int64(0), bundleID: row.text(1), seq: row.int(2),
            kind: ResourceKind(rawValue: row.text(3)) ?? .resource, destinationID: row.int64(4),
            objectKey: row.text(5), name: row.text(6), url: row.text(7), contentType: row.text(8),
            statusCode: row.int(9), metadata: MetadataJSON.decode(row.text(10)), size: row.int64(11),
            sha256: row.text(12), crc32c: UInt32(truncatingIfNeeded: row.int64(13)),
            payloadStorage: PayloadStorage(rawValue: row.text(14)) ?? .removed, payloadPath: row.optionalText(15),
            state: ResourceState(rawValue: row.text(16)) ?? .pending, attempts: row.int(17),
            nextAttemptAt: row.int64(18), leaseOwner: row.optionalText(19), leaseExpiresAt: row.optionalInt64(20),
            fencingToken: row.int64(21), lastErrorCode: row.optionalText(22), lastErrorMessage: row.optionalText(23),
            uploadID: row.optionalText(24), uploadPartSize: row.optionalInt64(25), etag: row.optionalText(26),
            versionID: row.optionalText(27), spooledAt: row.int64(28), updatedAt: row.int64(29),
            claimedAt: row.optionalInt64(30), completedAt: row.optionalInt64(31))
    }
}

/// Reading audit rows.
enum AuditRows {
    static let columns = "id, at, actor_user, actor_host, actor_pid, action, bundle_id, resource_id, detail"

    static func map(_ row: SQLiteRow) -> AuditEvent {
        AuditEvent(
            id: row.int64(0), at: row.int64(1), actorUser: row.text(2), actorHost: row.text(3), actorPID: row.int(4),
            action: row.text(5), bundleID: row.optionalText(6), resourceID: row.optionalInt64(7),
            detail: MetadataJSON.decode(row.text(8)))
    }
}
