import Hashing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// The operator's repairs (`spool-inspect stuck`, `retry`, `abort`, `seal`, `discard`, `purge`, `verify`, `find`,
// `audit`): every change is made in one transaction together with its `operator.*` audit event, and refuses to touch
// what a live drainer or writer holds unless the operator forces it.

extension SpoolError.Code {
    /// A live process holds the subject: a drainer's unexpired lease, or the writer of an open bundle. Retry later, or
    /// force the operation.
    public static let inUse: SpoolError.Code = "in-use"
}

// MARK: - Stuck

/// What needs an operator's attention (`spool-inspect stuck`): one list per kind, oldest first, each capped at `limit`
/// (`totals` has the full counts).
public struct StuckReport: Sendable, Codable {
    /// A destination the drainer paused, and how much waits for it.
    public struct PausedDestination: Sendable, Codable, Hashable {
        /// The destination's id.
        public var destinationID: Int64
        /// Its display name (`s3://bucket`, `file:///dir`).
        public var destination: String
        /// Since when (Unix ms).
        public var pausedAt: Int64
        /// The error code that paused it.
        public var errorCode: String
        /// The error message.
        public var message: String
        /// When the drainer probes it next (Unix ms).
        public var nextCheckAt: Int64?
        /// Resources pending or uploading for it.
        public var waiting: Int
    }

    /// An open bundle: who holds it open, since when, and what it holds.
    public struct OpenBundle: Sendable, Codable, Hashable {
        /// The bundle id.
        public var id: String
        /// Its destination's id.
        public var destinationID: Int64
        /// Host of the process that last opened it.
        public var writerHost: String?
        /// Pid of the process that last opened it.
        public var writerPID: Int?
        /// Created (Unix ms).
        public var createdAt: Int64
        /// Last change, e.g. the last resource written (Unix ms).
        public var updatedAt: Int64
        /// Resources written so far.
        public var resources: Int
        /// Their bytes.
        public var bytes: Int64
    }

    /// How many of each kind there are (the lists stop at `limit`).
    public struct Totals: Sendable, Codable, Hashable {
        /// Failed resources (and `_bundle.json` rows).
        public var failed: Int
        /// Paused destinations.
        public var pausedDestinations: Int
        /// Uploading rows whose lease expired or whose drainer (on this host) is gone.
        public var expiredLeases: Int
        /// Open bundles on this host whose writer process is gone.
        public var abandonedBundles: Int
        /// Open bundles whose writer runs on another host.
        public var openBundlesElsewhere: Int
        /// Pending or uploading resources with more attempts than `retriedMoreThan`.
        public var retried: Int
    }

    /// When the report was taken (Unix ms).
    public var generatedAt: Int64
    /// This host: open bundles of other hosts cannot be judged from here.
    public var host: String
    /// The attempts threshold of `retried`.
    public var retriedMoreThan: Int
    /// The cap on each list.
    public var limit: Int
    /// Failed resources and `_bundle.json` rows, oldest change first.
    public var failed: [ResourceRecord]
    /// Paused destinations.
    public var pausedDestinations: [PausedDestination]
    /// Uploading rows whose lease expired (or whose drainer on this host is gone): the next claim takes them over.
    public var expiredLeases: [ResourceRecord]
    /// Open bundles on this host whose writer process is gone: seal or discard them.
    public var abandonedBundles: [OpenBundle]
    /// Open bundles whose writer is on another host, with their age: judge them by it.
    public var openBundlesElsewhere: [OpenBundle]
    /// Pending or uploading resources with more than `retriedMoreThan` attempts, most attempts first.
    public var retried: [ResourceRecord]
    /// Full counts.
    public var totals: Totals
}

// MARK: - Results of the operator actions

/// What `requeue` did.
public struct RequeueResult: Sendable, Codable, Hashable {
    /// Resources put back to `pending`.
    public var requeued: [Int64]
    /// Resources left as they were (already pending, with `force`).
    public var unchanged: [Int64]
}

/// A multipart upload an operator is about to abort, checked against the spool.
public struct AbortPlan: Sendable {
    /// The resource.
    public var resource: ResourceRecord
    /// Its destination (to build the object store from).
    public var destination: DestinationRecord
    /// The upload id to abort.
    public var uploadID: String
    /// Whether a drainer held a live lease on it (only with `force`).
    public var leaseWasLive: Bool
}

/// What `completeAbort` did.
public struct AbortResult: Sendable, Codable, Hashable {
    /// The resource.
    public var resourceID: Int64
    /// The upload forgotten.
    public var uploadID: String
    /// `aborted`, or `gone` when the destination no longer had it.
    public var outcome: String
    /// The state before.
    public var previousState: ResourceState
    /// The state now: `pending` (requeued) or `failed` (`aborted-by-operator`).
    public var state: ResourceState
    /// Whether a live lease was overridden.
    public var forced: Bool
}

/// What discarding a bundle removes.
public struct DiscardPlan: Sendable, Codable, Hashable {
    /// The bundle id.
    public var bundleID: String
    /// The bundle's state.
    public var state: BundleState
    /// Resources not delivered (pending, uploading or failed), to be removed with their payloads.
    public var undeliveredResources: Int
    /// Their bytes.
    public var undeliveredBytes: Int64
    /// Delivered resources, kept.
    public var deliveredResources: Int
    /// Resources uploading under a live lease (a discard waits for them).
    public var liveLeases: Int
    /// Whether the writer of the open bundle is alive on this host (`false` when unknown: another host).
    public var writerAlive: Bool
    /// Whether the writer runs on another host (its liveness cannot be checked from here).
    public var writerElsewhere: Bool
}

/// What discarding a bundle did.
public struct DiscardResult: Sendable, Codable, Hashable {
    /// The bundle id.
    public var bundleID: String
    /// The state before.
    public var previousState: BundleState
    /// Resource rows removed (with their payloads).
    public var removedResources: Int
    /// Their bytes.
    public var removedBytes: Int64
    /// Delivered resource rows kept.
    public var keptDelivered: Int
    /// False when the bundle was already discarded.
    public var changed: Bool
}

/// Delivered payloads that a purge removes (or removed).
public struct PurgeResult: Sendable, Codable, Hashable {
    /// Resources completed before this time (Unix ms) were eligible.
    public var completedBefore: Int64
    /// Payloads removed (or that would be, for a preview).
    public var payloads: Int
    /// Their bytes.
    public var bytes: Int64
    /// True for a preview that changed nothing.
    public var dryRun: Bool
}

/// One thing `verify` found wrong.
public struct VerifyProblem: Sendable, Codable, Hashable {
    /// `index-integrity`, `foreign-key`, `payload-missing`, `corrupt-payload`, `orphan-file`, `orphan-inline`,
    /// `orphan-upload`, `spool-full` (the check could not be recorded).
    public var kind: String
    /// The resource concerned.
    public var resourceID: Int64?
    /// Its bundle.
    public var bundleID: String?
    /// The file concerned (relative to the spool directory), or the multipart upload's object key.
    public var path: String?
    /// What is wrong, for people.
    public var detail: String
    /// What `--fix` did (or would do), empty when it cannot fix it.
    public var fix: String
    /// Whether it was fixed.
    public var fixed: Bool
}

/// The outcome of `verify`.
public struct VerifyReport: Sendable, Codable, Hashable {
    /// `PRAGMA integrity_check`'s answer (`["ok"]` when sound).
    public var integrity: [String]
    /// Payloads checked (files and inline).
    public var resourcesChecked: Int
    /// Bytes read and hashed.
    public var bytesChecked: Int64
    /// Files found in `data/`.
    public var filesInData: Int
    /// Everything found wrong.
    public var problems: [VerifyProblem]
    /// Whether `--fix` was asked.
    public var fixRequested: Bool

    /// No problem found.
    public var clean: Bool { problems.isEmpty }
    /// Problems fixed.
    public var fixedCount: Int { problems.filter(\.fixed).count }

    enum CodingKeys: String, CodingKey {
        case integrity, resourcesChecked, bytesChecked, filesInData, problems, fixRequested, clean, fixedCount
    }

    /// Encodes the stored fields and `clean`, `fixed_count`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(integrity, forKey: .integrity)
        try container.encode(resourcesChecked, forKey: .resourcesChecked)
        try container.encode(bytesChecked, forKey: .bytesChecked)
        try container.encode(filesInData, forKey: .filesInData)
        try container.encode(problems, forKey: .problems)
        try container.encode(fixRequested, forKey: .fixRequested)
        try container.encode(clean, forKey: .clean)
        try container.encode(fixedCount, forKey: .fixedCount)
    }

    /// Decodes the stored fields.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        integrity = try container.decode([String].self, forKey: .integrity)
        resourcesChecked = try container.decode(Int.self, forKey: .resourcesChecked)
        bytesChecked = try container.decode(Int64.self, forKey: .bytesChecked)
        filesInData = try container.decode(Int.self, forKey: .filesInData)
        problems = try container.decode([VerifyProblem].self, forKey: .problems)
        fixRequested = try container.decode(Bool.self, forKey: .fixRequested)
    }

    init(
        integrity: [String], resourcesChecked: Int, bytesChecked: Int64, filesInData: Int, problems: [VerifyProblem],
        fixRequested: Bool
    ) {
        self.integrity = integrity
        self.resourcesChecked = resourcesChecked
        self.bytesChecked = bytesChecked
        self.filesInData = filesInData
        self.problems = problems
        self.fixRequested = fixRequested
    }
}

/// What `findResources` matches: every given criterion must hold.
public struct FindQuery: Sendable {
    /// A URL pattern: `*` matches any run of characters, everything else itself (ASCII case-insensitively).
    public var urlPattern: String?
    /// A metadata key and the value it must have.
    public var metadata: (key: String, value: String)?
    /// A SHA-256 (hex).
    public var sha256: String?
    /// At most this many, lowest id first.
    public var limit: Int

    /// A query; give at least one criterion.
    public init(
        urlPattern: String? = nil, metadata: (key: String, value: String)? = nil, sha256: String? = nil,
        limit: Int = 100
    ) {
        self.urlPattern = urlPattern
        self.metadata = metadata
        self.sha256 = sha256
        self.limit = limit
    }

    /// The SQL LIKE pattern (escape `\`) for a `*` glob: LIKE's own wildcards are taken literally.
    public static func likePattern(glob: String) -> String {
        var pattern = ""
        for character in glob {
            switch character {
            case "\\", "%", "_": pattern += "\\" + String(character)
            case "*": pattern += "%"
            default: pattern.append(character)
            }
        }
        return pattern
    }
}

/// Which audit events to read.
public struct AuditQuery: Sendable {
    /// At or after this time (Unix ms).
    public var since: Int64?
    /// Before this time (Unix ms).
    public var until: Int64?
    /// Only events about this resource.
    public var resourceID: Int64?
    /// Only events about this bundle.
    public var bundleID: String?
    /// Only this action; `*` matches any run of characters (`operator.*`).
    public var action: String?

    /// A query; everything by default.
    public init(
        since: Int64? = nil, until: Int64? = nil, resourceID: Int64? = nil, bundleID: String? = nil,
        action: String? = nil
    ) {
        self.since = since
        self.until = until
        self.resourceID = resourceID
        self.bundleID = bundleID
        self.action = action
    }

    var actionPattern: String? { action.map { FindQuery.likePattern(glob: $0) } }

    var bindings: [SQLiteValue] {
        [
            .optionalInt64(since), .optionalInt64(until), .optionalInt64(resourceID), .optionalText(bundleID),
            .optionalText(actionPattern),
        ]
    }

    static let condition = """
        (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR at < ?2) AND (?3 IS NULL OR resource_id = ?3)
        AND (?4 IS NULL OR bundle_id = ?4) AND (?5 IS NULL OR action LIKE ?5 ESCAPE '\\')
        """
}

// MARK: - The operations

extension SpoolStore {
    /// Whether a claim still holds: uploading, unexpired, and not owned by a dead drainer on this host.
    static func leaseIsLive(_ resource: ResourceRecord, now: Int64, host: String) -> Bool {
        guard resource.state == .uploading, let expires = resource.leaseExpiresAt, expires >= now else { return false }
        if let owner = resource.leaseOwner {
            let parts = owner.split(separator: "/")
            if parts.count == 3, parts[0] == host, let pid = Int(parts[1]), !processIsAlive(pid) { return false }
        }
        return true
    }

    /// Whether the writer of an open bundle is a live process on this host.
    static func writerIsAlive(_ bundle: BundleRecord, host: String) -> Bool {
        guard bundle.state == .open, bundle.writerHost == host, let pid = bundle.writerPID else { return false }
        return processIsAlive(pid)
    }

    // MARK: Stuck

    /// Failed resources, paused destinations, expired leases, open bundles whose writer is gone (and open bundles of
    /// other hosts), and resources retried more than `retriedMoreThan` times.
    ///
    /// - Parameters:
    ///   - retriedMoreThan: The attempts threshold.
    ///   - limit: The cap on each list.
    public func stuck(retriedMoreThan: Int, limit: Int) async throws -> StuckReport {
        let now = clock.nowMilliseconds()
        let host = identity.host
        let limit = max(0, limit)
        return try await database.run { connection in
            let failedCount =
                try connection.queryFirst("SELECT COUNT(*) FROM resources WHERE state = 'failed'") { $0.int(0) } ?? 0
            let failed = try connection.query(
                "SELECT \(ResourceRows.columns) FROM resources WHERE state = 'failed' ORDER BY updated_at, id LIMIT ?",
                [.int(limit)], ResourceRows.map)
            let paused = try connection.query(
                """
                SELECT d.id, d.kind, d.location, d.endpoint, d.paused_at, COALESCE(d.paused_error_code, ''),
                       COALESCE(d.paused_error_message, ''), d.paused_next_check_at,
                       (SELECT COUNT(*) FROM resources r
                        WHERE r.destination_id = d.id AND r.state IN ('pending', 'uploading'))
                FROM destinations d WHERE d.paused_at IS NOT NULL ORDER BY d.paused_at, d.id
                """
            ) { row in
                let spec = DestinationSpec(
                    kind: DestinationSpec.Kind(rawValue: row.text(1)) ?? .s3, location: row.text(2),
                    endpoint: row.text(3), region: "", optionsJSON: "{}")
                return StuckReport.PausedDestination(
                    destinationID: row.int64(0), destination: spec.displayName, pausedAt: row.int64(4),
                    errorCode: row.text(5), message: row.text(6), nextCheckAt: row.optionalInt64(7),
                    waiting: row.int(8))
            }
            let uploading = try connection.query(
                "SELECT \(ResourceRows.columns) FROM resources WHERE state = 'uploading' ORDER BY lease_expires_at, id",
                [], ResourceRows.map)
            let expired = uploading.filter { !Self.leaseIsLive($0, now: now, host: host) }
            let openBundles = try connection.query(
                """
                SELECT b.id, b.destination_id, b.writer_host, b.writer_pid, b.created_at, b.updated_at, b.last_seq,
                       (SELECT COALESCE(SUM(r.size), 0) FROM resources r
                        WHERE r.bundle_id = b.id AND r.kind = 'resource')
                FROM bundles b WHERE b.state = 'open' ORDER BY b.created_at, b.id
                """
            ) { row in
                StuckReport.OpenBundle(
                    id: row.text(0), destinationID: row.int64(1), writerHost: row.optionalText(2),
                    writerPID: row.optionalInt(3), createdAt: row.int64(4), updatedAt: row.int64(5),
                    resources: row.int(6), bytes: row.int64(7))
            }
            var abandoned: [StuckReport.OpenBundle] = []
            var elsewhere: [StuckReport.OpenBundle] = []
            for bundle in openBundles {
                if let writerHost = bundle.writerHost, writerHost != host {
                    elsewhere.append(bundle)
                } else if let pid = bundle.writerPID, processIsAlive(pid) {
                    continue  // a live writer on this host: not stuck
                } else {
                    abandoned.append(bundle)
                }
            }
            let retriedCount =
                try connection.queryFirst(
                    "SELECT COUNT(*) FROM resources WHERE state IN ('pending', 'uploading') AND attempts > ?",
                    [.int(retriedMoreThan)]
                ) { $0.int(0) } ?? 0
            let retried = try connection.query(
                """
                SELECT \(ResourceRows.columns) FROM resources WHERE state IN ('pending', 'uploading') AND attempts > ?
                ORDER BY attempts DESC, id LIMIT ?
                """, [.int(retriedMoreThan), .int(limit)], ResourceRows.map)
            return StuckReport(
                generatedAt: now, host: host, retriedMoreThan: retriedMoreThan, limit: limit, failed: failed,
                pausedDestinations: Array(paused.prefix(limit)), expiredLeases: Array(expired.prefix(limit)),
                abandonedBundles: Array(abandoned.prefix(limit)), openBundlesElsewhere: Array(elsewhere.prefix(limit)),
                retried: retried,
                totals: StuckReport.Totals(
                    failed: failedCount, pausedDestinations: paused.count, expiredLeases: expired.count,
                    abandonedBundles: abandoned.count, openBundlesElsewhere: elsewhere.count, retried: retriedCount))
        }
    }

    // MARK: Retry

    /// Requeues failed resources: `pending`, due now, attempts back to 0, the error cleared from the row and kept in
    /// the `operator.retry` audit event. All or nothing: one resource that cannot be requeued leaves every one as it
    /// was.
    ///
    /// - Parameters:
    ///   - ids: The resources.
    ///   - allowPending: Accept resources that are already `pending` (left unchanged).
    /// - Throws: `SpoolError` with `.resourceNotFound`, or `.invalidState` naming a resource that is not failed.
    public func requeue(_ ids: [Int64], allowPending: Bool) async throws -> RequeueResult {
        let now = clock.nowMilliseconds()
        let identity = self.identity
        return try await database.run { connection in
            try connection.transaction {
                var result = RequeueResult(requeued: [], unchanged: [])
                var seen: Set<Int64> = []
                for id in ids where seen.insert(id).inserted {
                    guard let resource = try ResourceRows.fetch(connection, id: id) else {
                        throw SpoolError(
                            .resourceNotFound,
                            "resource \(id) does not exist in this spool; 'spool-inspect stuck' lists failed ones")
                    }
                    switch resource.state {
                    case .failed:
                        try Self.requeueFailed(connection, resource, now: now, identity: identity)
                        result.requeued.append(id)
                    case .pending where allowPending:
                        result.unchanged.append(id)
                    default:
                        let hint =
                            resource.state == .pending
                            ? "it is already waiting for delivery (--force accepts pending resources and leaves them)"
                            : "only failed resources are requeued"
                        throw SpoolError(
                            .invalidState,
                            "resource \(id) is \(resource.state.rawValue), not failed: \(hint); nothing was requeued")
                    }
                }
                return result
            }
        }
    }

    /// Requeues every failed resource (and `_bundle.json` row), as `requeue` does.
    public func requeueAllFailed() async throws -> RequeueResult {
        let now = clock.nowMilliseconds()
        let identity = self.identity
        return try await database.run { connection in
            try connection.transaction {
                let failed = try connection.query(
                    "SELECT \(ResourceRows.columns) FROM resources WHERE state = 'failed' ORDER BY id", [],
                    ResourceRows.map)
                for resource in failed {
                    try Self.requeueFailed(connection, resource, now: now, identity: identity)
                }
                return RequeueResult(requeued: failed.map(\.id), unchanged: [])
            }
        }
    }

    private static func requeueFailed(
        _ connection: SQLiteConnection, _ resource: ResourceRecord, now: Int64, identity: ActorIdentity
    ) throws {
        try connection.execute(
            """
            UPDATE resources SET state = 'pending', next_attempt_at = ?, attempts = 0, last_error_code = NULL,
                   last_error_message = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?
            WHERE id = ?
            """, [.integer(now), .integer(now), .integer(resource.id)])
        var detail = ["from": "failed", "to": "pending", "previous_attempts": String(resource.attempts)]
        if let code = resource.lastErrorCode { detail["previous_error"] = code }
        if let message = resource.lastErrorMessage { detail["previous_message"] = message }
        try Audit.append(
            connection, at: now, identity: identity, action: "operator.retry", bundleID: resource.bundleID,
            resourceID: resource.id, detail: detail)
    }

    // MARK: Abort

    /// Checks that a resource has a multipart upload to abort, and that no live drainer holds it (unless `force`).
    ///
    /// - Throws: `SpoolError` with `.resourceNotFound`; `.invalidState` when it has no upload in progress or is
    ///   already delivered; `.inUse` when a live lease holds it and `force` is false.
    public func prepareAbort(_ id: Int64, force: Bool) async throws -> AbortPlan {
        let now = clock.nowMilliseconds()
        let host = identity.host
        return try await database.run { connection in
            guard let resource = try ResourceRows.fetch(connection, id: id) else {
                throw SpoolError(.resourceNotFound, "resource \(id) does not exist in this spool")
            }
            guard resource.state != .done else {
                throw SpoolError(
                    .invalidState, "resource \(id) is already delivered; its multipart upload was completed")
            }
            guard let uploadID = resource.uploadID else {
                throw SpoolError(
                    .invalidState,
                    "resource \(id) has no multipart upload in progress; nothing to abort ('spool-inspect show \(id)' "
                        + "shows its state)")
            }
            let live = Self.leaseIsLive(resource, now: now, host: host)
            if live && !force {
                throw SpoolError(
                    .inUse,
                    "resource \(id) is being uploaded by \(resource.leaseOwner ?? "a drainer") (its lease runs "
                        + "\(max(0, (resource.leaseExpiresAt ?? now) - now) / 1000 + 1) s more, renewed while it "
                        + "works); stop that drainer or wait for its lease to expire, or pass --force")
            }
            return AbortPlan(
                resource: resource, destination: try DestinationRows.fetch(connection, id: resource.destinationID)!,
                uploadID: uploadID, leaseWasLive: live)
        }
    }

    /// Forgets an upload the operator aborted at the destination, and requeues the resource (or fails it with
    /// `aborted-by-operator`). A drainer still holding the resource loses its claim (new fencing token). Attempts are
    /// kept, except that a failed resource requeued starts again from 0 (as `requeue` does).
    ///
    /// - Parameters:
    ///   - plan: From `prepareAbort`.
    ///   - outcome: `aborted`, or `gone` when the destination no longer had the upload.
    ///   - fail: Mark the resource failed instead of requeuing it.
    ///   - force: Override a live lease (as `prepareAbort` was).
    /// - Throws: `SpoolError.invalidState` when the resource's upload changed meanwhile; `.inUse` when a drainer took
    ///   it meanwhile and `force` is false.
    public func completeAbort(_ plan: AbortPlan, outcome: String, fail: Bool, force: Bool) async throws
        -> AbortResult
    {
        let now = clock.nowMilliseconds()
        let identity = self.identity
        let id = plan.resource.id
        return try await database.run { connection in
            try connection.transaction {
                guard let resource = try ResourceRows.fetch(connection, id: id), resource.uploadID == plan.uploadID,
                    resource.state != .done
                else {
                    throw SpoolError(
                        .invalidState,
                        "resource \(id) changed while its upload \(plan.uploadID) was being aborted (a drainer "
                            + "delivered it or started another upload); see 'spool-inspect show \(id)'")
                }
                let live = Self.leaseIsLive(resource, now: now, host: identity.host)
                if live && !force {
                    throw SpoolError(
                        .inUse,
                        "resource \(id) was claimed by \(resource.leaseOwner ?? "a drainer") meanwhile; pass "
                            + "--force to take it back")
                }
                try Self.finishUpload(connection, uploadID: plan.uploadID, outcome: outcome, now: now)
                try connection.execute("DELETE FROM resource_parts WHERE resource_id = ?", [.integer(id)])
                // A new fencing token: a drainer still uploading loses its lease at its next renewal or record.
                let token =
                    try connection.queryFirst(
                        "UPDATE counters SET value = value + 1 WHERE name = 'fencing_token' RETURNING value", [],
                        { $0.int64(0) }) ?? resource.fencingToken
                let newState: ResourceState = fail ? .failed : .pending
                try connection.execute(
                    """
                    UPDATE resources SET upload_id = NULL, upload_part_size = NULL, upload_started_at = NULL,
                           state = ?, next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL,
                           fencing_token = ?, attempts = ?, last_error_code = ?, last_error_message = ?,
                           updated_at = ?
                    WHERE id = ?
                    """,
                    [
                        .text(newState.rawValue), .integer(now), .integer(token),
                        // Requeuing a failed resource is a retry: it gets its attempts back, as `requeue` gives them.
                        .int(resource.state == .failed && !fail ? 0 : resource.attempts),
                        fail ? .text("aborted-by-operator") : .optionalText(resource.lastErrorCode),
                        fail
                            ? .text(
                                "multipart upload \(plan.uploadID) aborted by \(identity.user)@\(identity.host) with "
                                    + "spool-inspect abort --fail")
                            : .optionalText(resource.lastErrorMessage),
                        .integer(now), .integer(id),
                    ])
                var detail = [
                    "upload_id": plan.uploadID, "outcome": outcome, "from": resource.state.rawValue,
                    "to": newState.rawValue,
                ]
                if live { detail["forced"] = "true" }
                if let owner = resource.leaseOwner, resource.state == .uploading { detail["lease_owner"] = owner }
                if fail { detail["error"] = "aborted-by-operator" }
                try Audit.append(
                    connection, at: now, identity: identity, action: "operator.abort", bundleID: resource.bundleID,
                    resourceID: id, detail: detail)
                return AbortResult(
                    resourceID: id, uploadID: plan.uploadID, outcome: outcome, previousState: resource.state,
                    state: newState, forced: live)
            }
        }
    }

    // MARK: Seal

    /// Seals an open bundle for an operator (its writer crashed): as `sealBundle`, plus an `operator.seal` event.
    ///
    /// - Parameter force: Seal even when the writer is alive on this host, or runs on another host.
    /// - Returns: the bundle, and whether it changed (false when it was already sealed or delivered).
    /// - Throws: `SpoolError` with `.bundleNotFound`; `.bundleNotOpen` for a discarded bundle; `.inUse` when its
    ///   writer is alive (or on another host) and `force` is false.
    public func sealAsOperator(_ id: String, force: Bool) async throws -> (bundle: BundleRecord, changed: Bool) {
        let now = clock.nowMilliseconds()
        let identity = self.identity
        return try await database.run { connection in
            try connection.transaction {
                guard let bundle = try BundleRows.fetch(connection, id: id) else {
                    throw SpoolError(
                        .bundleNotFound,
                        "bundle '\(id)' does not exist in this spool; 'spool-inspect stuck' lists open ones")
                }
                switch bundle.state {
                case .sealed, .delivered: return (bundle, false)
                case .discarded:
                    throw SpoolError(.bundleNotOpen, "bundle '\(id)' was discarded and cannot be sealed")
                case .open: break
                }
                if !force { try Self.checkWriterGone(bundle, host: identity.host, doing: "seal") }
                try Self.seal(connection, bundle: bundle, now: now, identity: identity)
                var detail = ["from": "open", "to": "sealed", "resources": String(bundle.resourceCount)]
                if let host = bundle.writerHost { detail["writer_host"] = host }
                if let pid = bundle.writerPID { detail["writer_pid"] = String(pid) }
                if force { detail["forced"] = "true" }
                try Audit.append(
                    connection, at: now, identity: identity, action: "operator.seal", bundleID: id, detail: detail)
                return (try BundleRows.fetch(connection, id: id)!, true)
            }
        }
    }

    private static func checkWriterGone(_ bundle: BundleRecord, host: String, doing verb: String) throws {
        guard bundle.state == .open else { return }
        if writerIsAlive(bundle, host: host) {
            throw SpoolError(
                .inUse,
                "bundle '\(bundle.id)' is held open by a running writer (pid \(bundle.writerPID ?? 0) on this host); "
                    + "let it finish, or pass --force to \(verb) it under it (its next write will fail)")
        }
        if let writerHost = bundle.writerHost, writerHost != host {
            throw SpoolError(
                .inUse,
                "bundle '\(bundle.id)' was opened by a writer on host '\(writerHost)', which cannot be checked from "
                    + "here; pass --force to \(verb) it")
        }
    }

    // MARK: Discard

    /// What discarding a bundle would remove.
    ///
    /// - Throws: `SpoolError.bundleNotFound`.
    public func discardPlan(_ id: String) async throws -> DiscardPlan {
        let now = clock.nowMilliseconds()
        let host = identity.host
        return try await database.run { connection in
            guard let bundle = try BundleRows.fetch(connection, id: id) else {
                throw SpoolError(.bundleNotFound, "bundle '\(id)' does not exist in this spool")
            }
            return try Self.discardPlan(connection, bundle: bundle, now: now, host: host)
        }
    }

    private static func discardPlan(_ connection: SQLiteConnection, bundle: BundleRecord, now: Int64, host: String)
        throws -> DiscardPlan
    {
        let resources = try connection.query(
            "SELECT \(ResourceRows.columns) FROM resources WHERE bundle_id = ? AND kind = 'resource'",
            [.text(bundle.id)], ResourceRows.map)
        let undelivered = resources.filter { $0.state != .done }
        return DiscardPlan(
            bundleID: bundle.id, state: bundle.state, undeliveredResources: undelivered.count,
            undeliveredBytes: undelivered.reduce(0) { $0 + $1.size },
            deliveredResources: resources.count - undelivered.count,
            liveLeases: resources.filter { leaseIsLive($0, now: now, host: host) }.count,
            writerAlive: writerIsAlive(bundle, host: host),
            writerElsewhere: bundle.state == .open && bundle.writerHost != nil && bundle.writerHost != host)
    }

    /// Discards a bundle: state `discarded`; its undelivered resources (pending, failed, or uploading under an
    /// expired lease) are deleted with their payloads, one `resource.discarded` event each; its `_bundle.json` row is
    /// deleted; delivered resources are kept. Audit event `operator.discard`.
    ///
    /// Multipart uploads of removed resources are left to the drainer's orphan sweep, which aborts them.
    /// - Parameter force: Discard an open bundle even when its writer is alive (or on another host).
    /// - Throws: `SpoolError` with `.bundleNotFound`; `.invalidState` for a delivered bundle; `.inUse` when a resource
    ///   is uploading under a live lease (always), or the writer is alive and `force` is false.
    public func discardBundle(_ id: String, force: Bool) async throws -> DiscardResult {
        let now = clock.nowMilliseconds()
        let identity = self.identity
        let root = layout.root
        let (result, files) = try await database.run { connection -> (DiscardResult, [String]) in
            try connection.transaction {
                guard let bundle = try BundleRows.fetch(connection, id: id) else {
                    throw SpoolError(.bundleNotFound, "bundle '\(id)' does not exist in this spool")
                }
                switch bundle.state {
                case .discarded:
                    return (
                        DiscardResult(
                            bundleID: id, previousState: .discarded, removedResources: 0, removedBytes: 0,
                            keptDelivered: 0, changed: false), []
                    )
                case .delivered:
                    throw SpoolError(
                        .invalidState,
                        "bundle '\(id)' is delivered: every resource and its _bundle.json are in "
                            + "place; nothing to discard")
                case .open, .sealed: break
                }
                let plan = try Self.discardPlan(connection, bundle: bundle, now: now, host: identity.host)
                guard plan.liveLeases == 0 else {
                    throw SpoolError(
                        .inUse,
                        "bundle '\(id)' has \(plan.liveLeases) resource(s) being uploaded by a live drainer; stop the "
                            + "drainer or wait for the uploads to finish, then discard")
                }
                if !force { try Self.checkWriterGone(bundle, host: identity.host, doing: "discard") }
                let doomed = try connection.query(
                    """
                    SELECT \(ResourceRows.columns) FROM resources
                    WHERE bundle_id = ? AND (kind = 'manifest' OR state != 'done') ORDER BY id
                    """, [.text(id)], ResourceRows.map)
                var files: [String] = []
                var removed = 0
                var bytes: Int64 = 0
                for resource in doomed {
                    if resource.payloadStorage == .file, let path = resource.payloadPath { files.append(path) }
                    try connection.execute("DELETE FROM payloads WHERE resource_id = ?", [.integer(resource.id)])
                    try connection.execute("DELETE FROM resource_parts WHERE resource_id = ?", [.integer(resource.id)])
                    try connection.execute("DELETE FROM resources WHERE id = ?", [.integer(resource.id)])
                    guard resource.kind == .resource else { continue }
                    removed += 1
                    bytes += resource.size
                    try Audit.append(
                        connection, at: now, identity: identity, action: "resource.discarded", bundleID: id,
                        resourceID: resource.id,
                        detail: [
                            "from": resource.state.rawValue, "seq": String(resource.seq), "key": resource.objectKey,
                        ])
                }
                try connection.execute(
                    "UPDATE bundles SET state = 'discarded', writer_pid = NULL, updated_at = ? WHERE id = ?",
                    [.integer(now), .text(id)])
                try Audit.append(
                    connection, at: now, identity: identity, action: "operator.discard", bundleID: id,
                    detail: [
                        "from": bundle.state.rawValue, "to": "discarded", "removed_resources": String(removed),
                        "removed_bytes": String(bytes), "kept_delivered": String(plan.deliveredResources),
                    ])
                return (
                    DiscardResult(
                        bundleID: id, previousState: bundle.state, removedResources: removed, removedBytes: bytes,
                        keptDelivered: plan.deliveredResources, changed: true), files
                )
            }
        }
        if !files.isEmpty {
            // After the commit: a crash in between leaves orphan files, which `verify --fix` and the drainer remove.
            await BlockingIO.value {
                for path in files where path.hasPrefix("data/") && !path.contains("..") { unlink(root + "/" + path) }
            }
        }
        return result
    }

    // MARK: Purge

    /// Removes the payloads kept for delivered resources (`--retain-delivered`) completed before `completedBefore`,
    /// in batches of `purgeBatchSize`, each with an `operator.purge` event; rows stay (with `payload_storage` =
    /// `removed`), so ids and the audit trail remain whole.
    ///
    /// - Parameter dryRun: Only count.
    public func purgeDeliveredPayloads(completedBefore cutoff: Int64, dryRun: Bool) async throws -> PurgeResult {
        let now = clock.nowMilliseconds()
        let identity = self.identity
        let root = layout.root
        if dryRun {
            return try await database.run { connection in
                let (count, bytes) =
                    try connection.queryFirst(
                        """
                        SELECT COUNT(*), COALESCE(SUM(size), 0) FROM resources
                        WHERE state = 'done' AND completed_at < ? AND payload_storage IN ('file', 'inline')
                        """, [.integer(cutoff)], { ($0.int(0), $0.int64(1)) }) ?? (0, 0)
                return PurgeResult(completedBefore: cutoff, payloads: count, bytes: bytes, dryRun: true)
            }
        }
        var total = PurgeResult(completedBefore: cutoff, payloads: 0, bytes: 0, dryRun: false)
        while true {
            let (count, bytes, files) = try await database.run { connection -> (Int, Int64, [String]) in
                try connection.transaction {
                    let rows = try connection.query(
                        """
                        SELECT id, payload_storage, payload_path, size FROM resources
                        WHERE state = 'done' AND completed_at < ? AND payload_storage IN ('file', 'inline')
                        ORDER BY id LIMIT ?
                        """, [.integer(cutoff), .int(Self.purgeBatchSize)],
                        { ($0.int64(0), $0.text(1), $0.optionalText(2), $0.int64(3)) })
                    guard !rows.isEmpty else { return (0, 0, []) }
                    var files: [String] = []
                    var bytes: Int64 = 0
                    for (id, storage, path, size) in rows {
                        if storage == PayloadStorage.inline.rawValue {
                            try connection.execute("DELETE FROM payloads WHERE resource_id = ?", [.integer(id)])
                        } else if let path {
                            files.append(path)
                        }
                        try connection.execute(
                            """
                            UPDATE resources SET payload_storage = 'removed', payload_path = NULL,
                                   payload_removed_at = ?, updated_at = ?
                            WHERE id = ?
                            """, [.integer(now), .integer(now), .integer(id)])
                        bytes += size
                    }
                    try Audit.append(
                        connection, at: now, identity: identity, action: "operator.purge",
                        detail: [
                            "payloads": String(rows.count), "bytes": String(bytes),
                            "completed_before": String(cutoff),
                        ])
                    return (rows.count, bytes, files)
                }
            }
            guard count > 0 else { break }
            total.payloads += count
            total.bytes += bytes
            if !files.isEmpty {
                await BlockingIO.value {
                    for path in files where path.hasPrefix("data/") && !path.contains("..") {
                        unlink(root + "/" + path)
                    }
                }
            }
            if count < Self.purgeBatchSize { break }
        }
        return total
    }

    /// Rows changed per purge transaction: keeps the write lock short for writers and drainers.
    static let purgeBatchSize = 2000

    // MARK: Verify

    /// Checks the spool: SQLite's integrity and foreign keys; every payload present with its recorded size and
    /// SHA-256 (files streamed, inline bytes in the index); payload files no row references (older than
    /// `orphanMinimumAge`), inline bytes of rows that are not inline, multipart uploads no row references.
    ///
    /// With `fix`: orphan files and stray inline bytes are removed; a resource whose payload is missing or damaged is
    /// marked `failed` (`payload-missing` or `corrupt-payload`, it cannot be delivered) and the bad bytes are dropped
    /// (for a delivered resource only the retained copy is dropped). Resources leased by a live drainer are left to
    /// it. Orphan multipart uploads are listed only: the drainer aborts them. Appends `operator.verify` with counts.
    public func verify(fix: Bool, orphanMinimumAge: Duration) async throws -> VerifyReport {
        let root = layout.root
        var problems: [VerifyProblem] = []
        /// Runs one part of the check. A damaged index met on the way (SQLITE_CORRUPT) becomes an `index-integrity`
        /// problem instead of ending the check: the report still says everything else that could be read.
        func checking(_ what: @autoclosure () -> String, _ body: () async throws -> Void) async throws {
            do {
                try await body()
            } catch let error as SpoolError where error.code == .corrupt {
                let reason = (error.underlying as? SQLiteResultError)?.message ?? error.message
                problems.append(
                    VerifyProblem(
                        kind: "index-integrity", resourceID: nil, bundleID: nil, path: "spool.db",
                        detail: "\(what()) failed: the index is damaged (\(reason))", fix: "", fixed: false))
            }
        }
        var integrity = ["not checked"]
        try await checking("the integrity check") {
            integrity = try await database.run { connection in
                try connection.query("PRAGMA integrity_check", [], { $0.text(0) })
            }
            if integrity != ["ok"] {
                for line in integrity {
                    problems.append(
                        VerifyProblem(
                            kind: "index-integrity", resourceID: nil, bundleID: nil, path: "spool.db",
                            detail: line.split(whereSeparator: \.isNewline).joined(separator: " "),
                            fix: "", fixed: false))
                }
            }
        }
        try await checking("the foreign-key check") {
            let foreignKeys = try await database.run { connection in
                try connection.query(
                    "PRAGMA foreign_key_check", [],
                    {
                        "\($0.text(0)) row \($0.int64(1)) refers to a missing \($0.text(2)) row"
                    })
            }
            for line in foreignKeys {
                problems.append(
                    VerifyProblem(
                        kind: "foreign-key", resourceID: nil, bundleID: nil, path: "spool.db", detail: line, fix: "",
                        fixed: false))
            }
        }

        // Payloads, a page of rows at a time; files are hashed off the index's queue.
        var checked = 0
        var bytesChecked: Int64 = 0
        var damaged: [(row: PayloadRow, kind: String, detail: String)] = []
        var afterID: Int64 = 0
        try await checking("reading the payload rows after resource \(afterID)") {
            while true {
                let after = afterID
                let page = try await database.run { connection in
                    try PayloadRow.page(connection, after: after, limit: Self.verifyPageSize)
                }
                guard let last = page.last else { break }
                afterID = last.id
                for row in page {
                    checked += 1
                    let found: (size: Int64, sha256: String)?
                    switch row.storage {
                    case .inline:
                        found = row.inlineDigest
                    case .file:
                        guard let path = row.path else {
                            found = nil
                            break
                        }
                        found = try await BlockingIO.run { try fileDigest(root + "/" + path) }
                    default:
                        continue
                    }
                    guard let found else {
                        let detail =
                            row.storage == .inline
                            ? "the inline bytes are missing from the index"
                            : "the payload file \(row.path ?? "(no path)") is missing"
                        damaged.append((row, "payload-missing", detail))
                        continue
                    }
                    bytesChecked += found.size
                    if found.size != row.size {
                        damaged.append((row, "corrupt-payload", "\(found.size) bytes, recorded \(row.size)"))
                    } else if found.sha256 != row.sha256 {
                        damaged.append((row, "corrupt-payload", "SHA-256 \(found.sha256), recorded \(row.sha256)"))
                    }
                }
            }
        }
        for (row, kind, detail) in damaged {
            let file = row.storage == .file ? row.path : nil
            try await checking("settling resource \(row.id)") {
                let outcome = try await settleDamagedPayload(row, kind: kind, detail: detail, fix: fix)
                guard let outcome else { return }  // changed meanwhile (delivered and removed): not a problem
                problems.append(
                    VerifyProblem(
                        kind: kind, resourceID: row.id, bundleID: row.bundleID, path: file, detail: detail,
                        fix: outcome.fix, fixed: outcome.fixed))
            }
        }

        // Inline bytes kept for rows that are not inline.
        try await checking("looking for stray inline bytes") {
            let strayInline = try await database.run { connection in
                try connection.query(
                    """
                    SELECT p.resource_id, r.bundle_id, r.payload_storage
                    FROM payloads p JOIN resources r ON r.id = p.resource_id
                    WHERE r.payload_storage != 'inline'
                    """, [], { ($0.int64(0), $0.text(1), $0.text(2)) })
            }
            for (id, bundleID, storage) in strayInline {
                var fixed = false
                if fix {
                    fixed = try await database.run { connection in
                        try connection.execute(
                            """
                            DELETE FROM payloads WHERE resource_id = ?
                              AND EXISTS (SELECT 1 FROM resources WHERE id = ? AND payload_storage != 'inline')
                            """, [.integer(id), .integer(id)]) > 0
                    }
                }
                problems.append(
                    VerifyProblem(
                        kind: "orphan-inline", resourceID: id, bundleID: bundleID, path: nil,
                        detail: "inline bytes kept for a resource whose payload is '\(storage)'",
                        fix: "remove the inline bytes", fixed: fixed))
            }
        }

        // Files no row references. (Not when the index could not be read: every file would look like an orphan.)
        if !problems.contains(where: { $0.kind == "index-integrity" }) {
            let orphans = try await orphanPayloadFiles(minimumAge: orphanMinimumAge)
            if fix { await removePayloadFiles(orphans) }
            for path in orphans.sorted() {
                problems.append(
                    VerifyProblem(
                        kind: "orphan-file", resourceID: nil, bundleID: nil, path: path,
                        detail: "no resource refers to this file", fix: "remove the file", fixed: fix))
            }
        }
        let filesInData = try await BlockingIO.run { countEntries(root + "/data") }

        // Multipart uploads started by this spool that no row references: the drainer aborts them at the destination.
        try await checking("looking for orphan multipart uploads") {
            for upload in try await orphanedUploads() {
                problems.append(
                    VerifyProblem(
                        kind: "orphan-upload", resourceID: nil, bundleID: nil, path: upload.key,
                        detail:
                            "multipart upload \(upload.uploadID) (destination \(upload.destinationID)) is referenced by "
                            + "no resource; spool-drain aborts it", fix: "", fixed: false))
            }
        }

        var report = VerifyReport(
            integrity: integrity, resourcesChecked: checked, bytesChecked: bytesChecked, filesInData: filesInData,
            problems: problems, fixRequested: fix)
        let now = clock.nowMilliseconds()
        let identity = self.identity
        let (resourcesChecked, hashedBytes) = (checked, bytesChecked)
        let recorded = report
        let integrityOK = integrity == ["ok"]
        do {
            try await database.run { connection in
                try connection.transaction {
                    var counts: [String: Int] = [:]
                    for problem in recorded.problems { counts[problem.kind, default: 0] += 1 }
                    var detail = [
                        "resources_checked": String(resourcesChecked), "bytes_checked": String(hashedBytes),
                        "problems": String(recorded.problems.count), "fixed": String(recorded.fixedCount),
                        "fix": String(fix), "integrity": integrityOK ? "ok" : "failed",
                    ]
                    for (kind, count) in counts { detail["problems_" + kind.replacingHyphens()] = String(count) }
                    try Audit.append(connection, at: now, identity: identity, action: "operator.verify", detail: detail)
                }
            }
        } catch let error as SpoolError where error.code == .corrupt || error.code == .spoolFull {
            // The report is what the operator asked for: a damaged index or a full disk that keeps the check out of
            // the audit trail is one more problem to show, not a reason to show nothing.
            problems.append(
                VerifyProblem(
                    kind: error.code == .corrupt ? "index-integrity" : "spool-full", resourceID: nil, bundleID: nil,
                    path: "spool.db", detail: "the check could not be recorded in the audit trail: \(error.message)",
                    fix: "", fixed: false))
        }
        report.problems = problems
        return report
    }

    /// Rows whose payload is checked per page.
    static let verifyPageSize = 500

    /// Re-reads a damaged row: nil when it changed meanwhile (e.g. delivered and its payload removed). With `fix`,
    /// drops the bad payload and fails an undelivered resource, unless a live drainer holds it.
    private func settleDamagedPayload(_ row: PayloadRow, kind: String, detail: String, fix: Bool) async throws
        -> (fix: String, fixed: Bool)?
    {
        let now = clock.nowMilliseconds()
        let identity = self.identity
        let root = layout.root
        let outcome = try await database.run { connection -> (fix: String, fixed: Bool, file: String?)? in
            try connection.transaction {
                guard let resource = try ResourceRows.fetch(connection, id: row.id),
                    resource.payloadStorage == row.storage, resource.payloadPath == row.path,
                    resource.sha256 == row.sha256
                else { return nil }
                let planned =
                    resource.state == .done
                    ? "drop the damaged retained copy (the resource is delivered)"
                    : "mark the resource failed (\(kind)) and drop the damaged payload"
                if Self.leaseIsLive(resource, now: now, host: identity.host) {
                    return ("none: a drainer holds it and will fail it before uploading", false, nil)
                }
                guard fix else { return (planned, false, nil) }
                try connection.execute("DELETE FROM payloads WHERE resource_id = ?", [.integer(row.id)])
                try connection.execute(
                    """
                    UPDATE resources SET payload_storage = 'removed', payload_path = NULL, payload_removed_at = ?,
                           updated_at = ?
                    WHERE id = ?
                    """, [.integer(now), .integer(now), .integer(row.id)])
                if resource.state != .done {
                    try connection.execute(
                        """
                        UPDATE resources SET state = 'failed', last_error_code = ?, last_error_message = ?,
                               lease_owner = NULL, lease_expires_at = NULL
                        WHERE id = ?
                        """, [.text(kind), .text("spool-inspect verify: \(detail)"), .integer(row.id)])
                }
                try Audit.append(
                    connection, at: now, identity: identity,
                    action: resource.state == .done ? "resource.payload_dropped" : "resource.failed",
                    bundleID: resource.bundleID, resourceID: row.id,
                    detail: [
                        "from": resource.state.rawValue, "to": resource.state == .done ? "done" : "failed",
                        "error": kind, "detail": detail, "by": "operator.verify",
                    ])
                return (planned, true, row.storage == .file ? row.path : nil)
            }
        }
        guard let outcome else { return nil }
        if let file = outcome.file, file.hasPrefix("data/"), !file.contains("..") {
            await BlockingIO.value { unlink(root + "/" + file) }
        }
        return (outcome.fix, outcome.fixed)
    }

    // MARK: Find

    /// Resources whose URL, metadata value or SHA-256 match, lowest id first. Every value is bound; the metadata key
    /// is validated as a metadata key first.
    ///
    /// - Throws: `SpoolError.invalidMetadata` for a key that cannot be a metadata key; `.invalidConfiguration` for a
    ///   query with no criterion.
    public func findResources(_ query: FindQuery) async throws -> [ResourceRecord] {
        guard query.urlPattern != nil || query.metadata != nil || query.sha256 != nil else {
            throw SpoolError(.invalidConfiguration, "give a URL pattern, a metadata key=value or a SHA-256 to find")
        }
        if let metadata = query.metadata {
            try Validation.checkMetadata([metadata.key: metadata.value], owner: "searched")
        }
        let like = query.urlPattern.map { FindQuery.likePattern(glob: $0) }
        return try await database.run { connection in
            try connection.query(
                """
                SELECT \(ResourceRows.columns) FROM resources
                WHERE kind = 'resource' AND (?1 IS NULL OR url LIKE ?1 ESCAPE '\\')
                  AND (?2 IS NULL OR json_extract(metadata, '$."' || ?2 || '"') = ?3)
                  AND (?4 IS NULL OR sha256 = ?4)
                ORDER BY id LIMIT ?5
                """,
                [
                    .optionalText(like), .optionalText(query.metadata?.key), .optionalText(query.metadata?.value),
                    .optionalText(query.sha256?.lowercased()), .int(max(0, query.limit)),
                ], ResourceRows.map)
        }
    }

    // MARK: Audit

    /// Audit events matching `query` with an id above `afterID`, oldest first: page through them to export the trail.
    public func auditEvents(_ query: AuditQuery, afterID: Int64 = 0, limit: Int) async throws -> [AuditEvent] {
        try await database.run { connection in
            try connection.query(
                "SELECT \(AuditRows.columns) FROM audit_events WHERE \(AuditQuery.condition) AND id > ?6 "
                    + "ORDER BY id LIMIT ?7",
                query.bindings + [.integer(afterID), .int(max(0, limit))], AuditRows.map)
        }
    }

    /// The last `limit` audit events matching `query`, oldest first.
    public func lastAuditEvents(_ query: AuditQuery, limit: Int) async throws -> [AuditEvent] {
        try await database.run { connection in
            try connection.query(
                "SELECT \(AuditRows.columns) FROM audit_events WHERE \(AuditQuery.condition) ORDER BY id DESC LIMIT ?6",
                query.bindings + [.int(max(0, limit))], AuditRows.map
            ).reversed()
        }
    }

    /// How many audit events match `query`.
    public func auditEventCount(_ query: AuditQuery) async throws -> Int {
        try await database.run { connection in
            try connection.queryFirst(
                "SELECT COUNT(*) FROM audit_events WHERE \(AuditQuery.condition)", query.bindings, { $0.int(0) }) ?? 0
        }
    }
}

// MARK: - Helpers

/// A row holding a payload, as `verify` checks it (inline bytes hashed on the index's queue).
struct PayloadRow: Sendable {
    var id: Int64
    var bundleID: String
    var storage: PayloadStorage
    var path: String?
    var size: Int64
    var sha256: String
    /// Size and SHA-256 of the inline bytes, nil when they are missing (or the row is a file).
    var inlineDigest: (size: Int64, sha256: String)?

    static func page(_ connection: SQLiteConnection, after id: Int64, limit: Int) throws -> [PayloadRow] {
        try connection.query(
            """
            SELECT r.id, r.bundle_id, r.payload_storage, r.payload_path, r.size, r.sha256, p.bytes IS NOT NULL, p.bytes
            FROM resources r LEFT JOIN payloads p ON p.resource_id = r.id AND r.payload_storage = 'inline'
            WHERE r.id > ? AND r.payload_storage IN ('file', 'inline') ORDER BY r.id LIMIT ?
            """, [.integer(id), .int(limit)]
        ) { row in
            let storage = PayloadStorage(rawValue: row.text(2)) ?? .removed
            var digest: (Int64, String)?
            if storage == .inline, row.int(6) != 0 {
                let bytes = row.blob(7)
                digest = (Int64(bytes.count), SHA256Hasher.hexDigest(bytes))
            }
            return PayloadRow(
                id: row.int64(0), bundleID: row.text(1), storage: storage, path: row.optionalText(3),
                size: row.int64(4), sha256: row.text(5), inlineDigest: digest)
        }
    }
}

/// Size and SHA-256 of a file, read a MiB at a time; nil when it does not exist.
func fileDigest(_ path: String) throws -> (size: Int64, sha256: String)? {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else {
        if errno == ENOENT { return nil }
        throw SpoolError.io("open the payload file", path: path, call: "open")
    }
    defer { close(descriptor) }
    var hasher = SHA256Hasher()
    var size: Int64 = 0
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            throw SpoolError.io("read the payload file", path: path, call: "read")
        }
        if count == 0 { break }
        chunk.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        size += Int64(count)
    }
    return (size, hasher.finalize().hexString)
}

/// Entries in a directory (not `.` and `..`).
func countEntries(_ path: String) -> Int {
    guard let directory = opendir(path) else { return 0 }
    defer { closedir(directory) }
    var count = 0
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        if name != "." && name != ".." { count += 1 }
    }
    return count
}

extension String {
    fileprivate func replacingHyphens() -> String { String(map { $0 == "-" ? "_" : $0 }) }
}
