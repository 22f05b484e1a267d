import Dispatch
import Synchronization

/// A resource whose bytes are durable (a published payload file, or bytes held for the index), ready to become
/// visible.
struct CommitItem: Sendable {
    enum Payload: Sendable {
        /// Held in the writer's buffer, which the writer keeps (and does not touch) until the commit returns.
        case inline(WriteBuffer)
        case file(relativePath: String)
    }

    var bundleID: String
    var name: String
    var url: String
    var contentType: String
    var statusCode: Int
    var metadataJSON: String
    var size: Int64
    var sha256: String
    var crc32c: UInt32
    var payload: Payload
}

/// Makes resources visible in the index: the commit that makes a resource exist, and durable (the index runs with
/// `synchronous = FULL`, so COMMIT returns after the WAL is fsynced; a row is never visible before its bytes are
/// durable).
///
/// `.fsync`: each resource in its own transaction. `.batched(maxDelay:)`: group commit — every resource waiting when
/// a commit starts shares its transaction and its fsync. A commit starts as soon as every writer in flight in this
/// process is waiting on one (nobody is left to join), or after `maxDelay`, whichever comes first.
final class ResourceCommitter: Sendable {
    private struct Waiter {
        var item: CommitItem
        var continuation: CheckedContinuation<SpooledResource, any Error>
    }

    private struct State {
        var waiting: [Waiter] = []
        var writersInFlight = 0
        var immediateCommitQueued = false
        var delayedCommitQueued = false
        var statistics = CommitStatistics()
    }

    /// How group commits went, for diagnostics and tests.
    struct CommitStatistics: Sendable, Equatable {
        /// Commits started because every writer in flight was waiting.
        var immediateCommits = 0
        /// Commits started by the `maxDelay` timer.
        var delayedCommits = 0
        /// Resources committed by group commits.
        var resources = 0
    }

    /// Counts of group commits so far (zero in `.fsync` mode).
    var statistics: CommitStatistics { state.withLock { $0.statistics } }

    private enum Trigger {
        case immediate
        case delayed
    }

    private let state = Mutex(State())
    private let database: SpoolDatabase
    private let maxDelay: Duration?
    private let dataDirectory: String
    private let clock: any SpoolClock
    private let identity: ActorIdentity

    init(
        database: SpoolDatabase, durability: Durability, dataDirectory: String, clock: any SpoolClock,
        identity: ActorIdentity
    ) {
        self.database = database
        switch durability {
        case .fsync: maxDelay = nil
        case .batched(let delay): maxDelay = delay
        }
        self.dataDirectory = dataDirectory
        self.clock = clock
        self.identity = identity
    }

    /// A writer started receiving a resource: a group commit may wait for it to join.
    func writerStarted() {
        state.withLock { $0.writersInFlight += 1 }
    }

    /// A writer is done (committed, or gave up): commits no longer wait for it.
    func writerFinished() {
        let trigger = state.withLock { state -> Trigger? in
            state.writersInFlight -= 1
            return Self.trigger(for: &state)
        }
        if let trigger { schedule(trigger) }
    }

    /// Commits the item and returns once it is durable in the index.
    func commit(_ item: CommitItem) async throws -> SpooledResource {
        guard maxDelay != nil else {
            let dataDirectory = self.dataDirectory
            let now = clock.nowMilliseconds()
            let identity = self.identity
            return try await database.run { connection in
                if case .file = item.payload { try synchronizeDirectory(dataDirectory) }
                return try connection.transaction {
                    try ResourceRows.insert([item], connection: connection, now: now, identity: identity)[0]
                }.get()
            }
        }
        return try await withCheckedThrowingContinuation { continuation in
            let trigger = state.withLock { state -> Trigger? in
                state.waiting.append(Waiter(item: item, continuation: continuation))
                return Self.trigger(for: &state)
            }
            if let trigger { schedule(trigger) }
        }
    }

    /// Commit now when nobody else can join (every writer in flight is parked), else after the delay.
    private static func trigger(for state: inout State) -> Trigger? {
        guard !state.waiting.isEmpty else { return nil }
        if state.waiting.count >= state.writersInFlight {
            guard !state.immediateCommitQueued else { return nil }
            state.immediateCommitQueued = true
            return .immediate
        }
        guard !state.delayedCommitQueued else { return nil }
        state.delayedCommitQueued = true
        return .delayed
    }

    private func schedule(_ trigger: Trigger) {
        switch trigger {
        case .immediate:
            database.schedule { connection in self.commitWaiting(connection, trigger: .immediate) }
        case .delayed:
            let delay = DispatchTimeInterval.microseconds(Int(clamping: (maxDelay ?? .zero).milliseconds * 1000))
            database.schedule(after: delay) { connection in self.commitWaiting(connection, trigger: .delayed) }
        }
    }

    /// Runs on the index's queue: commits everything waiting in one transaction (one WAL fsync).
    private func commitWaiting(_ connection: SQLiteConnection, trigger: Trigger) {
        let batch = state.withLock { state -> [Waiter] in
            switch trigger {
            case .immediate: state.immediateCommitQueued = false
            case .delayed: state.delayedCommitQueued = false
            }
            if !state.waiting.isEmpty {
                switch trigger {
                case .immediate: state.statistics.immediateCommits += 1
                case .delayed: state.statistics.delayedCommits += 1
                }
                state.statistics.resources += state.waiting.count
            }
            defer { state.waiting.removeAll(keepingCapacity: true) }
            return state.waiting
        }
        guard !batch.isEmpty else { return }
        let now = clock.nowMilliseconds()
        let results: [Result<SpooledResource, any Error>]
        do {
            if batch.contains(where: { if case .file = $0.item.payload { true } else { false } }) {
                try synchronizeDirectory(dataDirectory)
            }
            results = try connection.transaction {
                try ResourceRows.insert(batch.map(\.item), connection: connection, now: now, identity: identity)
            }
        } catch {
            for waiter in batch { waiter.continuation.resume(throwing: error) }
            return
        }
        for (waiter, result) in zip(batch, results) { waiter.continuation.resume(with: result) }
    }
}

/// Writing resource rows.
enum ResourceRows {
    /// Inserts spooled resources, inside the caller's transaction. Each bundle's sequence numbers are taken with one
    /// update (numbers follow commit order, across processes too, since the transaction holds the write lock).
    ///
    /// An item whose bundle is missing or not open fails alone: that is found before anything is written for it.
    /// Any other error throws, failing the whole transaction.
    static func insert(
        _ items: [CommitItem], connection: SQLiteConnection, now: Int64, identity: ActorIdentity
    ) throws -> [Result<SpooledResource, any Error>] {
        var counts: [String: Int] = [:]
        for item in items { counts[item.bundleID, default: 0] += 1 }
        var next: [String: Result<SequenceRun, SpoolError>] = [:]
        for (bundleID, count) in counts {
            next[bundleID] = try reserveSequenceNumbers(bundleID, count: count, connection: connection, now: now)
        }
        var results: [Result<SpooledResource, any Error>] = []
        results.reserveCapacity(items.count)
        for item in items {
            switch next[item.bundleID]! {
            case .failure(let error):
                results.append(.failure(error))
            case .success(var run):
                results.append(
                    .success(try insert(item, run: run, connection: connection, now: now, identity: identity)))
                run.seq += 1
                next[item.bundleID] = .success(run)
            }
        }
        return results
    }

    /// Sequence numbers taken for one bundle in one commit.
    struct SequenceRun {
        var seq: Int
        var prefix: String
        var destinationID: Int64
    }

    /// Takes `count` sequence numbers of an open bundle.
    private static func reserveSequenceNumbers(
        _ bundleID: String, count: Int, connection: SQLiteConnection, now: Int64
    ) throws -> Result<SequenceRun, SpoolError> {
        if let run = try connection.queryFirst(
            """
            UPDATE bundles SET last_seq = last_seq + ?, updated_at = ?
            WHERE id = ? AND state = 'open'
            RETURNING last_seq, key_prefix, destination_id
            """, [.int(count), .integer(now), .text(bundleID)],
            { SequenceRun(seq: $0.int(0) - count + 1, prefix: $0.text(1), destinationID: $0.int64(2)) })
        {
            return .success(run)
        }
        if let bundle = try BundleRows.fetch(connection, id: bundleID) {
            return .failure(
                SpoolError(
                    .bundleNotOpen,
                    "bundle '\(bundleID)' is \(bundle.state.rawValue) and accepts no more resources; the resource was "
                        + "not kept: write it to an open bundle"))
        }
        return .failure(
            SpoolError(
                .bundleNotFound, "bundle '\(bundleID)' does not exist in this spool; open it before writing resources"))
    }

    private static func insert(
        _ item: CommitItem, run: SequenceRun, connection: SQLiteConnection, now: Int64, identity: ActorIdentity
    ) throws -> SpooledResource {
        let (seq, prefix, destinationID) = (run.seq, run.prefix, run.destinationID)
        let key = ObjectKey.resource(prefix: prefix, bundleID: item.bundleID, seq: seq, name: item.name)
        let storage: PayloadStorage
        let path: String?
        switch item.payload {
        case .inline: (storage, path) = (.inline, nil)
        case .file(let relativePath): (storage, path) = (.file, relativePath)
        }
        try connection.execute(
            """
            INSERT INTO resources (bundle_id, seq, kind, destination_id, object_key, name, url, content_type,
                                   status_code, metadata, size, sha256, crc32c, payload_storage, payload_path, state,
                                   next_attempt_at, spooled_at, updated_at)
            VALUES (?, ?, 'resource', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)
            """,
            [
                .text(item.bundleID), .int(seq), .integer(destinationID), .text(key), .text(item.name),
                .text(item.url), .text(item.contentType), .int(item.statusCode), .text(item.metadataJSON),
                .integer(item.size), .text(item.sha256), .integer(Int64(item.crc32c)), .text(storage.rawValue),
                .optionalText(path), .integer(now), .integer(now), .integer(now),
            ])
        let id = connection.lastInsertRowID
        if case .inline(let buffer) = item.payload {
            try connection.execute(
                "INSERT INTO payloads (resource_id, bytes) VALUES (?, ?)",
                [.integer(id), .borrowedBlob(UnsafeRawBufferPointer(start: buffer.base, count: buffer.count))])
        }
        try Audit.append(
            connection, at: now, identity: identity, action: "resource.spooled", bundleID: item.bundleID,
            resourceID: id, detail: ["to": ResourceState.pending.rawValue, "size": String(item.size)])
        return SpooledResource(
            id: id, bundleID: item.bundleID, seq: seq, objectKey: key, size: item.size, sha256: item.sha256,
            crc32c: item.crc32c, spooledAt: now)
    }
}
