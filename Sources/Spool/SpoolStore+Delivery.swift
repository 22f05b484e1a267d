import Foundation

/// A resource claimed for delivery: the row, the fencing token every later write must present, and what the
/// destination holds about it.
public struct DeliveryClaim: Sendable {
    /// The resource (state `uploading`, leased to the claimer).
    public var resource: ResourceRecord
    /// The fencing token of this claim.
    public var token: Int64
    /// Where it goes.
    public var destination: DestinationRecord
    /// Parts recorded for its multipart upload in progress, if any.
    public var parts: [PartRecord]
    /// The previous lease owner, when this claim took over an expired (or dead) lease.
    public var reclaimedFrom: String?
    /// Whether this claim probes a paused destination (its outcome resumes the destination or keeps it paused).
    public var isProbe: Bool
}

extension SpoolError.Code {
    /// A progress or completion record was refused: the lease moved to another claim (fencing token mismatch).
    public static let leaseLost: SpoolError.Code = "lease-lost"
}

extension SpoolStore {
    /// The lease owner name of this process: `host/pid/nonce`.
    public static func leaseOwnerName() -> String {
        let identity = ActorIdentity.current
        return "\(identity.host)/\(identity.pid)/\(randomHex(bytes: 4))"
    }

    /// Claims up to `limit` resources that are due, in one transaction: pending rows whose backoff has passed,
    /// uploading rows whose lease expired (or whose owner on this host is gone), and `_bundle.json` rows whose sealed
    /// bundle has every resource done. Each gets a new fencing token and a lease until now + `leaseDuration`.
    ///
    /// A paused destination gets at most one claim (a probe) once its next check is due; the rest of its rows wait.
    /// The transaction commits with `synchronous = FULL`, so what is claimed (and every row written before it) is on
    /// disk before anything is uploaded.
    ///
    /// Times in the index are wall-clock times, shared by processes. A time further ahead than anything this spool
    /// writes (a backoff beyond `maximumBackoff`, a lease beyond `maximumLeaseDuration`, a paused destination's check
    /// beyond `pausedRecheck`) was stamped before the clock stepped back, and is treated as due now: a step back
    /// delays work by at most those bounds, never by the size of the step.
    /// - Parameters:
    ///   - owner: The lease owner name (`leaseOwnerName()`).
    ///   - limit: The most rows to claim.
    ///   - leaseDuration: The lease length, at most `maximumLeaseDuration`.
    ///   - pausedRecheck: How long a paused destination waits between probes.
    ///   - excluding: Resources the caller is still delivering. Their leases may have run out while the caller was
    ///     stalled; claiming one again would start a second delivery of it beside the first. Another drainer may take
    ///     them over; the caller then learns at its next renewal that the lease is lost.
    /// - Throws: `SpoolError` from the index.
    public func claimDue(
        owner: String, limit: Int, leaseDuration: Duration, pausedRecheck: Duration = .seconds(30),
        excluding: Set<Int64> = []
    ) async throws -> [DeliveryClaim] {
        guard limit > 0 else { return [] }
        let now = clock.nowMilliseconds()
        // Bound as one JSON array (read by json_each), whatever the number of ids.
        let excludedJSON = "[" + excluding.sorted().map(String.init).joined(separator: ",") + "]"
        let identity = self.identity
        let leaseUntil = now + min(leaseDuration, Self.maximumLeaseDuration).milliseconds
        let recheckAt = now + pausedRecheck.milliseconds
        return try await database.run { connection in
            let excluded = SQLiteValue.text(excludedJSON)
            return try connection.transaction {
                try Self.expireLeasesOfDeadLocalOwners(connection, host: identity.host, except: owner)
                try Self.settleTimesAheadOfTheClock(connection, now: now, pausedRecheck: pausedRecheck)
                var chosen: [(id: Int64, probe: Bool)] = []
                // Probes of paused destinations whose check is due: one row each, and the next check moves on.
                let duePaused = try connection.query(
                    """
                    SELECT id FROM destinations
                    WHERE paused_at IS NOT NULL AND COALESCE(paused_next_check_at, 0) <= ?
                    """, [.integer(now)], { $0.int64(0) })
                for destination in duePaused {
                    let probe = try connection.queryFirst(
                        "SELECT id FROM resources r WHERE r.destination_id = ? AND \(Self.dueCondition) "
                            + "ORDER BY r.next_attempt_at, r.id LIMIT 1",
                        [.integer(destination), .integer(now), .integer(now), excluded], { $0.int64(0) })
                    try connection.execute(
                        "UPDATE destinations SET paused_next_check_at = ? WHERE id = ?",
                        [.integer(recheckAt), .integer(destination)])
                    if let probe, chosen.count < limit { chosen.append((probe, true)) }
                }
                let remaining = limit - chosen.count
                if remaining > 0 {
                    chosen += try connection.query(
                        """
                        SELECT r.id FROM resources r JOIN destinations d ON d.id = r.destination_id
                        WHERE d.paused_at IS NULL AND \(Self.dueCondition)
                        ORDER BY r.next_attempt_at, r.id LIMIT ?
                        """, [.integer(now), .integer(now), excluded, .int(remaining)], { ($0.int64(0), false) })
                }
                var claims: [DeliveryClaim] = []
                for (id, probe) in chosen {
                    let token =
                        try connection.queryFirst(
                            "UPDATE counters SET value = value + 1 WHERE name = 'fencing_token' RETURNING value", [],
                            { $0.int64(0) }) ?? 0
                    let previous = try connection.queryFirst(
                        "SELECT state, lease_owner FROM resources WHERE id = ?", [.integer(id)],
                        { ($0.text(0), $0.optionalText(1)) })
                    let reclaimedFrom = previous?.0 == ResourceState.uploading.rawValue ? previous?.1 : nil
                    try connection.execute(
                        """
                        UPDATE resources SET state = 'uploading', lease_owner = ?, lease_expires_at = ?,
                               fencing_token = ?, claimed_at = ?, updated_at = ?
                        WHERE id = ?
                        """,
                        [
                            .text(owner), .integer(leaseUntil), .integer(token), .integer(now), .integer(now),
                            .integer(id),
                        ])
                    var detail = ["owner": owner, "token": String(token)]
                    if let reclaimedFrom {
                        detail["reclaimed_from"] = reclaimedFrom
                        try Audit.append(
                            connection, at: now, identity: identity, action: "lease.reclaimed", resourceID: id,
                            detail: ["from": reclaimedFrom, "to": owner])
                    }
                    if probe { detail["probe"] = "true" }
                    let resource = try ResourceRows.fetch(connection, id: id)!
                    try Audit.append(
                        connection, at: now, identity: identity, action: "resource.claimed",
                        bundleID: resource.bundleID, resourceID: id, detail: detail)
                    claims.append(
                        DeliveryClaim(
                            resource: resource, token: token,
                            destination: try DestinationRows.fetch(connection, id: resource.destinationID)!,
                            parts: try PartRows.fetch(connection, resourceID: id, uploadID: resource.uploadID),
                            reclaimedFrom: reclaimedFrom, isProbe: probe))
                }
                return claims
            }
        }
    }

    /// Due: pending past its backoff, or leased with the lease expired; a manifest only once its bundle is sealed and
    /// every resource of it is done; not among the ids excluded. Binds the current time twice, then the excluded ids as
    /// a JSON array.
    static let dueCondition = """
        ((r.state = 'pending' AND r.next_attempt_at <= ?) OR (r.state = 'uploading' AND r.lease_expires_at < ?))
        AND (r.kind = 'resource' OR (
            EXISTS (SELECT 1 FROM bundles b WHERE b.id = r.bundle_id AND b.state = 'sealed')
            AND NOT EXISTS (SELECT 1 FROM resources x
                            WHERE x.bundle_id = r.bundle_id AND x.kind = 'resource' AND x.state != 'done')))
        AND r.id NOT IN (SELECT value FROM json_each(?))
        """

    /// The longest lease a claim gets. A lease expiring later than now + this was stamped before the clock stepped
    /// back, and is treated as expired.
    public static let maximumLeaseDuration: Duration = .seconds(3600)

    /// The longest backoff `recordRetry` schedules. A resource due later than now + this was scheduled before the
    /// clock stepped back, and is treated as due now.
    public static let maximumBackoff: Duration = .seconds(3600)

    /// Makes due what a clock that stepped back left in the future (see `claimDue`). Each statement is a range scan
    /// of an index, empty unless the clock stepped back, so claims stay cheap on large spools.
    static func settleTimesAheadOfTheClock(_ connection: SQLiteConnection, now: Int64, pausedRecheck: Duration) throws {
        try connection.execute(
            "UPDATE resources SET next_attempt_at = ? WHERE state = 'pending' AND next_attempt_at > ?",
            [.integer(now), .integer(now + maximumBackoff.milliseconds)])
        try connection.execute(
            "UPDATE resources SET lease_expires_at = 0 WHERE state = 'uploading' AND lease_expires_at > ?",
            [.integer(now + maximumLeaseDuration.milliseconds)])
        try connection.execute(
            "UPDATE destinations SET paused_next_check_at = 0 WHERE paused_at IS NOT NULL AND paused_next_check_at > ?",
            [.integer(now + pausedRecheck.milliseconds)])
    }

    /// A drainer on this host that was killed holds its leases until they expire; its pid tells it is gone, so its
    /// leases are expired now instead.
    static func expireLeasesOfDeadLocalOwners(_ connection: SQLiteConnection, host: String, except owner: String)
        throws
    {
        let owners = try connection.query(
            "SELECT DISTINCT lease_owner FROM resources WHERE state = 'uploading' AND lease_owner IS NOT NULL", [],
            { $0.text(0) })
        for other in owners where other != owner {
            let parts = other.split(separator: "/")
            guard parts.count == 3, parts[0] == host, let pid = Int(parts[1]), !processIsAlive(pid) else { continue }
            try connection.execute(
                "UPDATE resources SET lease_expires_at = 0 WHERE state = 'uploading' AND lease_owner = ?",
                [.text(other)])
        }
    }

    /// Extends the leases of claims still in progress.
    ///
    /// - Returns: the ids whose lease was lost (another claim holds them now): their deliveries must stop.
    public func renewLeases(_ claims: [(id: Int64, token: Int64)], leaseDuration: Duration) async throws -> [Int64] {
        guard !claims.isEmpty else { return [] }
        let now = clock.nowMilliseconds()
        let until = now + min(leaseDuration, Self.maximumLeaseDuration).milliseconds
        return try await database.run { connection in
            try connection.transaction {
                var lost: [Int64] = []
                for (id, token) in claims {
                    let changed = try connection.execute(
                        """
                        UPDATE resources SET lease_expires_at = ?, updated_at = ?
                        WHERE id = ? AND fencing_token = ? AND state = 'uploading'
                        """, [.integer(until), .integer(now), .integer(id), .integer(token)])
                    guard changed == 0 else { continue }
                    // Lost only when another claim holds it now (a new token). A row this claim itself just recorded
                    // (done, retry, failed, released) keeps its token: its delivery is finishing, not to be stopped.
                    let current = try connection.queryFirst(
                        "SELECT fencing_token FROM resources WHERE id = ?", [.integer(id)], { $0.int64(0) })
                    if current != token { lost.append(id) }
                }
                return lost
            }
        }
    }

    /// Records the multipart upload a claim started, before its first part is sent.
    ///
    /// - Throws: `SpoolError.leaseLost` when the token no longer matches.
    public func recordUploadStarted(id: Int64, token: Int64, uploadID: String, partSize: Int64) async throws {
        let now = clock.nowMilliseconds()
        try await guardedWrite(id: id, token: token, what: "record its multipart upload") { connection, resource in
            try connection.execute(
                "UPDATE resources SET upload_id = ?, upload_part_size = ?, upload_started_at = ?, updated_at = ? WHERE id = ?",
                [.text(uploadID), .integer(partSize), .integer(now), .integer(now), .integer(id)])
            try connection.execute("DELETE FROM resource_parts WHERE resource_id = ?", [.integer(id)])
            try connection.execute(
                """
                INSERT OR IGNORE INTO multipart_uploads (upload_id, destination_id, object_key, resource_id, created_at)
                VALUES (?, ?, ?, ?, ?)
                """,
                [
                    .text(uploadID), .integer(resource.destinationID), .text(resource.objectKey), .integer(id),
                    .integer(now),
                ])
        }
    }

    /// Records a part as soon as S3 acknowledged it.
    ///
    /// - Throws: `SpoolError.leaseLost`.
    public func recordPart(id: Int64, token: Int64, part: PartRecord) async throws {
        // Not fsynced: a part record is a hint. A lost one (power loss before the next fsynced commit) only means the
        // next attempt finds the part with ListParts and reads its CRC32C from the file again.
        _ = try await guardedWrite(
            id: id, token: token, what: "record part \(part.partNumber)", synced: false
        ) { connection, _ in
            try connection.execute(
                """
                INSERT OR REPLACE INTO resource_parts (resource_id, upload_id, part_number, size, etag, checksum_crc32c,
                                                       checksum_sha256, recorded_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .integer(id), .text(part.uploadID), .int(part.partNumber), .integer(part.size), .text(part.etag),
                    .optionalText(part.checksumCRC32C), .optionalText(part.checksumSHA256), .integer(part.recordedAt),
                ])
        }
    }

    /// Forgets a claim's multipart upload (it was aborted, or S3 no longer has it).
    ///
    /// - Throws: `SpoolError.leaseLost`.
    public func forgetUpload(id: Int64, token: Int64, outcome: String) async throws {
        let now = clock.nowMilliseconds()
        try await guardedWrite(id: id, token: token, what: "forget its multipart upload") { connection, resource in
            if let uploadID = resource.uploadID {
                try Self.finishUpload(connection, uploadID: uploadID, outcome: outcome, now: now)
            }
            try connection.execute(
                "UPDATE resources SET upload_id = NULL, upload_part_size = NULL, upload_started_at = NULL WHERE id = ?",
                [.integer(id)])
            try connection.execute("DELETE FROM resource_parts WHERE resource_id = ?", [.integer(id)])
        }
    }

    /// Records delivery: `done`, with the ETag and VersionId; a `_bundle.json` also marks its bundle `delivered`.
    /// The local payload is removed (unless `retainPayload`): inline bytes in the same transaction, a file right after.
    ///
    /// - Throws: `SpoolError.leaseLost`.
    public func recordDelivered(
        id: Int64, token: Int64, etag: String, versionID: String?, retainPayload: Bool, note: String? = nil
    ) async throws {
        let now = clock.nowMilliseconds()
        let identity = self.identity
        let root = layout.root
        let fileToRemove = try await guardedWrite(id: id, token: token, what: "record its delivery") {
            connection, resource -> String? in
            try connection.execute(
                """
                UPDATE resources SET state = 'done', etag = ?, version_id = ?, completed_at = ?, updated_at = ?,
                       lease_owner = NULL, lease_expires_at = NULL, last_error_code = NULL, last_error_message = NULL
                WHERE id = ?
                """, [.text(etag), .optionalText(versionID), .integer(now), .integer(now), .integer(id)])
            if let uploadID = resource.uploadID {
                try Self.finishUpload(connection, uploadID: uploadID, outcome: "completed", now: now)
            }
            var removed: String?
            if !retainPayload {
                removed = resource.payloadStorage == .file ? resource.payloadPath : nil
                if resource.payloadStorage == .inline {
                    // Only then: a damaged page of the payloads table must not keep file resources from being done.
                    try connection.execute("DELETE FROM payloads WHERE resource_id = ?", [.integer(id)])
                }
                try connection.execute(
                    """
                    UPDATE resources SET payload_storage = 'removed', payload_path = NULL, payload_removed_at = ?
                    WHERE id = ? AND payload_storage IN ('file', 'inline')
                    """, [.integer(now), .integer(id)])
            }
            var detail = ["from": "uploading", "to": "done", "etag": etag]
            if let versionID { detail["version_id"] = versionID }
            if let note { detail["note"] = note }
            try Audit.append(
                connection, at: now, identity: identity, action: "resource.delivered", bundleID: resource.bundleID,
                resourceID: id, detail: detail)
            if resource.kind == .manifest {
                try connection.execute(
                    "UPDATE bundles SET state = 'delivered', delivered_at = ?, updated_at = ? WHERE id = ?",
                    [.integer(now), .integer(now), .text(resource.bundleID)])
                try Audit.append(
                    connection, at: now, identity: identity, action: "bundle.delivered", bundleID: resource.bundleID,
                    detail: ["from": "sealed", "to": "delivered"])
            }
            return removed
        }
        if let fileToRemove {
            // After the commit: a crash here leaves an orphan file, which the orphan sweep removes.
            await BlockingIO.value { unlink(root + "/" + fileToRemove) }
        }
    }

    /// Gives up on a resource: `failed` with the error; kept until an operator retries or purges it.
    ///
    /// - Throws: `SpoolError.leaseLost`.
    public func recordFailed(id: Int64, token: Int64, code: String, message: String) async throws {
        let now = clock.nowMilliseconds()
        let identity = self.identity
        try await guardedWrite(id: id, token: token, what: "record its failure") { connection, resource in
            try connection.execute(
                """
                UPDATE resources SET state = 'failed', attempts = attempts + 1, last_error_code = ?,
                       last_error_message = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?
                WHERE id = ?
                """, [.text(code), .text(message), .integer(now), .integer(id)])
            try Audit.append(
                connection, at: now, identity: identity, action: "resource.failed", bundleID: resource.bundleID,
                resourceID: id,
                detail: ["from": "uploading", "to": "failed", "error": code, "attempt": String(resource.attempts + 1)])
        }
    }

    /// Puts a resource back to `pending` for another attempt after `delay` (one more attempt counted; at most
    /// `maximumBackoff`).
    ///
    /// - Throws: `SpoolError.leaseLost`.
    public func recordRetry(id: Int64, token: Int64, code: String, message: String, delay: Duration) async throws {
        let delay = min(delay, Self.maximumBackoff)
        let now = clock.nowMilliseconds()
        let identity = self.identity
        try await guardedWrite(id: id, token: token, what: "schedule its retry") { connection, resource in
            try connection.execute(
                """
                UPDATE resources SET state = 'pending', attempts = attempts + 1, next_attempt_at = ?,
                       last_error_code = ?, last_error_message = ?, lease_owner = NULL, lease_expires_at = NULL,
                       updated_at = ?
                WHERE id = ?
                """, [.integer(now + delay.milliseconds), .text(code), .text(message), .integer(now), .integer(id)])
            try Audit.append(
                connection, at: now, identity: identity, action: "resource.retry_scheduled",
                bundleID: resource.bundleID, resourceID: id,
                detail: [
                    "from": "uploading", "to": "pending", "error": code, "attempt": String(resource.attempts + 1),
                    "delay_ms": String(delay.milliseconds),
                ])
        }
    }

    /// Gives a claim back without counting an attempt (shutdown, a paused destination).
    ///
    /// - Throws: `SpoolError.leaseLost`.
    public func releaseClaim(id: Int64, token: Int64, reason: String) async throws {
        let now = clock.nowMilliseconds()
        let identity = self.identity
        try await guardedWrite(id: id, token: token, what: "release its claim") { connection, resource in
            try connection.execute(
                """
                UPDATE resources SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL, updated_at = ?
                WHERE id = ?
                """, [.integer(now), .integer(id)])
            try Audit.append(
                connection, at: now, identity: identity, action: "resource.released", bundleID: resource.bundleID,
                resourceID: id, detail: ["from": "uploading", "to": "pending", "reason": reason])
        }
    }

    /// Pauses a destination after a configuration or permission error; claims skip it, except one probe per
    /// `recheck`, so no attempts are burned while the cause lasts.
    public func pauseDestination(_ id: Int64, code: String, message: String, recheck: Duration) async throws {
        let now = clock.nowMilliseconds()
        let identity = self.identity
        try await database.run { connection in
            try connection.transaction {
                let wasPaused =
                    try connection.queryFirst("SELECT paused_at FROM destinations WHERE id = ?", [.integer(id)]) {
                        $0.optionalInt64(0)
                    } ?? nil
                try connection.execute(
                    """
                    UPDATE destinations SET paused_at = COALESCE(paused_at, ?), paused_error_code = ?,
                           paused_error_message = ?, paused_next_check_at = ?
                    WHERE id = ?
                    """,
                    [.integer(now), .text(code), .text(message), .integer(now + recheck.milliseconds), .integer(id)])
                if wasPaused == nil {
                    try Audit.append(
                        connection, at: now, identity: identity, action: "destination.paused",
                        detail: ["destination_id": String(id), "error": code])
                }
            }
        }
    }

    /// Resumes a paused destination (its probe succeeded).
    public func resumeDestination(_ id: Int64) async throws {
        let now = clock.nowMilliseconds()
        let identity = self.identity
        try await database.run { connection in
            try connection.transaction {
                let changed = try connection.execute(
                    """
                    UPDATE destinations SET paused_at = NULL, paused_error_code = NULL, paused_error_message = NULL,
                           paused_next_check_at = NULL
                    WHERE id = ? AND paused_at IS NOT NULL
                    """, [.integer(id)])
                if changed > 0 {
                    try Audit.append(
                        connection, at: now, identity: identity, action: "destination.resumed",
                        detail: ["destination_id": String(id)])
                }
            }
        }
    }

    /// Makes every paused destination due for a probe now (a drainer starting: its configuration may be fixed).
    public func recheckPausedDestinations() async throws {
        _ = try await database.run { connection in
            try connection.execute(
                "UPDATE destinations SET paused_next_check_at = 0 WHERE paused_at IS NOT NULL")
        }
    }

    /// The bytes of a claimed `_bundle.json`: generated once from the bundle and its delivered resources, stored
    /// inline with its SHA-256 and CRC32C, and the same bytes on every later attempt (so a retry after a lost answer
    /// compares equal).
    ///
    /// - Throws: `SpoolError.leaseLost`.
    public func manifestPayload(id: Int64, token: Int64) async throws -> [UInt8] {
        let now = clock.nowMilliseconds()
        return try await guardedWrite(id: id, token: token, what: "prepare its _bundle.json") {
            connection, resource -> [UInt8] in
            if resource.payloadStorage == .inline {
                return try connection.queryFirst(
                    "SELECT bytes FROM payloads WHERE resource_id = ?", [.integer(id)], { $0.blob(0) }) ?? []
            }
            let bundle = try BundleRows.fetch(connection, id: resource.bundleID)!
            let resources = try connection.query(
                "SELECT \(ResourceRows.columns) FROM resources WHERE bundle_id = ? AND kind = 'resource' ORDER BY seq",
                [.text(bundle.id)], ResourceRows.map)
            let bytes = BundleManifest.encode(bundle: bundle, resources: resources, deliveredAt: now)
            let digest = PayloadDigest.compute(bytes)
            try connection.execute(
                """
                UPDATE resources SET payload_storage = 'inline', size = ?, sha256 = ?, crc32c = ?, updated_at = ?
                WHERE id = ?
                """,
                [
                    .integer(Int64(bytes.count)), .text(digest.sha256), .integer(Int64(digest.crc32c)), .integer(now),
                    .integer(id),
                ])
            try connection.execute(
                "INSERT OR REPLACE INTO payloads (resource_id, bytes) VALUES (?, ?)", [.integer(id), .blob(bytes)])
            return bytes
        }
    }

    /// The inline payload of a resource (small resources and manifests).
    ///
    /// - Throws: `SpoolError.corrupt` when it is missing.
    public func inlinePayload(id: Int64) async throws -> [UInt8] {
        try await database.run { connection in
            guard
                let bytes = try connection.queryFirst(
                    "SELECT bytes FROM payloads WHERE resource_id = ?", [.integer(id)], { $0.blob(0) })
            else { throw SpoolError(.corrupt, "resource \(id) is stored inline but its bytes are missing") }
            return bytes
        }
    }

    /// Multipart uploads this spool started that no resource references any more (to abort), per destination.
    public func orphanedUploads() async throws -> [(uploadID: String, destinationID: Int64, key: String)] {
        try await database.run { connection in
            try connection.query(
                """
                SELECT u.upload_id, u.destination_id, u.object_key FROM multipart_uploads u
                WHERE u.finished_at IS NULL
                  AND NOT EXISTS (SELECT 1 FROM resources r WHERE r.upload_id = u.upload_id)
                """, [], { ($0.text(0), $0.int64(1), $0.text(2)) })
        }
    }

    /// `_bundle.json` rows still to be written that can still become due: pending or uploading, in a bundle none of
    /// whose resources has failed (a failed resource holds its bundle's marker back until an operator retries it).
    public func manifestsStillDeliverable() async throws -> Int {
        try await database.run { connection in
            try connection.queryFirst(
                """
                SELECT COUNT(*) FROM resources m
                WHERE m.kind = 'manifest' AND m.state IN ('pending', 'uploading')
                  AND NOT EXISTS (SELECT 1 FROM resources x
                                  WHERE x.bundle_id = m.bundle_id AND x.kind = 'resource' AND x.state = 'failed')
                """, [], { $0.int(0) }) ?? 0
        }
    }

    /// Whether an upload id is one this spool records as the live upload of a resource.
    public func isLiveUpload(_ uploadID: String) async throws -> Bool {
        try await database.run { connection in
            try connection.queryFirst(
                "SELECT 1 FROM resources WHERE upload_id = ?", [.text(uploadID)], { _ in true }) ?? false
        }
    }

    /// Records that an upload was aborted or is gone.
    public func recordUploadFinished(_ uploadID: String, outcome: String) async throws {
        let now = clock.nowMilliseconds()
        try await database.run { connection in
            try Self.finishUpload(connection, uploadID: uploadID, outcome: outcome, now: now)
        }
    }

    /// Payload files in `data/` that no resource references and that are older than `minimumAge` (younger ones may
    /// belong to a writer between its rename and its commit).
    public func orphanPayloadFiles(minimumAge: Duration) async throws -> [String] {
        let root = layout.root
        let referenced = try await database.run { connection in
            Set(
                try connection.query(
                    "SELECT payload_path FROM resources WHERE payload_storage = 'file' AND payload_path IS NOT NULL",
                    [],
                    { $0.text(0) }))
        }
        let cutoff = clock.nowMilliseconds() - minimumAge.milliseconds
        return try await BlockingIO.run {
            guard let directory = opendir(root + "/data") else { return [] }
            defer { closedir(directory) }
            var orphans: [String] = []
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                if name == "." || name == ".." || referenced.contains("data/" + name) { continue }
                var info = stat()
                guard stat(root + "/data/" + name, &info) == 0,
                    Int64(info.st_mtim.tv_sec) * 1000 + Int64(info.st_mtim.tv_nsec) / 1_000_000 <= cutoff
                else { continue }
                orphans.append("data/" + name)
            }
            return orphans
        }
    }

    /// Removes payload files (relative to the spool directory).
    public func removePayloadFiles(_ paths: [String]) async {
        let root = layout.root
        await BlockingIO.value {
            for path in paths where path.hasPrefix("data/") && !path.contains("..") { unlink(root + "/" + path) }
        }
    }

    static func finishUpload(_ connection: SQLiteConnection, uploadID: String, outcome: String, now: Int64) throws {
        try connection.execute(
            "UPDATE multipart_uploads SET finished_at = ?, outcome = ? WHERE upload_id = ? AND finished_at IS NULL",
            [.integer(now), .text(outcome), .text(uploadID)])
    }

    /// Runs `body` in a transaction only while the claim's fencing token still matches; without waiting for the
    /// disk when `synced` is false (rows that are hints: ``SQLiteConnection/transactionWithoutSync(_:)``).
    private func guardedWrite<T: Sendable>(
        id: Int64, token: Int64, what: String, synced: Bool = true,
        _ body: @escaping @Sendable (SQLiteConnection, ResourceRecord) throws -> T
    ) async throws -> T {
        try await database.run { connection in
            func guarded() throws -> T {
                guard let resource = try ResourceRows.fetch(connection, id: id), resource.fencingToken == token,
                    resource.state == .uploading
                else {
                    throw SpoolError(
                        .leaseLost,
                        "resource \(id) is no longer leased with token \(token): another drainer took it over, so "
                            + "this one must not \(what)")
                }
                return try body(connection, resource)
            }
            return try synced ? connection.transaction(guarded) : connection.transactionWithoutSync(guarded)
        }
    }
}

extension ResourceRows {
    static func fetch(_ connection: SQLiteConnection, id: Int64) throws -> ResourceRecord? {
        try connection.queryFirst("SELECT \(columns) FROM resources WHERE id = ?", [.integer(id)], map)
    }
}

/// Reading destination rows.
enum DestinationRows {
    static func fetch(_ connection: SQLiteConnection, id: Int64) throws -> DestinationRecord? {
        try connection.queryFirst(
            """
            SELECT id, kind, location, endpoint, region, options, paused_at, paused_error_code, paused_error_message,
                   setup_fingerprint, setup_applied_at, setup_applied_by, setup_settings
            FROM destinations WHERE id = ?
            """, [.integer(id)]
        ) { row in
            var setup: BucketSetupRecord?
            if let fingerprint = row.optionalText(9), let appliedAt = row.optionalInt64(10) {
                setup = BucketSetupRecord(
                    fingerprint: fingerprint, appliedAt: appliedAt, appliedBy: row.optionalText(11),
                    settings: MetadataJSON.decode(row.optionalText(12) ?? "{}"))
            }
            return DestinationRecord(
                id: row.int64(0),
                spec: DestinationSpec(
                    kind: DestinationSpec.Kind(rawValue: row.text(1)) ?? .s3, location: row.text(2),
                    endpoint: row.text(3), region: row.text(4), optionsJSON: row.text(5)),
                pausedAt: row.optionalInt64(6), pausedErrorCode: row.optionalText(7),
                pausedErrorMessage: row.optionalText(8), bucketSetup: setup)
        }
    }
}

/// Reading part rows.
enum PartRows {
    static func fetch(_ connection: SQLiteConnection, resourceID: Int64, uploadID: String?) throws -> [PartRecord] {
        guard let uploadID else { return [] }
        return try connection.query(
            """
            SELECT upload_id, part_number, size, etag, checksum_crc32c, checksum_sha256, recorded_at
            FROM resource_parts WHERE resource_id = ? AND upload_id = ? ORDER BY part_number
            """, [.integer(resourceID), .text(uploadID)]
        ) { row in
            PartRecord(
                uploadID: row.text(0), partNumber: row.int(1), size: row.int64(2), etag: row.text(3),
                checksumCRC32C: row.optionalText(4), checksumSHA256: row.optionalText(5), recordedAt: row.int64(6))
        }
    }
}
