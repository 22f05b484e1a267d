import Dispatch

/// The spool index's SQLite connection, confined to one serial dispatch queue (as GRDB's `SerializedDatabase`).
///
/// SQLite calls block — on disk, on fsync, on another process's lock — so they run on this queue's thread, never on
/// Swift's cooperative pool; callers await them through a continuation.
final class SpoolDatabase: @unchecked Sendable {
    // @unchecked: `connection` is only ever touched on `queue`, which runs one block at a time.
    private let queue: DispatchQueue
    private let connection: SQLiteConnection

    init(path: String, busyTimeoutMilliseconds: Int32) throws {
        queue = DispatchQueue(label: "pipeline-storage.spool-index")
        connection = try SQLiteConnection(path: path, create: true, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
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
