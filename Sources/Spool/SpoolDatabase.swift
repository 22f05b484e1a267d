import Dispatch
import Synchronization

/// The spool index's SQLite connection, confined to one serial dispatch queue (as GRDB's `SerializedDatabase`).
///
/// SQLite calls block — on disk, on fsync, on another process's lock — so they run on this queue's thread, never on
/// Swift's cooperative pool; callers await them through a continuation.
final class SpoolDatabase: @unchecked Sendable {
    // @unchecked: `connection` is only ever touched on `queue`, which runs one block at a time.
    private let queue: DispatchQueue
    private let connection: SQLiteConnection

    private let checkpointer: WALCheckpointer

    init(path: String, busyTimeoutMilliseconds: Int32) throws {
        queue = DispatchQueue(label: "pipeline-storage.spool-index")
        connection = try SQLiteConnection(path: path, create: true, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
        checkpointer = WALCheckpointer(path: path, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
        connection.delegateCheckpoints(to: checkpointer)
    }

    deinit {
        // Closing the last connection checkpoints the WAL and fsyncs: on the connection's queue, not on whatever
        // thread (often one of Swift's task pool) let go of the spool last.
        // nonisolated(unsafe): the connection moves to its queue; nothing else refers to it any more.
        nonisolated(unsafe) let connection = connection
        let checkpointer = checkpointer
        queue.async { withExtendedLifetime((connection, checkpointer)) {} }
    }

    /// Runs `body` on the connection's queue and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try body(self.connection) })
            }
        }
    }

    /// Runs `body` on the connection's queue, blocking the caller. Only for opening and for synchronous tools.
    func runBlocking<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        try queue.sync { try body(connection) }
    }

    /// Schedules `body` on the connection's queue without waiting, after `delay` when given.
    func schedule(after delay: DispatchTimeInterval? = nil, _ body: @escaping @Sendable (SQLiteConnection) -> Void) {
        if let delay {
            queue.asyncAfter(deadline: .now() + delay) { body(self.connection) }
        } else {
            queue.async { body(self.connection) }
        }
    }
}

/// Runs WAL checkpoints on its own connection and thread, so that writers' commits only append to the WAL and fsync
/// it; copying pages back into the database (and its fsync) happens beside them.
final class WALCheckpointer: @unchecked Sendable {
    // @unchecked: `connection` is only touched on `queue`; `requested` is guarded by its lock.
    /// WAL size (pages) at which a background checkpoint is requested: SQLite's default automatic threshold.
    static let backgroundPages: Int32 = 1000
    /// WAL size (pages) at which the committing connection checkpoints itself after all.
    static let inlinePages: Int32 = 16_000

    private let queue = DispatchQueue(label: "pipeline-storage.spool-checkpoint", qos: .utility)
    private let path: String
    private let busyTimeoutMilliseconds: Int32
    private var connection: SQLiteConnection?
    private let requested = Mutex(false)

    init(path: String, busyTimeoutMilliseconds: Int32) {
        self.path = path
        self.busyTimeoutMilliseconds = busyTimeoutMilliseconds
    }

    /// Called from the WAL hook after a commit; schedules one checkpoint if none is pending.
    func requestCheckpoint() {
        let alreadyRequested = requested.withLock { requested in
            defer { requested = true }
            return requested
        }
        guard !alreadyRequested else { return }
        queue.async { [self] in
            requested.withLock { $0 = false }
            if connection == nil {
                connection = try? SQLiteConnection(
                    path: path, create: false, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
            }
            // A failure here is not lost work: the WAL keeps every frame, and the committing connection checkpoints
            // inline once the WAL reaches `inlinePages`.
            connection?.checkpointPassive()
        }
    }
}
