import CSQLite

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A value bound to a statement parameter. SQL text is never built from values: every value goes through here.
enum SQLiteValue {
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
    /// Bytes SQLite reads in place (no copy): the memory must stay valid until the statement has run. `execute`
    /// resets the statement before it returns, so a buffer that outlives the call is enough.
    case borrowedBlob(UnsafeRawBufferPointer)
    case null

    static func int(_ value: Int) -> SQLiteValue { .integer(Int64(value)) }
    static func optionalText(_ value: String?) -> SQLiteValue { value.map { .text($0) } ?? .null }
    static func optionalInt(_ value: Int?) -> SQLiteValue { value.map { .integer(Int64($0)) } ?? .null }
    static func optionalInt64(_ value: Int64?) -> SQLiteValue { value.map { .integer($0) } ?? .null }
}

/// One SQLite connection, opened in WAL mode with extended result codes and a busy timeout.
///
/// Owns the raw handle and its prepared statements; never hands the pointer out. Not thread-safe: a connection is
/// confined to the serial queue of one `SpoolDatabase`.
final class SQLiteConnection {
    private let handle: OpaquePointer
    private var statements: [String: SQLiteStatement] = [:]
    private var walHookOwner: Unmanaged<WALCheckpointer>?
    let path: String
    private let busyTimeoutMilliseconds: Int32

    /// Process-wide SQLite settings, applied once before the first connection: no memory statistics (a global mutex
    /// taken by every allocation, for counters the spool never reads).
    private static let configured: Void = { _ = pipeline_sqlite_disable_memory_statistics() }()

    /// Opens (creating if asked) the database at `path`.
    init(path: String, create: Bool, busyTimeoutMilliseconds: Int32) throws {
        _ = SQLiteConnection.configured
        var raw: OpaquePointer?
        var flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        if create { flags |= SQLITE_OPEN_CREATE }
        let result = sqlite3_open_v2(path, &raw, flags, nil)
        guard result == SQLITE_OK, let raw else {
            let message = raw.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let raw { sqlite3_close_v2(raw) }
            throw SpoolError(
                .spoolUnwritable,
                "could not open the spool index '\(path)': \(message); check that the directory exists, is writable "
                    + "and is on a local filesystem",
                underlying: SQLiteResultError(code: result, message: message))
        }
        self.handle = raw
        self.path = path
        self.busyTimeoutMilliseconds = busyTimeoutMilliseconds
        sqlite3_extended_result_codes(raw, 1)
        // A plain timeout, never a spinning busy handler: SQLite sleeps and retries until the lock is free.
        sqlite3_busy_timeout(raw, busyTimeoutMilliseconds)
    }

    deinit {
        statements.removeAll()  // finalize before closing
        sqlite3_close_v2(handle)
        walHookOwner?.release()
    }

    /// Hands WAL checkpoints to `checkpointer` instead of running them inside this connection's commits (replaces
    /// SQLite's automatic checkpoint, which is itself a WAL hook).
    func delegateCheckpoints(to checkpointer: WALCheckpointer) {
        let owner = Unmanaged.passRetained(checkpointer)
        walHookOwner?.release()
        walHookOwner = owner
        sqlite3_wal_hook(
            handle,
            { context, database, _, pages in
                let checkpointer = Unmanaged<WALCheckpointer>.fromOpaque(context!).takeUnretainedValue()
                if pages >= WALCheckpointer.inlinePages {
                    // The background checkpointer is not keeping up (or cannot run): checkpoint here rather than
                    // let the WAL grow without bound.
                    sqlite3_wal_checkpoint_v2(database, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
                } else if pages >= WALCheckpointer.backgroundPages {
                    checkpointer.requestCheckpoint()
                }
                return SQLITE_OK
            }, owner.toOpaque())
    }

    /// Switches the database to WAL mode, returning the mode SQLite reports.
    ///
    /// Changing the journal mode needs the database to itself, and SQLite answers `SQLITE_BUSY` at once, without
    /// the busy handler, when another connection is using it: several processes creating one spool at the same
    /// moment. So this retries every few milliseconds until the busy timeout has passed.
    func enableWriteAheadLog() throws -> String? {
        let deadline = ContinuousClock.now + .milliseconds(Int64(busyTimeoutMilliseconds))
        while true {
            do {
                return try queryFirst("PRAGMA journal_mode = WAL") { $0.text(0) }
            } catch let error as SpoolError where error.code == .databaseBusy && ContinuousClock.now < deadline {
                usleep(UInt32.random(in: 2_000...10_000))
            }
        }
    }

    /// Copies WAL frames back into the database without blocking readers or writers.
    func checkpointPassive() {
        sqlite3_wal_checkpoint_v2(handle, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
    }

    /// Runs SQL text with no parameters (pragmas, migrations). Several statements may be separated by `;`.
    func executeScript(_ sql: String) throws {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let result = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if result != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? lastErrorMessage
            sqlite3_free(errorMessage)
            throw makeError(result, message: message, sql: sql)
        }
    }

    /// Returns the cached prepared statement for `sql`, reset and with its bindings cleared.
    func statement(_ sql: String) throws -> SQLiteStatement {
        if let cached = statements[sql] {
            cached.reset()
            return cached
        }
        var raw: OpaquePointer?
        let result = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &raw, nil)
        guard result == SQLITE_OK, let raw else { throw makeError(result, message: lastErrorMessage, sql: sql) }
        let statement = SQLiteStatement(raw, connection: self)
        statements[sql] = statement
        return statement
    }

    /// Runs a statement that returns no rows; returns the number of rows changed.
    @discardableResult
    func execute(_ sql: String, _ values: [SQLiteValue] = []) throws -> Int {
        let statement = try statement(sql)
        try statement.bind(values)
        defer { statement.reset() }
        while try statement.step() {}
        return Int(sqlite3_changes64(handle))
    }

    /// Runs a query and maps each row.
    func query<Row>(_ sql: String, _ values: [SQLiteValue] = [], _ map: (SQLiteRow) throws -> Row) throws -> [Row] {
        let statement = try statement(sql)
        try statement.bind(values)
        var rows: [Row] = []
        while try statement.step() {
            rows.append(try map(SQLiteRow(statement: statement)))
        }
        return rows
    }

    /// Runs a query and maps its first row, if any.
    func queryFirst<Row>(_ sql: String, _ values: [SQLiteValue] = [], _ map: (SQLiteRow) throws -> Row) throws -> Row? {
        let statement = try statement(sql)
        try statement.bind(values)
        defer { statement.reset() }
        guard try statement.step() else { return nil }
        return try map(SQLiteRow(statement: statement))
    }

    /// The rowid of the last inserted row.
    var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    /// Runs `body` in a transaction. `BEGIN IMMEDIATE` takes the write lock up front, so two writers never deadlock
    /// upgrading a read lock; a throw rolls everything back.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            // A failed COMMIT may already have rolled back; ROLLBACK then reports "no transaction", which is fine.
            if sqlite3_get_autocommit(handle) == 0 { _ = try? execute("ROLLBACK") }
            throw error
        }
    }

    /// Runs `body` in a transaction whose COMMIT does not wait for the WAL to reach the disk (`synchronous =
    /// NORMAL` for this one transaction; the connection's setting is put back after it).
    ///
    /// Only for rows that are hints, rebuilt from elsewhere when lost. Such a commit survives the process being
    /// killed (its WAL frames are written before COMMIT returns; only the fsync is skipped), and any later fsynced
    /// commit makes it durable too, because the WAL is one sequence; only a power loss or kernel crash before then
    /// can undo it, and then it is undone whole.
    func transactionWithoutSync<T>(_ body: () throws -> T) throws -> T {
        try execute("PRAGMA synchronous = NORMAL")
        let result = Result { try transaction(body) }
        // Every other commit on this connection relies on FULL: a failure to put it back is an error, not a log line.
        try execute("PRAGMA synchronous = FULL")
        return try result.get()
    }

    /// Runs `body` inside a savepoint: a throw undoes only what `body` did, the enclosing transaction goes on.
    func savepoint<T>(_ body: () throws -> T) throws -> T {
        try execute("SAVEPOINT item")
        do {
            let result = try body()
            try execute("RELEASE item")
            return result
        } catch {
            _ = try? execute("ROLLBACK TO item")
            _ = try? execute("RELEASE item")
            throw error
        }
    }

    var lastErrorMessage: String { String(cString: sqlite3_errmsg(handle)) }

    func makeError(_ result: Int32, message: String, sql: String? = nil) -> SpoolError {
        let primary = result & 0xFF
        let cause = SQLiteResultError(code: result, message: message)
        switch primary {
        case SQLITE_BUSY, SQLITE_LOCKED:
            return SpoolError(
                .databaseBusy,
                "the spool index '\(path)' stayed locked by another process past the busy timeout; retry, or look for "
                    + "a stuck process holding it", underlying: cause)
        case SQLITE_CORRUPT, SQLITE_NOTADB:
            return SpoolError(
                .corrupt,
                "the spool index '\(path)' is damaged (\(message)); stop writers and drainers, keep a copy of the "
                    + "spool directory and restore spool.db from a backup ('spool-inspect verify' reports what an index "
                    + "that still opens holds; payload files under data/ are separate)", underlying: cause)
        case SQLITE_FULL:
            return SpoolError(
                .spoolFull, "the disk holding the spool index '\(path)' is full; free space and retry",
                underlying: cause)
        case SQLITE_IOERR where [ENOSPC, EDQUOT].contains(sqlite3_system_errno(handle)):
            // ENOSPC from an fsync or from growing the shared-memory file: SQLite reports an I/O error, but the
            // remedy is the one for a full disk.
            return SpoolError(
                .spoolFull, "the disk holding the spool index '\(path)' is full (\(message)); free space and retry",
                underlying: cause)
        case SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_PERM:
            return SpoolError(
                .spoolUnwritable,
                "the spool index '\(path)' cannot be written: \(message); check ownership and permissions",
                underlying: cause)
        default:
            return SpoolError(.database, "spool index error: \(message)", underlying: cause)
        }
    }
}

@available(*, unavailable)
extension SQLiteConnection: Sendable {}

/// SQLite's result code and message, as the cause of a `SpoolError`.
public struct SQLiteResultError: Error, Sendable, CustomStringConvertible {
    /// The extended result code.
    public var code: Int32
    /// SQLite's message.
    public var message: String

    /// The message and the code.
    public var description: String { "SQLite \(code): \(message)" }

    /// `SQLITE_FULL`: a write found no room, and the statement (or the commit) was undone whole.
    var isDiskFull: Bool { code & 0xFF == SQLITE_FULL }
}

/// A prepared statement, cached by its connection and finalized when the connection closes.
final class SQLiteStatement {
    fileprivate let handle: OpaquePointer
    private unowned let connection: SQLiteConnection

    init(_ handle: OpaquePointer, connection: SQLiteConnection) {
        self.handle = handle
        self.connection = connection
    }

    deinit { sqlite3_finalize(handle) }

    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    func bind(_ values: [SQLiteValue]) throws {
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let result: Int32
            switch value {
            case .integer(let number): result = sqlite3_bind_int64(handle, index, number)
            case .real(let number): result = sqlite3_bind_double(handle, index, number)
            case .text(let text): result = sqlite3_bind_text(handle, index, text, -1, pipeline_sqlite_transient())
            case .blob(let bytes):
                result = bytes.withUnsafeBytes { buffer in
                    // A zero-length blob must still be a blob, not NULL: bind a zeroblob for it.
                    guard let base = buffer.baseAddress, !buffer.isEmpty else {
                        return sqlite3_bind_zeroblob(handle, index, 0)
                    }
                    return sqlite3_bind_blob64(
                        handle, index, base, sqlite3_uint64(buffer.count), pipeline_sqlite_transient())
                }
            case .borrowedBlob(let buffer):
                if let base = buffer.baseAddress, !buffer.isEmpty {
                    result = sqlite3_bind_blob64(handle, index, base, sqlite3_uint64(buffer.count), nil)
                } else {
                    result = sqlite3_bind_zeroblob(handle, index, 0)
                }
            case .null: result = sqlite3_bind_null(handle, index)
            }
            guard result == SQLITE_OK else {
                throw connection.makeError(result, message: connection.lastErrorMessage)
            }
        }
    }

    /// Advances to the next row: `true` when a row is available, `false` when done.
    func step() throws -> Bool {
        let result = sqlite3_step(handle)
        switch result {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            let message = connection.lastErrorMessage
            sqlite3_reset(handle)
            throw connection.makeError(result, message: message)
        }
    }
}

@available(*, unavailable)
extension SQLiteStatement: Sendable {}

/// The current row of a statement, read by column index.
struct SQLiteRow {
    fileprivate let statement: SQLiteStatement

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(statement.handle, column) == SQLITE_NULL }
    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(statement.handle, column) }
    func int(_ column: Int32) -> Int { Int(sqlite3_column_int64(statement.handle, column)) }
    func optionalInt(_ column: Int32) -> Int? { isNull(column) ? nil : int(column) }
    func optionalInt64(_ column: Int32) -> Int64? { isNull(column) ? nil : int64(column) }
    func double(_ column: Int32) -> Double { sqlite3_column_double(statement.handle, column) }

    func text(_ column: Int32) -> String {
        guard let pointer = sqlite3_column_text(statement.handle, column) else { return "" }
        let length = Int(sqlite3_column_bytes(statement.handle, column))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: length), as: UTF8.self)
    }

    func optionalText(_ column: Int32) -> String? { isNull(column) ? nil : text(column) }

    func blob(_ column: Int32) -> [UInt8] {
        let length = Int(sqlite3_column_bytes(statement.handle, column))
        guard length > 0, let pointer = sqlite3_column_blob(statement.handle, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: length))
    }
}
