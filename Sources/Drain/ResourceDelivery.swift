import Dispatch
import Foundation
import Hashing
import Logging
import S3
import Spool

/// How one delivery ended; the codes are value-free (they become metric labels).
enum DeliveryOutcome: Sendable {
    case delivered(bytes: Int64)
    case retryScheduled(code: String)
    case failed(code: String)
    case paused
    case leaseLost
    case released
}

/// Delivers one claimed resource (SPEC §5): verifies the payload against what the writer recorded, writes it with
/// create-only-if-absent (one PUT, or a multipart upload that resumes from what the store holds), settles a taken key
/// by HEAD and compare, and records the outcome — only while the claim's fencing token still holds.
///
/// A single-PUT payload is read and checked (size, SHA-256, CRC32C) before anything is sent. A multipart payload is
/// checked for size first, then read part by part as the parts are sent; its whole CRC32C, combined from the parts'
/// (and the recorded ones of parts the store already holds), must match the writer's before the upload is completed:
/// the upload of a damaged file is aborted, never completed into an object.
struct ResourceDelivery {
    let claim: DeliveryClaim
    let spool: SpoolStore
    let store: any ObjectStore
    let options: StorageOptions
    let drain: DrainOptions
    let transfers: AsyncSemaphore
    let bucketSetup: BucketSetupCoordinator
    let metrics: DrainMetrics
    let logger: Logger
    /// When the delivery began, for the duration in its log line.
    let started = ContinuousClock.now

    var resource: ResourceRecord { claim.resource }
    var token: Int64 { claim.token }

    func run() async -> DeliveryOutcome {
        do {
            return try await deliver()
        } catch let error as ObjectStoreError {
            return await handle(error)
        } catch let error as SpoolError where error.code == .leaseLost {
            logger.warning("lease lost", metadata: ["resource": "\(resource.id)", "key": "\(resource.objectKey)"])
            return .leaseLost
        } catch is CancellationError {
            do {
                try await spool.releaseClaim(id: resource.id, token: token, reason: "drainer stopping")
                return .released
            } catch {
                // Cancelled because the lease moved to another drainer: nothing of ours to release.
                return .leaseLost
            }
        } catch let error as PayloadError {
            return await record(failure: error.code, message: error.message)
        } catch {
            return await retryOrFail(code: "internal-error", message: "\(error)")
        }
    }

    // MARK: Delivery

    private func deliver() async throws -> DeliveryOutcome {
        try await bucketSetup.ensure(claim, store: store, options: options)
        let payload = try await preparePayload()
        let write = ObjectWrite(
            key: resource.objectKey, body: payload.body, size: payload.size, sha256: payload.sha256,
            crc32c: payload.crc32c, contentType: resource.contentType, metadata: objectMetadata(sha256: payload.sha256))
        if let plan = payload.multipart {
            return try await deliverMultipart(write, plan: plan)
        }
        do {
            let stored = try await transfers.withPermit { try await store.put(write) }
            return try await delivered(stored, bytes: payload.size)
        } catch let error as ObjectStoreError where error.kind == .alreadyExists {
            return try await settleTakenKey(size: payload.size, sha256: payload.sha256)
        }
    }

    private func deliverMultipart(_ write: ObjectWrite, plan: MultipartPlan) async throws -> DeliveryOutcome {
        var uploadID = resource.uploadID
        var held: [Int: StoredPart] = [:]
        if let existing = uploadID {
            do {
                for part in try await store.listParts(key: write.key, uploadID: existing) { held[part.number] = part }
            } catch let error as ObjectStoreError where error.kind == .noSuchUpload {
                // Aborted, or completed by an earlier attempt whose answer was lost: the object decides.
                let settled = try await deliveredIfOurs(size: write.size, sha256: write.sha256, sweeping: write.key)
                if let settled { return settled }
                try await spool.forgetUpload(id: resource.id, token: token, outcome: "gone")
                uploadID = nil
            }
        }
        if uploadID == nil {
            try await abortLeftoverUploads(key: write.key)
            let created = try await store.createUpload(for: write)
            try await spool.recordUploadStarted(
                id: resource.id, token: token, uploadID: created, partSize: plan.partSize)
            uploadID = created
            held = [:]
        }
        let upload = uploadID!
        let missing = plan.parts.filter { held[$0.number]?.size != $0.length }
        if !held.isEmpty {
            logger.info(
                "multipart upload resumed",
                metadata: [
                    "resource": "\(resource.id)", "key": "\(write.key)", "parts_held": "\(held.count)",
                    "parts_missing": "\(missing.count)",
                ])
        }
        var sent: [Int: StoredPart] = [:]
        var checksums: [Int: UInt32] = [:]
        do {
            // Parts recorded for this upload, by number: looked up once per held part (up to 10,000).
            let recorded = Dictionary(
                claim.parts.filter { $0.uploadID == upload }.map { ($0.partNumber, $0) }, uniquingKeysWith: { $1 })
            for part in plan.parts where held[part.number]?.size == part.length {
                checksums[part.number] = try await heldPartChecksum(part, plan: plan, record: recorded[part.number])
            }
            let digests = PartDigests(path: plan.path, parts: missing)
            try await withThrowingTaskGroup(of: (StoredPart, UInt32).self) { group in
                for part in missing {
                    group.addTask { [self] in
                        try await sendPart(part, plan: plan, digests: digests, key: write.key, uploadID: upload)
                    }
                }
                for try await (part, checksum) in group {
                    sent[part.number] = part
                    checksums[part.number] = checksum
                }
            }
            try checkWholePayload(plan, checksums: checksums)
        } catch let damage as PayloadError {
            // The file changed since it was written: the parts sent from it must never become an object.
            do {
                try await store.abortUpload(key: write.key, uploadID: upload)
            } catch let gone as ObjectStoreError where gone.kind == .noSuchUpload {
                // Already gone: nothing left to abort.
            } catch {
                // Kept on the resource's record: a later attempt lists its parts, and checks the whole CRC32C again.
                logger.warning(
                    "multipart upload of a damaged payload not aborted; it stays recorded with the resource",
                    metadata: ["resource": "\(resource.id)", "key": "\(write.key)", "error": "\(error)"])
                throw damage
            }
            try await spool.forgetUpload(id: resource.id, token: token, outcome: "aborted")
            throw damage
        }
        let parts = plan.parts.map { part -> StoredPart in
            var stored = sent[part.number] ?? held[part.number]!
            // A CRC32C upload needs every part's checksum in the completion: the ones the whole-file check used.
            stored.checksumCRC32C = CRC32C(resuming: checksums[part.number]!).base64BigEndian
            return stored
        }
        do {
            let stored = try await transfers.withPermit {
                try await store.completeUpload(key: write.key, uploadID: upload, parts: parts)
            }
            return try await delivered(stored, bytes: write.size, sweeping: write.key)
        } catch let error as ObjectStoreError where error.kind == .alreadyExists {
            try? await store.abortUpload(key: write.key, uploadID: upload)
            try await spool.forgetUpload(id: resource.id, token: token, outcome: "aborted")
            return try await settleTakenKey(size: write.size, sha256: write.sha256, sweeping: write.key)
        } catch let error as ObjectStoreError where error.kind == .noSuchUpload {
            if let outcome = try await deliveredIfOurs(size: write.size, sha256: write.sha256, sweeping: write.key) {
                return outcome
            }
            try await spool.forgetUpload(id: resource.id, token: token, outcome: "gone")
            throw ObjectStoreError(.transient, code: "NoSuchUpload", message: "the upload vanished before completion")
        } catch let error as ObjectStoreError where error.kind == .conflict {
            // A concurrent conditional write collided: start over with a new upload next time.
            try? await store.abortUpload(key: write.key, uploadID: upload)
            try await spool.forgetUpload(id: resource.id, token: token, outcome: "aborted")
            throw error
        }
    }

    /// Gets a part's SHA-256 and CRC32C, sends it, and records it; returns what the store answered and the part's
    /// CRC32C. The digest is taken inside the transfer permit, right before the send (hashed then, with the part it
    /// is paired with, or already hashed by that part's task), so the part is likely still in the page cache.
    private func sendPart(
        _ part: PartPlan, plan: MultipartPlan, digests: PartDigests, key: String, uploadID: String
    ) async throws -> (StoredPart, UInt32) {
        let (stored, sha256, crc32c) = try await transfers.withPermit {
            let digest = try await digests.digest(of: part)
            let stored = try await store.uploadPart(
                key: key, uploadID: uploadID, number: part.number,
                body: .file(path: plan.path, offset: part.offset, length: part.length), crc32c: digest.crc32c,
                sha256: digest.sha256)
            return (stored, digest.sha256, digest.crc32c)
        }
        try await spool.recordPart(
            id: resource.id, token: token,
            part: PartRecord(
                uploadID: uploadID, partNumber: part.number, size: part.length, etag: stored.etag,
                checksumCRC32C: CRC32C(resuming: crc32c).base64BigEndian, checksumSHA256: sha256,
                recordedAt: Int64(Date().timeIntervalSince1970 * 1000)))
        metrics.partUploaded()
        return (stored, crc32c)
    }

    /// The CRC32C of a part the store already holds: the one recorded when it was sent, or — when the drainer that
    /// sent it was killed before recording it — read from the file.
    private func heldPartChecksum(_ part: PartPlan, plan: MultipartPlan, record: PartRecord?) async throws -> UInt32 {
        if let record, record.size == part.length,
            let recorded = record.checksumCRC32C.flatMap(CRC32C.init(base64BigEndian:))
        {
            return recorded.value
        }
        return try await PayloadReader.crc32c(path: plan.path, offset: part.offset, length: part.length)
    }

    /// The parts' checksums combined must be the writer's CRC32C of the whole payload, and their sizes its size.
    ///
    /// - Throws: `PayloadError` `corrupt-payload` when they are not.
    private func checkWholePayload(_ plan: MultipartPlan, checksums: [Int: UInt32]) throws {
        var whole = CRC32C()
        var size: Int64 = 0
        for part in plan.parts {
            whole.append(checksum: checksums[part.number]!, length: part.length)
            size += part.length
        }
        guard size == resource.size, whole.value == resource.crc32c else {
            throw PayloadError.corrupt(
                resource, actualSize: size,
                actualDigest: "crc32c \(String(whole.value, radix: 16)) vs \(String(resource.crc32c, radix: 16))")
        }
    }

    /// Uploads for this key that no resource records (a drainer killed between CreateMultipartUpload and recording
    /// the id left them): aborted before a new one starts.
    private func abortLeftoverUploads(key: String) async throws {
        for uploadID in try await store.listUploads(key: key) where try await !spool.isLiveUpload(uploadID) {
            do {
                try await store.abortUpload(key: key, uploadID: uploadID)
            } catch let error as ObjectStoreError where error.kind == .noSuchUpload {}
            try await spool.recordUploadFinished(uploadID, outcome: "aborted")
            metrics.orphanUploadAborted()
            logger.info("leftover multipart upload aborted", metadata: ["key": "\(key)", "upload_id": "\(uploadID)"])
        }
    }

    /// The key is taken: ours from an earlier attempt whose answer was lost (same size and SHA-256) → done;
    /// anything else → failed with `conflict`, and the existing object is left as it is.
    private func settleTakenKey(size: Int64, sha256: String, sweeping key: String? = nil) async throws
        -> DeliveryOutcome
    {
        if let outcome = try await deliveredIfOurs(size: size, sha256: sha256, sweeping: key) { return outcome }
        guard let existing = try await store.head(key: resource.objectKey) else {
            throw ObjectStoreError(.transient, code: "KeyVanished", message: "the key was taken, then gone on HEAD")
        }
        return await record(
            failure: "conflict",
            message: "a different object already exists at \(resource.objectKey) (size \(existing.size), sha256 "
                + "\(existing.sha256 ?? "unknown")); it was left untouched — delete or move it, then retry this resource"
        )
    }

    private func deliveredIfOurs(size: Int64, sha256: String, sweeping key: String? = nil) async throws
        -> DeliveryOutcome?
    {
        guard let existing = try await store.head(key: resource.objectKey), existing.size == size,
            existing.sha256 == sha256
        else { return nil }
        return try await delivered(
            StoredObject(etag: existing.etag, versionID: existing.versionID), bytes: size,
            note: "already in place: an earlier attempt succeeded and its answer was lost", sweeping: key)
    }

    /// Records the delivery. `key`, for a multipart delivery: first every upload of that key the spool does not
    /// track is aborted — a CreateMultipartUpload whose answer was lost (and that the client retried) left one no row
    /// records. Before the record, not after it: a drainer killed in between leaves the row to a later attempt,
    /// which finds the object in place and sweeps again; once recorded, nothing would look at the key any more.
    private func delivered(_ stored: StoredObject, bytes: Int64, note: String? = nil, sweeping key: String? = nil)
        async throws -> DeliveryOutcome
    {
        if let key {
            do {
                try await abortLeftoverUploads(key: key)
            } catch {
                logger.warning(
                    "leftover multipart uploads not swept",
                    metadata: ["resource": "\(resource.id)", "key": "\(key)", "error": "\(error)"])
            }
        }
        try await spool.recordDelivered(
            id: resource.id, token: token, etag: stored.etag, versionID: stored.versionID,
            retainPayload: drain.retainDelivered, note: note)
        if claim.isProbe { try await spool.resumeDestination(resource.destinationID) }
        logger.info(
            "resource delivered",
            metadata: [
                "resource": "\(resource.id)", "bundle": "\(resource.bundleID)", "key": "\(resource.objectKey)",
                "bytes": "\(bytes)", "attempt": "\(resource.attempts + 1)",
                "ms": "\((ContinuousClock.now - started).totalMilliseconds)",
            ])
        return .delivered(bytes: bytes)
    }

    // MARK: Failures

    private func handle(_ error: ObjectStoreError) async -> DeliveryOutcome {
        switch error.kind {
        case .configuration:
            do {
                try await spool.pauseDestination(
                    resource.destinationID, code: error.code, message: error.message, recheck: drain.pausedRecheck)
                try await spool.releaseClaim(id: resource.id, token: token, reason: "destination paused: \(error.code)")
            } catch {
                logger.error("could not record a pause", metadata: ["error": "\(error)"])
            }
            logger.warning(
                "destination paused",
                metadata: [
                    "destination": "\(store.displayName)", "error_code": "\(error.code)", "message": "\(error.message)",
                ])
            return .paused
        case .permanent:
            return await record(failure: error.code, message: error.message)
        case .transient, .conflict, .noSuchUpload, .alreadyExists:
            return await retryOrFail(code: error.code, message: error.message)
        }
    }

    private func retryOrFail(code: String, message: String) async -> DeliveryOutcome {
        let attempt = resource.attempts + 1
        guard attempt < options.maxRetries else {
            return await record(failure: code, message: "gave up after \(attempt) attempts: \(message)")
        }
        let delay = Backoff.delay(afterAttempt: attempt, options: options, cap: drain.maximumRetryDelay)
        do {
            try await spool.recordRetry(id: resource.id, token: token, code: code, message: message, delay: delay)
        } catch {
            logger.error("could not schedule a retry", metadata: ["resource": "\(resource.id)", "error": "\(error)"])
            return .leaseLost
        }
        logger.notice(
            "retry scheduled",
            metadata: [
                "resource": "\(resource.id)", "key": "\(resource.objectKey)", "attempt": "\(attempt)",
                "error_code": "\(code)", "ms": "\(delay.totalMilliseconds)",
            ])
        return .retryScheduled(code: code)
    }

    private func record(failure code: String, message: String) async -> DeliveryOutcome {
        do {
            try await spool.recordFailed(id: resource.id, token: token, code: code, message: message)
        } catch {
            logger.error("could not record a failure", metadata: ["resource": "\(resource.id)", "error": "\(error)"])
            return .leaseLost
        }
        logger.error(
            "resource failed",
            metadata: [
                "resource": "\(resource.id)", "key": "\(resource.objectKey)", "error_code": "\(code)",
                "message": "\(message)",
            ])
        return .failed(code: code)
    }

    // MARK: Payload

    struct PreparedPayload {
        var body: PayloadBody
        var size: Int64
        var sha256: String
        var crc32c: UInt32
        /// Set when the payload goes up as a multipart upload.
        var multipart: MultipartPlan?
    }

    /// Reads the payload back and checks it against what the writer recorded: a damaged spool file is never sent as
    /// one PUT, and never completed as a multipart upload (those are checked part by part as they are sent, and the
    /// size here, before anything is).
    private func preparePayload() async throws -> PreparedPayload {
        switch resource.payloadStorage {
        case _ where resource.kind == .manifest:
            let bytes = try await spool.manifestPayload(id: resource.id, token: token)
            let digest = PayloadDigest.compute(bytes)
            return PreparedPayload(
                body: .bytes(bytes), size: Int64(bytes.count), sha256: digest.sha256, crc32c: digest.crc32c)
        case .inline:
            let bytes: [UInt8]
            do {
                bytes = try await spool.inlinePayload(id: resource.id)
            } catch let error as SpoolError where error.code == .corrupt {
                // The bytes sit on a damaged page of the index (or are gone): this resource cannot be delivered, the
                // others can.
                throw PayloadError(
                    code: "corrupt-payload",
                    message: "the inline payload of resource \(resource.id) cannot be read from the index: "
                        + "\(error.message); it was not uploaded")
            }
            let digest = PayloadDigest.compute(bytes)
            guard Int64(bytes.count) == resource.size, digest.sha256 == resource.sha256 else {
                throw PayloadError.corrupt(
                    resource, actualSize: Int64(bytes.count),
                    actualDigest: "sha256 \(digest.sha256) vs \(resource.sha256)")
            }
            return PreparedPayload(
                body: .bytes(bytes), size: resource.size, sha256: resource.sha256, crc32c: digest.crc32c)
        case .file:
            guard let relative = resource.payloadPath else { throw PayloadError.missing(resource, path: "(none)") }
            let path = spool.layout.root + "/" + relative
            if store.supportsMultipart && resource.size >= options.multipartThresholdBytes {
                let size = try await PayloadReader.size(path: path)
                guard size == resource.size else {
                    throw PayloadError.corrupt(resource, actualSize: size, actualDigest: "contents not read")
                }
                let partSize = Self.partSize(size: size, chunk: options.multipartChunkSizeBytes)
                return PreparedPayload(
                    body: .file(path: path, offset: 0, length: size), size: size, sha256: resource.sha256,
                    crc32c: resource.crc32c, multipart: MultipartPlan(path: path, size: size, partSize: partSize))
            }
            let verified = try await PayloadReader.digestFile(path: path)
            guard verified.size == resource.size, verified.crc32c == resource.crc32c, verified.sha256 == resource.sha256
            else {
                throw PayloadError.corrupt(
                    resource, actualSize: verified.size,
                    actualDigest: "sha256 \(verified.sha256) vs \(resource.sha256)")
            }
            return PreparedPayload(
                body: .file(path: path, offset: 0, length: verified.size), size: verified.size,
                sha256: resource.sha256, crc32c: verified.crc32c)
        case .pending, .removed:
            throw PayloadError.missing(resource, path: "(payload \(resource.payloadStorage.rawValue))")
        }
    }

    /// The part size: the configured chunk, raised (to whole MiB) to stay within 10,000 parts.
    static func partSize(size: Int64, chunk: Int64) -> Int64 {
        let mebibyte: Int64 = 1 << 20
        let needed = (size + 9_999) / 10_000
        let raised = max(chunk, (needed + mebibyte - 1) / mebibyte * mebibyte)
        return raised
    }

    /// The object's `x-amz-meta-*` (SPEC §4). The URL is percent-encoded where it is not ASCII; a URL that would
    /// push the metadata past S3's 2 KB is left out (the full URL is in `_bundle.json`).
    func objectMetadata(sha256: String) -> [String: String] {
        if resource.kind == .manifest {
            return ["sha256": sha256, "bundle-id": resource.bundleID, "kind": "bundle-manifest"]
        }
        var metadata = [
            "status-code": String(resource.statusCode), "sha256": sha256, "bundle-id": resource.bundleID,
            "seq": String(resource.seq), "spooled-at": BundleManifest.isoTimestamp(resource.spooledAt),
        ]
        let url = Self.percentEncodingNonASCII(resource.url)
        let used = metadata.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }
        if used + "url".utf8.count + url.utf8.count <= UserMetadata.maximumBytes {
            metadata["url"] = url
        } else {
            metadata["url-omitted"] = "too-long"
        }
        return metadata
    }

    static func percentEncodingNonASCII(_ text: String) -> String {
        var output = ""
        for byte in text.utf8 {
            if byte >= 0x20 && byte < 0x7F {
                output.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                output += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return output
    }
}

/// A damaged or missing spool payload: the resource fails, nothing is uploaded.
struct PayloadError: Error {
    var code: String
    var message: String

    static func corrupt(_ resource: ResourceRecord, actualSize: Int64, actualDigest: String) -> PayloadError {
        PayloadError(
            code: "corrupt-payload",
            message: "the spooled payload of resource \(resource.id) no longer matches what was written (size "
                + "\(actualSize) vs \(resource.size), \(actualDigest)); it was not uploaded. Check the disk, then "
                + "write the resource again")
    }

    static func missing(_ resource: ResourceRecord, path: String) -> PayloadError {
        PayloadError(
            code: "payload-missing",
            message: "the spooled payload of resource \(resource.id) is missing (\(path)); it was not uploaded")
    }
}

/// How a multipart payload is cut into parts.
struct MultipartPlan: Sendable {
    /// The spool file.
    var path: String
    /// Every part but the last has this many bytes.
    var partSize: Int64
    var parts: [PartPlan]

    init(path: String, size: Int64, partSize: Int64) {
        self.path = path
        self.partSize = partSize
        // A payload of no bytes is still one (empty) part.
        parts = stride(from: Int64(0), to: max(size, 1), by: Int(partSize)).enumerated().map { index, offset in
            PartPlan(number: index + 1, offset: offset, length: min(partSize, size - offset))
        }
    }
}

/// One part of a multipart upload: a range of the payload file.
struct PartPlan: Sendable {
    var number: Int
    var offset: Int64
    var length: Int64
}

/// Per-resource backoff: exponential with full jitter between `retryDelay` and a cap, never beyond the cap (a larger
/// `retryDelay` is cut to it).
enum Backoff {
    static func delay(afterAttempt attempt: Int, options: StorageOptions, cap: Duration) -> Duration {
        let capSeconds = Double(cap.components.seconds) + Double(cap.components.attoseconds) / 1e18
        let base = min(max(0.001, options.retryDelaySeconds), max(0.001, capSeconds))
        guard options.exponentialBackoff else { return .milliseconds(Int64(base * 1000)) }
        let ceiling = min(base * pow(2, Double(min(attempt, 40))), capSeconds)
        let seconds = Double.random(in: base...max(base, ceiling))
        return .milliseconds(Int64(seconds * 1000))
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

extension Duration {
    /// The duration in whole milliseconds, for logs.
    var totalMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
