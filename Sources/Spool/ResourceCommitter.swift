import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A resource whose bytes are durable (a published payload file, or bytes held for the index), ready to become
/// visible.
struct CommitItem: Sendable {
    enum Payload: Sendable {
        case inline([UInt8])
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

/// Makes resources visible in the index: the commit that makes a resource exist.
///
/// `.fsync`: each resource in its own transaction on the spool's main connection (`synchronous = FULL`: the commit
/// fsyncs the WAL).
///
/// `.batched(maxDelay:)`: group commit in two stages, as databases do it. Stage one, on a connection of its own with
/// `synchronous = NORMAL`, commits every resource waiting into one transaction, which only appends to the WAL. Stage
/// two, on the syncer's thread, runs one `fdatasync` of the WAL for every commit made since the previous one, and only
/// then resumes their writers: a writer still returns only once its resource is durable, but the index thread is
/// never blocked on the disk, so commits and fsyncs overlap. A commit starts when every writer in flight in this
/// process is parked (waiting to commit or to sync), or after `maxDelay`.
///
/// Rows committed in stage one are visible to other connections before their fsync. Anything that acts on a row
/// outside the spool (the drainer uploading it) must first commit its own claim with `synchronous = FULL`: that fsync
/// persists every earlier WAL frame, the writer's included.
final class ResourceCommitter: Sendable {
    private struct Waiter {
        var item: CommitItem
        var continuation: CheckedContinuation<SpooledResource, any Error>
    }

    private struct Committed {
        var waiter: Waiter
        var resource: SpooledResource
    }

    private struct State {
        var waiting: [Waiter] = []
        var awaitingSync: [Committed] = []
        var writersInFlight = 0
        var immediateCommitQueued = false
        var delayedCommitQueued = false
        var syncRunning = false
    }

    private enum Trigger {
        case immediate
        case delayed
    }

    private struct GroupCommit: Sendable {
        var database: SpoolDatabase
        var maxDelay: Duration
        var walPath: String
    }

    private let state = Mutex(State())
    private let mainDatabase: SpoolDatabase
    private let group: GroupCommit?
    private let syncQueue = DispatchQueue(label: "pipeline-storage.wal-sync")
    private let walDescriptor = Mutex<Int32>(-1)
    private let dataDirectory: String
    private let clock: any SpoolClock
    private let identity: ActorIdentity

    init(
        database: SpoolDatabase, durability: Durability, databasePath: String, busyTimeoutMilliseconds: Int32,
        dataDirectory: String, clock: any SpoolClock, identity: ActorIdentity
    ) throws {
        self.mainDatabase = database
        switch durability {
        case .fsync:
            group = nil
        case .batched(let delay):
            let groupDatabase = try SpoolDatabase(path: databasePath, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
            try groupDatabase.runBlocking { connection in
                try connection.executeScript("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            }
            group = GroupCommit(database: groupDatabase, maxDelay: delay, walPath: databasePath + "-wal")
        }
        self.dataDirectory = dataDirectory
        self.clock = clock
        self.identity = identity
    }

    deinit {
        let descriptor = walDescriptor.withLock { $0 }
        if descriptor >= 0 { close(descriptor) }
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
        guard group != nil else {
            let dataDirectory = self.dataDirectory
            let now = clock.nowMilliseconds()
            let identity = self.identity
            return try await mainDatabase.run { connection in
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
        if state.waiting.count + state.awaitingSync.count >= state.writersInFlight {
            guard !state.immediateCommitQueued else { return nil }
            state.immediateCommitQueued = true
            return .immediate
        }
        guard !state.delayedCommitQueued else { return nil }
        state.delayedCommitQueued = true
        return .delayed
    }

    private func schedule(_ trigger: Trigger) {
        guard let group else { return }
        switch trigger {
        case .immediate:
            group.database.schedule { connection in self.commitWaiting(connection, trigger: .immediate) }
        case .delayed:
            let delay = DispatchTimeInterval.microseconds(Int(clamping: group.maxDelay.milliseconds * 1000))
            group.database.schedule(after: delay) { connection in self.commitWaiting(connection, trigger: .delayed) }
        }
    }

    /// Stage one, on the group-commit connection's queue: commits everything waiting in one transaction.
    private func commitWaiting(_ connection: SQLiteConnection, trigger: Trigger) {
        let batch = state.withLock { state -> [Waiter] in
            switch trigger {
            case .immediate: state.immediateCommitQueued = false
            case .delayed: state.delayedCommitQueued = false
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
        var committed: [Committed] = []
        for (waiter, result) in zip(batch, results) {
            switch result {
            case .success(let resource): committed.append(Committed(waiter: waiter, resource: resource))
            case .failure(let error): waiter.continuation.resume(throwing: error)
            }
        }
        guard !committed.isEmpty else { return }
        let startSync = state.withLock { state -> Bool in
            state.awaitingSync += committed
            defer { state.syncRunning = true }
            return !state.syncRunning
        }
        if startSync { syncQueue.async { self.syncCommitted() } }
    }

    /// Stage two, on the syncer's queue: one fdatasync of the WAL makes every commit before it durable.
    private func syncCommitted() {
        while true {
            let batch = state.withLock { state -> [Committed] in
                defer { state.awaitingSync.removeAll(keepingCapacity: true) }
                if state.awaitingSync.isEmpty { state.syncRunning = false }
                return state.awaitingSync
            }
            guard !batch.isEmpty else { return }
            let failure = synchronizeWAL()
            for committed in batch {
                if let failure {
                    committed.waiter.continuation.resume(throwing: failure)
                } else {
                    committed.waiter.continuation.resume(returning: committed.resource)
                }
            }
        }
    }

    private func synchronizeWAL() -> SpoolError? {
        guard let walPath = group?.walPath else { return nil }
        return walDescriptor.withLock { descriptor -> SpoolError? in
            if descriptor < 0 {
                descriptor = open(walPath, O_RDONLY | O_CLOEXEC)
                if descriptor < 0 {
                    return SpoolError.io("open the spool's write-ahead log", path: walPath, call: "open")
                }
            }
            guard fdatasync(descriptor) == 0 else {
                // The resources are committed but their durability is unknown: say so rather than guess.
                return SpoolError.io(
                    "fsync the spool's write-ahead log (the resource may or may not survive a power loss; check with "
                        + "spool-inspect before writing it again)", path: walPath, call: "fdatasync")
            }
            return nil
        }
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
                results.append(.success(try insert(item, run: run, connection: connection, now: now, identity: identity)))
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
        if case .inline(let bytes) = item.payload {
            try connection.execute(
                "INSERT INTO payloads (resource_id, bytes) VALUES (?, ?)", [.integer(id), .blob(bytes)])
        }
        try Audit.append(
            connection, at: now, identity: identity, action: "resource.spooled", bundleID: item.bundleID,
            resourceID: id, detail: ["to": ResourceState.pending.rawValue, "size": String(item.size)])
        return SpooledResource(
            id: id, bundleID: item.bundleID, seq: seq, objectKey: key, size: item.size, sha256: item.sha256,
            crc32c: item.crc32c, spooledAt: now)
    }
}

