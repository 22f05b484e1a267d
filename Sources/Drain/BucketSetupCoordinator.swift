import Logging
import Spool
import Synchronization

/// Applies each destination's bucket set-up once, before its first delivery (SPEC §6), and again only when its
/// options or its bundles' prefixes change.
///
/// What was applied is recorded in the spool (fingerprint and time, and a `destination.bucket_configured` audit
/// event), so a later drainer — or another one on the same spool — skips it. Deliveries to a destination whose
/// set-up is being applied wait for it; a failure is thrown to every one of them (a configuration error pauses the
/// destination; a transient one is retried with the resource).
final class BucketSetupCoordinator: Sendable {
    private struct Applied {
        var fingerprint: String
        var options: StorageOptions
        var prefixes: Set<String>
    }

    private struct State {
        var applied: [Int64: Applied] = [:]
        var running: [Int64: (task: Task<Applied, any Error>, options: StorageOptions)] = [:]
    }

    private let spool: SpoolStore
    private let owner: String
    private let logger: Logger
    private let state = Mutex(State())

    init(spool: SpoolStore, owner: String, logger: Logger) {
        self.spool = spool
        self.owner = owner
        self.logger = logger
    }

    /// Makes sure the claim's destination is set up; returns at once when this drainer already applied (or found)
    /// the set-up for these options, covering the claim's prefix.
    ///
    /// - Throws: `ObjectStoreError` from the set-up (`configuration`: pause; `transient`: retry), `SpoolError`.
    func ensure(_ claim: DeliveryClaim, store: any ObjectStore, options: StorageOptions) async throws {
        guard claim.destination.spec.kind == .s3, let configurable = store as? any BucketConfigurable else { return }
        let id = claim.destination.id
        let prefix = ObjectKey.prefix(ofKey: claim.resource.objectKey, bundleID: claim.resource.bundleID)
        // Joins a set-up in progress; one started for other options (changed meanwhile) is waited for, then the
        // check is made again.
        while true {
            let joined = state.withLock { state -> (task: Task<Applied, any Error>, current: Bool)? in
                if let applied = state.applied[id], applied.options == options, let prefix,
                    applied.prefixes.contains(prefix)
                {
                    return nil
                }
                if let running = state.running[id] { return (running.task, running.options == options) }
                let task = Task { [self] in
                    try await apply(claim.destination, options: options, store: configurable)
                }
                state.running[id] = (task, options)
                return (task, true)
            }
            guard let (task, current) = joined else { return }
            do {
                let applied = try await task.value
                state.withLock { state in
                    state.applied[id] = applied
                    if state.running[id]?.task == task { state.running[id] = nil }
                }
            } catch {
                state.withLock { state in
                    if state.running[id]?.task == task { state.running[id] = nil }
                }
                if current { throw error }
            }
            if current { return }
        }
    }

    private func apply(_ destination: DestinationRecord, options: StorageOptions, store: any BucketConfigurable)
        async throws -> Applied
    {
        let prefixes = try await spool.keyPrefixes(destinationID: destination.id)
        let setup: BucketSetup
        do {
            setup = try BucketSetup(bucket: destination.spec.location, options: options, prefixes: prefixes)
        } catch let error as SpoolError {
            throw ObjectStoreError(
                .configuration, code: "InvalidConfiguration",
                message: "the bucket set-up of \(destination.spec.displayName) is not valid: \(error.message)")
        }
        let fingerprint = try setup.fingerprint()
        let applied = Applied(fingerprint: fingerprint, options: options, prefixes: Set(prefixes))
        if try await spool.bucketSetupRecord(destinationID: destination.id)?.fingerprint == fingerprint {
            return applied
        }
        let started = ContinuousClock.now
        let steps: [String]
        do {
            steps = try await store.applyBucketSetup(setup, logger: logger)
        } catch let error as ObjectStoreError {
            logger.error(
                "bucket set-up failed",
                metadata: [
                    "destination": "\(destination.spec.displayName)", "error_code": "\(error.code)",
                    "message": "\(error.message)",
                ])
            throw error
        }
        try await spool.recordBucketSetup(
            destinationID: destination.id, fingerprint: fingerprint, settings: setup.settings, appliedBy: owner)
        var metadata: Logger.Metadata = [
            "destination": "\(destination.spec.displayName)", "steps": "\(steps.joined(separator: ","))",
            "ms": "\((ContinuousClock.now - started).totalMilliseconds)",
        ]
        for (key, value) in setup.settings where key != "bucket" { metadata[key] = "\(value)" }
        logger.notice("bucket configured", metadata: metadata)
        return applied
    }
}
