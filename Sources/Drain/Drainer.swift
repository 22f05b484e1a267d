import Foundation
import Logging
import S3
import Spool
import Synchronization

/// How a drainer behaves.
public struct DrainOptions: Sendable {
    /// Resources delivered at once (and the bound on concurrent transfers: objects and parts).
    public var concurrency = 8
    /// How long a claim is leased (at most `SpoolStore.maximumLeaseDuration`); renewed every third of it, timed by
    /// the monotonic clock, while the delivery runs.
    public var leaseDuration: Duration = .seconds(60)
    /// How often to look for due work when nothing wakes the drainer sooner.
    public var pollInterval: Duration = .milliseconds(500)
    /// Stop when nothing is due and nothing is in flight (`--once`).
    public var once = false
    /// Stop when nothing is pending or uploading any more, waiting for backoffs (`--until-done`).
    public var untilDone = false
    /// Keep payloads of delivered resources (`spool-inspect purge` removes them later).
    public var retainDelivered = false
    /// On stop: how long in-flight deliveries may take to finish before they are cancelled and released.
    public var gracePeriod: Duration = .seconds(30)
    /// How often a paused destination is probed.
    public var pausedRecheck: Duration = .seconds(30)
    /// Unreferenced payload files younger than this are left alone (a writer may be between rename and commit).
    public var orphanFileMinimumAge: Duration = .seconds(600)
    /// How often orphan files and uploads are swept.
    public var orphanSweepInterval: Duration = .seconds(600)
    /// The longest per-resource backoff (at most `SpoolStore.maximumBackoff`).
    public var maximumRetryDelay: Duration = .seconds(900)

    /// Default options.
    public init() {}
}

/// What a drainer has done, for the progress line and the exit summary.
public struct DrainProgress: Sendable, Equatable {
    /// Resources delivered.
    public var delivered = 0
    /// Their bytes.
    public var deliveredBytes: Int64 = 0
    /// Resources that failed for good.
    public var failed = 0
    /// Retries scheduled.
    public var retriesScheduled = 0
    /// Times a destination was paused.
    public var pauses = 0
    /// Leases lost to another drainer.
    public var leasesLost = 0
    /// Deliveries running now.
    public var inFlight = 0
    /// Orphan payload files removed.
    public var orphanFilesRemoved = 0
    /// Orphan multipart uploads aborted.
    public var orphanUploadsAborted = 0
}

/// The delivery engine: claims due resources, delivers them with `ResourceDelivery`, renews leases, sweeps orphans,
/// and stops gracefully.
public final class Drainer: Sendable {
    /// Makes the object store of a destination.
    public typealias StoreResolver = @Sendable (DestinationRecord) throws -> any ObjectStore

    private struct InFlight {
        var token: Int64
        var task: Task<Void, Never>
    }

    private struct State {
        var inFlight: [Int64: InFlight] = [:]
        var stopping = false
        /// Each destination's store and options, with the options JSON they were made from.
        var stores: [Int64: (store: any ObjectStore, options: StorageOptions, json: String)] = [:]
        var progress = DrainProgress()
    }

    private let spool: SpoolStore
    private let options: DrainOptions
    private let resolveStore: StoreResolver
    private let logger: Logger
    private let state = Mutex(State())
    private let wakeup = Wakeup()
    private let transfers: AsyncSemaphore
    private let bucketSetup: BucketSetupCoordinator
    /// This drainer's lease owner name (`host/pid/nonce`).
    public let owner = SpoolStore.leaseOwnerName()
    /// What this drainer counts (uploads by result, bytes, durations, retries, ...), for the metrics exporters.
    public let metrics: DrainMetrics

    /// A drainer for a spool.
    ///
    /// - Parameters:
    ///   - spool: The spool to deliver.
    ///   - options: How to behave.
    ///   - logger: Where to log.
    ///   - metrics: Where to count what happens (a new set by default).
    ///   - resolveStore: Makes the object store of a destination.
    public init(
        spool: SpoolStore, options: DrainOptions, logger: Logger, metrics: DrainMetrics = DrainMetrics(),
        resolveStore: @escaping StoreResolver
    ) {
        self.spool = spool
        self.options = options
        self.logger = logger
        self.metrics = metrics
        self.resolveStore = resolveStore
        self.transfers = AsyncSemaphore(permits: max(1, options.concurrency))
        self.bucketSetup = BucketSetupCoordinator(spool: spool, owner: owner, logger: logger)
    }

    /// What the drainer has done so far.
    public var progress: DrainProgress { state.withLock { $0.progress } }

    /// Asks the drainer to stop: no new claims; deliveries in flight get the grace period to finish.
    public func stop() {
        state.withLock { $0.stopping = true }
        wakeup.signal()
    }

    /// Runs until stopped (or, with `once`/`untilDone`, until the work is done).
    ///
    /// - Throws: `SpoolError` when the spool cannot be read at all: `.corrupt` when the index is damaged (after the
    ///   deliveries in flight have finished).
    public func run() async throws -> DrainProgress {
        try await spool.recheckPausedDestinations()
        await sweepOrphans()
        var lastRenewal = ContinuousClock.now
        var lastSweep = ContinuousClock.now
        var headroomReleasedAt: ContinuousClock.Instant?
        let renewEvery = options.leaseDuration / 3
        while !state.withLock({ $0.stopping }) {
            let free = options.concurrency - state.withLock { $0.inFlight.count }
            var claimed = 0
            if free > 0 {
                do {
                    let claims = try await claimDue(limit: free, headroomReleasedAt: &headroomReleasedAt)
                    claimed = claims.count
                    for claim in claims { start(claim) }
                } catch let error as SpoolError where error.code == .corrupt {
                    // A damaged index does not heal: claiming again every poll would only repeat this. Let the
                    // deliveries in flight finish, then stop with the error (spool-drain exits 76).
                    logger.critical("spool index damaged; stopping", metadata: ["error": "\(error)"])
                    await finishInFlight()
                    throw error
                } catch {
                    logger.error("claim failed", metadata: ["error": "\(error)"])
                }
            }
            if let released = headroomReleasedAt, ContinuousClock.now - released >= Self.headroomRestoreInterval {
                if await spool.ensureHeadroom() {
                    headroomReleasedAt = nil
                    logger.info("spool headroom restored")
                } else {
                    headroomReleasedAt = ContinuousClock.now
                }
            }
            if claimed == 0, state.withLock({ $0.inFlight.isEmpty }) {
                if options.once { break }
                if options.untilDone, try await nothingLeft() { break }
            }
            if ContinuousClock.now - lastRenewal >= renewEvery {
                await renewLeases()
                lastRenewal = ContinuousClock.now
            }
            if ContinuousClock.now - lastSweep >= options.orphanSweepInterval {
                await sweepOrphans()
                lastSweep = ContinuousClock.now
            }
            if claimed == 0 || claimed == free {
                await wakeup.wait(timeout: min(options.pollInterval, renewEvery))
            }
        }
        await finishInFlight()
        if headroomReleasedAt != nil, await spool.ensureHeadroom() { logger.info("spool headroom restored") }
        return progress
    }

    /// More unreferenced payload files than this at once are not removed by the orphan sweep: crashed writers leave a
    /// few, so that many means the index lost rows, and the files are the only copy of those resources.
    public static let orphanFileRemovalLimit = 100

    /// How often a drainer that released the spool's headroom tries to make it again.
    static let headroomRestoreInterval: Duration = .seconds(5)

    /// Claims due work. On a full disk (the claim could not commit) it releases the spool's headroom, so that this
    /// commit and the deliveries' records fit while delivered payloads are removed, and tries once more.
    private func claimDue(limit: Int, headroomReleasedAt: inout ContinuousClock.Instant?) async throws
        -> [DeliveryClaim]
    {
        let claim = { [self] in
            // Never a resource this drainer is still delivering, even when its lease ran out while the process was
            // stalled: a second delivery beside the first would hold a second transfer slot, and the first would no
            // longer be tracked, renewed or cancelled.
            let delivering = Set(state.withLock { $0.inFlight.keys })
            return try await spool.claimDue(
                owner: owner, limit: limit, leaseDuration: options.leaseDuration, pausedRecheck: options.pausedRecheck,
                excluding: delivering)
        }
        do {
            return try await claim()
        } catch let error as SpoolError where error.code == .spoolFull {
            guard await spool.releaseHeadroom() else { throw error }
            headroomReleasedAt = ContinuousClock.now
            logger.warning(
                "disk full; spool headroom released so that deliveries can free space",
                metadata: ["bytes": "\(SpoolLayout.headroomBytes)"])
            return try await claim()
        }
    }

    private func nothingLeft() async throws -> Bool {
        let status = try await spool.status()
        let open = status.resources.filter { $0.state == "pending" || $0.state == "uploading" }.reduce(0) {
            $0 + $1.count
        }
        // A `_bundle.json` held back by a failed resource cannot become due until an operator retries it: waiting for
        // it would never end.
        guard open == 0 else { return false }
        if status.manifestsPending == 0 { return true }
        return try await spool.manifestsStillDeliverable() == 0
    }

    private func start(_ claim: DeliveryClaim) {
        let started = ContinuousClock.now
        if claim.reclaimedFrom != nil { metrics.leaseReclaimed() }
        let resolved: (any ObjectStore, StorageOptions)
        do {
            resolved = try store(for: claim.destination)
        } catch {
            metrics.record(.paused, kind: claim.resource.kind, duration: ContinuousClock.now - started)
            logger.error(
                "destination unusable",
                metadata: ["destination": "\(claim.destination.spec.displayName)", "error": "\(error)"])
            Task {
                try? await spool.pauseDestination(
                    claim.destination.id, code: "InvalidConfiguration", message: "\(error)",
                    recheck: options.pausedRecheck)
                try? await spool.releaseClaim(id: claim.resource.id, token: claim.token, reason: "destination unusable")
            }
            return
        }
        let delivery = ResourceDelivery(
            claim: claim, spool: spool, store: resolved.0, options: resolved.1, drain: options, transfers: transfers,
            bucketSetup: bucketSetup, metrics: metrics, logger: logger)
        let id = claim.resource.id
        let kind = claim.resource.kind
        state.withLock { state in
            state.progress.inFlight += 1
            metrics.inFlight(state.progress.inFlight)
            let task = Task { [self] in
                let outcome = await delivery.run()
                metrics.record(outcome, kind: kind, duration: ContinuousClock.now - started)
                finished(id, token: claim.token, outcome: outcome)
            }
            state.inFlight[id] = InFlight(token: claim.token, task: task)
        }
    }

    private func finished(_ id: Int64, token: Int64, outcome: DeliveryOutcome) {
        state.withLock { state in
            if state.inFlight[id]?.token == token { state.inFlight[id] = nil }
            state.progress.inFlight = state.inFlight.count
            metrics.inFlight(state.progress.inFlight)
            switch outcome {
            case .delivered(let bytes):
                state.progress.delivered += 1
                state.progress.deliveredBytes += bytes
            case .failed: state.progress.failed += 1
            case .retryScheduled: state.progress.retriesScheduled += 1
            case .paused: state.progress.pauses += 1
            case .leaseLost: state.progress.leasesLost += 1
            case .released: break
            }
        }
        wakeup.signal()
    }

    private func store(for destination: DestinationRecord) throws -> (any ObjectStore, StorageOptions) {
        // Every claim carries the destination as recorded now: options a writer changed since are picked up (and the
        // bucket set-up applied again) without a restart.
        if let cached = state.withLock({ $0.stores[destination.id] }), cached.json == destination.spec.optionsJSON {
            return (cached.store, cached.options)
        }
        // Options that cannot be read pause the destination (the caller's catch): delivering with defaults would
        // silently drop the encryption, storage class or bucket set-up the writer asked for.
        let options = try StorageOptions.decode(
            json: destination.spec.optionsJSON, destination: destination.spec.displayName)
        let resolved = (try resolveStore(destination), options)
        state.withLock { $0.stores[destination.id] = (resolved.0, resolved.1, destination.spec.optionsJSON) }
        return resolved
    }

    private func renewLeases() async {
        let claims = state.withLock { state in state.inFlight.map { (id: $0.key, token: $0.value.token) } }
        guard !claims.isEmpty else { return }
        do {
            let lost = try await spool.renewLeases(claims, leaseDuration: options.leaseDuration)
            for id in lost {
                logger.warning("lease lost; stopping that delivery", metadata: ["resource": "\(id)"])
                state.withLock { $0.inFlight[id]?.task }?.cancel()
            }
        } catch {
            logger.error("lease renewal failed", metadata: ["error": "\(error)"])
        }
    }

    /// Removes payload files no row references, and aborts multipart uploads this spool started that no row
    /// references any more.
    private func sweepOrphans() async {
        do {
            let files = try await spool.orphanPayloadFiles(minimumAge: options.orphanFileMinimumAge)
            if files.count > Self.orphanFileRemovalLimit {
                // Crashed writers leave a few; this many means the index lost rows (a damaged or truncated WAL,
                // a restored backup), and these files are the only copy of those resources.
                logger.error(
                    "many payload files no resource refers to; kept (the index may have lost rows)",
                    metadata: ["count": "\(files.count)", "see": "spool-inspect verify"])
            } else if !files.isEmpty {
                await spool.removePayloadFiles(files)
                state.withLock { $0.progress.orphanFilesRemoved += files.count }
                metrics.orphanFilesRemoved(files.count)
                logger.info("orphan payload files removed", metadata: ["count": "\(files.count)"])
            }
            for upload in try await spool.orphanedUploads() {
                guard let destination = try await spool.destinations().first(where: { $0.id == upload.destinationID })
                else { continue }
                let store = try store(for: destination).0
                do {
                    try await store.abortUpload(key: upload.key, uploadID: upload.uploadID)
                } catch let error as ObjectStoreError where error.kind == .noSuchUpload {}
                try await spool.recordUploadFinished(upload.uploadID, outcome: "aborted")
                state.withLock { $0.progress.orphanUploadsAborted += 1 }
                metrics.orphanUploadAborted()
                logger.info(
                    "orphan multipart upload aborted",
                    metadata: ["key": "\(upload.key)", "upload_id": "\(upload.uploadID)"])
            }
        } catch {
            logger.warning("orphan sweep incomplete", metadata: ["error": "\(error)"])
        }
    }

    /// Lets deliveries in flight finish within the grace period, then cancels the rest (they release their claims).
    private func finishInFlight() async {
        let deadline = ContinuousClock.now + options.gracePeriod
        while !state.withLock({ $0.inFlight.isEmpty }), ContinuousClock.now < deadline {
            await wakeup.wait(timeout: .milliseconds(100))
        }
        let remaining = state.withLock { state in state.inFlight.values.map(\.task) }
        if !remaining.isEmpty {
            logger.warning(
                "grace period over; cancelling deliveries in flight", metadata: ["count": "\(remaining.count)"])
        }
        for task in remaining { task.cancel() }
        for task in remaining { await task.value }
    }
}

/// A counting semaphore for async code: bounds concurrent transfers.
///
/// Waiting for a permit is cancellable: a delivery cancelled while it waits (its lease was lost, the drainer is
/// stopping) gives up its place at once instead of holding on until a transfer ends.
final class AsyncSemaphore: Sendable {
    private struct State {
        var available: Int
        var waiters: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
        var nextWaiter: UInt64 = 0
        /// Waiters cancelled before they were queued (the cancellation handler can run first).
        var cancelledEarly: Set<UInt64> = []
    }

    private let state: Mutex<State>

    init(permits: Int) { state = Mutex(State(available: permits)) }

    /// Permits free now.
    var availablePermits: Int { state.withLock { $0.available } }

    /// Tasks waiting for a permit now.
    var waitingCount: Int { state.withLock { $0.waiters.count } }

    /// Runs `body` holding a permit.
    ///
    /// - Throws: `CancellationError` when the task is cancelled before it gets a permit; what `body` throws.
    func withPermit<T>(_ body: () async throws -> T) async throws -> T {
        try await acquire()
        defer { release() }
        try Task.checkCancellation()
        return try await body()
    }

    private func acquire() async throws {
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        // A cancellation that came after the permit was granted leaves its mark unread: drop it.
        defer { state.withLock { _ = $0.cancelledEarly.remove(id) } }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let granted = state.withLock { state -> Bool? in
                    if state.cancelledEarly.remove(id) != nil { return nil }
                    if state.available > 0 {
                        state.available -= 1
                        return true
                    }
                    state.waiters.append((id, continuation))
                    return false
                }
                switch granted {
                case true?: continuation.resume()
                case nil: continuation.resume(throwing: CancellationError())
                case false?: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
                if let index = state.waiters.firstIndex(where: { $0.id == id }) {
                    return state.waiters.remove(at: index).continuation
                }
                // Not queued: either not yet (it will see this mark) or already granted.
                state.cancelledEarly.insert(id)
                return nil
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    private func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            if state.waiters.isEmpty {
                state.available += 1
                return nil
            }
            return state.waiters.removeFirst().continuation
        }
        next?.resume()
    }
}

/// Wakes a waiting loop early: a signal before the wait makes the next wait return at once.
final class Wakeup: Sendable {
    private struct State {
        var signalled = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.signalled = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    func wait(timeout: Duration) async {
        let timer = Task { [self] in
            // Cancelled (the wait ended early): no signal, or the next wait would return at once, and the one after
            // it, and so on — a drainer spinning through claim transactions instead of waiting.
            do { try await Task.sleep(for: timeout) } catch { return }
            signal()
        }
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state -> Bool in
                if state.signalled {
                    state.signalled = false
                    return true
                }
                state.waiter = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
        timer.cancel()
    }
}
