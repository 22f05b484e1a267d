import Foundation

/// A spool directory opened for use: the SQLite index (WAL), the payload files and the rules that tie them together.
///
/// Writers (`writeResource`), operator tools (the inspection queries) and, later, drainers all go through one
/// `SpoolStore`. It is safe to share between tasks; several processes may open the same directory at once.
public final class SpoolStore: Sendable {
    /// The directory and its parts.
    public let layout: SpoolLayout
    /// The options the spool was opened with.
    public let options: SpoolOptions
    /// Who this process is, for the audit trail.
    public let identity: ActorIdentity
    /// How many files `open` removed from `tmp/` (left by crashed writers).
    public let crashLeftoversRemoved: Int

    let database: SpoolDatabase
    let committer: ResourceCommitter
    let capacity: SpoolCapacity
    let writeBuffers = WriteBufferPool(bufferBytes: SpoolStore.writeBufferBytes, keep: 16)

    var clock: any SpoolClock { options.clock }

    private init(layout: SpoolLayout, options: SpoolOptions, database: SpoolDatabase, removed: Int) throws {
        self.layout = layout
        self.options = options
        self.identity = .current
        self.database = database
        self.crashLeftoversRemoved = removed
        self.committer = ResourceCommitter(
            database: database, durability: options.durability, dataDirectory: layout.dataDirectory,
            clock: options.clock, identity: .current)
        self.capacity = SpoolCapacity(
            database: database, root: layout.root, maxSpoolBytes: options.maxSpoolBytes,
            minFreeDiskBytes: options.minFreeDiskBytes, wait: options.spoolFullWait)
    }

    /// Opens the spool at `directory`, creating it when missing, upgrading an older schema, and removing what crashed
    /// writers left in `tmp/`.
    ///
    /// Blocks while SQLite opens and migrates; call it at start-up.
    /// - Throws: `SpoolError` with `.spoolUnwritable` (the directory cannot be created or written), `.schemaTooNew`
    ///   (made by a newer build), `.corrupt` (not a spool index, or damaged), `.invalidConfiguration` (bad options).
    public static func open(_ directory: String, options: SpoolOptions = SpoolOptions()) throws -> SpoolStore {
        let options = try options.validated()
        if !options.createIfMissing {
            try SpoolLayout.checkExists(directory)
        }
        let layout = try SpoolLayout.prepare(directory)
        let timeout = Int32(clamping: options.busyTimeout.milliseconds)
        let database = try SpoolDatabase(path: layout.databasePath, busyTimeoutMilliseconds: timeout)
        try database.runBlocking { connection in
            let mode = try connection.enableWriteAheadLog()
            guard mode?.lowercased() == "wal" else {
                throw SpoolError(
                    .spoolUnwritable,
                    "the spool index '\(layout.databasePath)' could not use WAL mode (got '\(mode ?? "nothing")'); the "
                        + "spool must be on a local filesystem")
            }
            // FULL: every commit fsyncs the WAL, which is what "durable on return" rests on.
            try connection.executeScript(
                "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;")
            try SchemaMigrator.migrate(
                connection, spoolDirectory: layout.root, now: options.clock.nowMilliseconds())
        }
        let removed = try layout.removeCrashLeftovers()
        layout.ensureHeadroom()
        return try SpoolStore(layout: layout, options: options, database: database, removed: removed)
    }

    /// Deletes the spool's headroom file (`SpoolLayout.headroomBytes` set aside on its disk), so that the next
    /// commits find room on a full disk. For drainers: they free space by delivering, which takes commits.
    ///
    /// - Returns: whether there was a file to delete.
    public func releaseHeadroom() async -> Bool {
        let layout = self.layout
        return await BlockingIO.value { layout.releaseHeadroom() }
    }

    /// Makes the headroom file again once the disk has room for it and as much again (best effort).
    ///
    /// - Returns: whether the file is in place.
    @discardableResult
    public func ensureHeadroom() async -> Bool {
        let layout = self.layout
        return await BlockingIO.value { layout.ensureHeadroom() }
    }

    /// Opens the spool, runs `body` with it, and lets it go.
    public static func withSpool<T>(
        _ directory: String, options: SpoolOptions = SpoolOptions(), _ body: (SpoolStore) async throws -> T
    ) async throws -> T {
        let store = try open(directory, options: options)
        return try await body(store)
    }

    /// The schema version of the index.
    public func schemaVersion() async throws -> Int {
        try await database.run { try SchemaMigrator.appliedVersion($0) }
    }

    // MARK: Destinations

    /// Records a destination (or updates its options), returning its id.
    ///
    /// - Throws: `SpoolError.database` when the index cannot be written.
    public func registerDestination(_ spec: DestinationSpec) async throws -> Int64 {
        let now = clock.nowMilliseconds()
        let identity = self.identity
        return try await database.run { connection in
            try connection.transaction {
                let existing = try connection.queryFirst(
                    "SELECT id, region, options FROM destinations WHERE kind = ? AND location = ? AND endpoint = ?",
                    [.text(spec.kind.rawValue), .text(spec.location), .text(spec.endpoint)]
                ) { ($0.int64(0), $0.text(1), $0.text(2)) }
                if let (id, region, options) = existing {
                    if region != spec.region || options != spec.optionsJSON {
                        try connection.execute(
                            "UPDATE destinations SET region = ?, options = ?, updated_at = ? WHERE id = ?",
                            [.text(spec.region), .text(spec.optionsJSON), .integer(now), .integer(id)])
                        try Audit.append(
                            connection, at: now, identity: identity, action: "destination.updated",
                            detail: ["destination": spec.displayName])
                    }
                    return id
                }
                try connection.execute(
                    """
                    INSERT INTO destinations (kind, location, endpoint, region, options, created_at, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                    [
                        .text(spec.kind.rawValue), .text(spec.location), .text(spec.endpoint), .text(spec.region),
                        .text(spec.optionsJSON), .integer(now), .integer(now),
                    ])
                let id = connection.lastInsertRowID
                try Audit.append(
                    connection, at: now, identity: identity, action: "destination.added",
                    detail: ["destination": spec.displayName])
                return id
            }
        }
    }

    /// All recorded destinations.
    public func destinations() async throws -> [DestinationRecord] {
        try await database.run { connection in
            try connection.query("SELECT id FROM destinations ORDER BY id", [], { $0.int64(0) }).compactMap {
                try DestinationRows.fetch(connection, id: $0)
            }
        }
    }

    // MARK: Bundles

    /// Opens a bundle for writing: creates it, or continues it when it exists, is still open, and has the same
    /// destination and prefix (`spool-put` adds to a bundle one call at a time).
    ///
    /// - Parameters:
    ///   - id: The bundle id (validated).
    ///   - destinationID: From `registerDestination`.
    ///   - keyPrefix: A normalised prefix (`ObjectKey.normalizePrefix`).
    ///   - metadata: Bundle metadata (validated). When continuing a bundle it must be empty or equal to what the
    ///     bundle has.
    /// - Throws: `SpoolError` with `.invalidBundleID`, `.invalidMetadata`, `.bundleNotOpen` (sealed, delivered or
    ///   discarded), `.bundleConflict` (different destination, prefix or metadata).
    public func openBundle(
        _ id: String, destinationID: Int64, keyPrefix: String, metadata: [String: String]
    ) async throws -> BundleRecord {
        try Validation.checkBundleID(id)
        try Validation.checkMetadata(metadata, owner: "bundle")
        let now = clock.nowMilliseconds()
        let identity = self.identity
        let metadataJSON = MetadataJSON.encode(metadata)
        return try await database.run { connection in
            try connection.transaction {
                if let existing = try BundleRows.fetch(connection, id: id) {
                    guard existing.state == .open else {
                        throw SpoolError(
                            .bundleNotOpen,
                            "bundle '\(id)' is already \(existing.state.rawValue) with \(existing.resourceCount) "
                                + "resources and accepts no more; write to a new bundle id")
                    }
                    guard existing.destinationID == destinationID, existing.keyPrefix == keyPrefix else {
                        throw SpoolError(
                            .bundleConflict,
                            "bundle '\(id)' is already open in this spool for another destination or prefix "
                                + "('\(existing.keyPrefix)'); use a new bundle id")
                    }
                    guard metadata.isEmpty || existing.metadata == metadata else {
                        throw SpoolError(
                            .bundleConflict,
                            "bundle '\(id)' is already open with different metadata; pass the same metadata or none")
                    }
                    try connection.execute(
                        "UPDATE bundles SET writer_host = ?, writer_pid = ?, updated_at = ? WHERE id = ?",
                        [.text(identity.host), .int(identity.pid), .integer(now), .text(id)])
                    try Audit.append(
                        connection, at: now, identity: identity, action: "bundle.reopened", bundleID: id)
                    return try BundleRows.fetch(connection, id: id)!
                }
                try connection.execute(
                    """
                    INSERT INTO bundles (id, destination_id, key_prefix, state, metadata, writer_host, writer_pid,
                                         created_at, updated_at)
                    VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?)
                    """,
                    [
                        .text(id), .integer(destinationID), .text(keyPrefix), .text(metadataJSON),
                        .text(identity.host), .int(identity.pid), .integer(now), .integer(now),
                    ])
                try Audit.append(
                    connection, at: now, identity: identity, action: "bundle.opened", bundleID: id,
                    detail: ["state": BundleState.open.rawValue])
                return try BundleRows.fetch(connection, id: id)!
            }
        }
    }

    /// Seals a bundle: no more resources; its `_bundle.json` is queued for delivery after its last resource.
    /// Sealing a sealed bundle does nothing.
    ///
    /// - Throws: `SpoolError` with `.bundleNotFound`, or `.bundleNotOpen` for a discarded bundle.
    @discardableResult
    public func sealBundle(_ id: String) async throws -> BundleRecord {
        let now = clock.nowMilliseconds()
        let identity = self.identity
        return try await database.run { connection in
            try connection.transaction {
                guard let bundle = try BundleRows.fetch(connection, id: id) else {
                    throw SpoolError(.bundleNotFound, "bundle '\(id)' does not exist in this spool")
                }
                switch bundle.state {
                case .sealed, .delivered: return bundle
                case .discarded:
                    throw SpoolError(.bundleNotOpen, "bundle '\(id)' was discarded and cannot be sealed")
                case .open: break
                }
                try Self.seal(connection, bundle: bundle, now: now, identity: identity)
                return try BundleRows.fetch(connection, id: id)!
            }
        }
    }

    /// Seals an open bundle inside the caller's transaction: state `sealed`, resource count fixed, its `_bundle.json`
    /// row queued, audit event `bundle.sealed`.
    static func seal(_ connection: SQLiteConnection, bundle: BundleRecord, now: Int64, identity: ActorIdentity) throws {
        let id = bundle.id
        try connection.execute(
            """
            UPDATE bundles SET state = 'sealed', resource_count = last_seq, sealed_at = ?, updated_at = ?,
                               writer_pid = NULL
            WHERE id = ?
            """, [.integer(now), .integer(now), .text(id)])
        let destination = bundle.destinationID
        try connection.execute(
            """
            INSERT INTO resources (bundle_id, seq, kind, destination_id, object_key, name, url, content_type,
                                   status_code, metadata, size, sha256, crc32c, payload_storage, state,
                                   next_attempt_at, spooled_at, updated_at)
            VALUES (?, 0, 'manifest', ?, ?, ?, '', 'application/json', 200, '{}', 0, '', 0, 'pending',
                    'pending', ?, ?, ?)
            """,
            [
                .text(id), .integer(destination),
                .text(ObjectKey.manifest(prefix: bundle.keyPrefix, bundleID: id)),
                .text(ObjectKey.manifestName), .integer(now), .integer(now), .integer(now),
            ])
        try Audit.append(
            connection, at: now, identity: identity, action: "bundle.sealed", bundleID: id,
            detail: ["from": "open", "to": "sealed", "resources": String(bundle.resourceCount)])
    }

    /// The bundle with this id, if any.
    public func bundle(_ id: String) async throws -> BundleRecord? {
        try await database.run { try BundleRows.fetch($0, id: id) }
    }
}

/// Reading bundle rows.
enum BundleRows {
    static let columns = """
        id, destination_id, key_prefix, state, metadata, last_seq, writer_host, writer_pid, created_at, updated_at,
        sealed_at, delivered_at
        """

    static func fetch(_ connection: SQLiteConnection, id: String) throws -> BundleRecord? {
        try connection.queryFirst("SELECT \(columns) FROM bundles WHERE id = ?", [.text(id)], map)
    }

    static func map(_ row: SQLiteRow) -> BundleRecord {
        BundleRecord(
            id: row.text(0), destinationID: row.int64(1), keyPrefix: row.text(2),
            state: BundleState(rawValue: row.text(3)) ?? .open, metadata: MetadataJSON.decode(row.text(4)),
            resourceCount: row.int(5), writerHost: row.optionalText(6), writerPID: row.optionalInt(7),
            createdAt: row.int64(8), updatedAt: row.int64(9), sealedAt: row.optionalInt64(10),
            deliveredAt: row.optionalInt64(11))
    }
}

/// Appending to the audit trail, inside the caller's transaction.
enum Audit {
    static func append(
        _ connection: SQLiteConnection, at time: Int64, identity: ActorIdentity, action: String,
        bundleID: String? = nil, resourceID: Int64? = nil, detail: [String: String] = [:]
    ) throws {
        try connection.execute(
            """
            INSERT INTO audit_events (at, actor_user, actor_host, actor_pid, action, bundle_id, resource_id, detail)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .integer(time), .text(identity.user), .text(identity.host), .int(identity.pid), .text(action),
                .optionalText(bundleID), .optionalInt64(resourceID), .text(MetadataJSON.encode(detail)),
            ])
    }
}
