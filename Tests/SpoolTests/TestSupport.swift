import CSQLite
import Foundation
@_exported import SpoolTestSupport  // expectSpoolError, for every file of this target
import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

// MARK: Temporary directories

/// A fresh directory under the system's temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        path =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("spool-tests-\(UUID().uuidString)", isDirectory: true).path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() async {
        // A test may have made parts read-only; give them back before removing.
        _ = chmod(path, 0o700)
        await removeDirectory(path)
    }
}

/// Runs `body` with a new temporary directory and removes it afterwards, whether `body` returns or throws.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let directory = try TemporaryDirectory()
    do {
        let result = try await body(directory.path)
        await directory.remove()
        return result
    } catch {
        await directory.remove()
        throw error
    }
}

// MARK: Files

/// The permission bits of `path` (`st_mode & 0o7777`), or nil when it does not exist.
func permissionBits(_ path: String) -> mode_t? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return info.st_mode & 0o7777
}

/// Whether anything (a file, a directory, a dangling symlink) is at `path`.
func fileExists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
}

/// The names in a directory, sorted; empty when it does not exist.
func directoryEntries(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
}

/// One in-memory buffer as an async sequence of one chunk.
struct OneChunk: AsyncSequence, Sendable {
    typealias Element = [UInt8]
    let bytes: [UInt8]

    struct AsyncIterator: AsyncIteratorProtocol {
        var bytes: [UInt8]?
        mutating func next() async -> [UInt8]? {
            defer { bytes = nil }
            return bytes
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(bytes: bytes.isEmpty ? nil : bytes) }
}

// MARK: Errors

// MARK: Raw SQLite

/// A plain SQLite connection to a spool index, independent of the Spool module's own connection: for looking at what
/// the spool wrote and for simulating other processes.
final class RawDatabase {
    private let handle: OpaquePointer

    init(_ path: String) throws {
        var raw: OpaquePointer?
        let result = sqlite3_open_v2(path, &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil)
        guard result == SQLITE_OK, let raw else {
            if let raw { sqlite3_close_v2(raw) }
            throw RawDatabaseError(message: "open \(path): \(result)")
        }
        handle = raw
        sqlite3_busy_timeout(raw, 10_000)
    }

    deinit { sqlite3_close_v2(handle) }

    func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let result = sqlite3_exec(handle, sql, nil, nil, &message)
        defer { sqlite3_free(message) }
        guard result == SQLITE_OK else {
            throw RawDatabaseError(message: "\(sql): \(message.map { String(cString: $0) } ?? "\(result)")")
        }
    }

    /// Every row of a query, each column as text (nil for NULL).
    func rows(_ sql: String) throws -> [[String?]] {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw RawDatabaseError(message: "\(sql): \(String(cString: sqlite3_errmsg(handle)))")
        }
        defer { sqlite3_finalize(statement) }
        var rows: [[String?]] = []
        while true {
            let result = sqlite3_step(statement)
            if result == SQLITE_DONE { break }
            guard result == SQLITE_ROW else {
                throw RawDatabaseError(message: "\(sql): \(String(cString: sqlite3_errmsg(handle)))")
            }
            rows.append(
                (0..<sqlite3_column_count(statement)).map { column in
                    sqlite3_column_text(statement, column).map { String(cString: $0) }
                })
        }
        return rows
    }

    /// The first column of the first row.
    func scalar(_ sql: String) throws -> String? {
        try rows(sql).first?.first ?? nil
    }
}

struct RawDatabaseError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

// MARK: Spool helpers

/// A spool with one registered S3 destination.
struct TestSpool {
    let directory: String
    let store: SpoolStore
    let destinationID: Int64

    init(_ directory: String, options: SpoolOptions = SpoolOptions()) async throws {
        self.directory = directory
        store = try SpoolStore.open(directory, options: options)
        destinationID = try await store.registerDestination(try .s3(bucket: "test-bucket", region: "us-east-1"))
    }

    @discardableResult
    func openBundle(_ id: String, prefix: String = "data/", metadata: [String: String] = [:]) async throws
        -> BundleRecord
    {
        try await store.openBundle(id, destinationID: destinationID, keyPrefix: prefix, metadata: metadata)
    }

    @discardableResult
    func write(
        _ bytes: [UInt8], to bundleID: String, url: String = "https://example.com/r.bin",
        contentType: String = "application/octet-stream", metadata: [String: String] = [:]
    ) async throws -> SpooledResource {
        try await store.writeResource(
            bundleID: bundleID,
            draft: ResourceDraft(url: url, contentType: contentType, statusCode: 200, metadata: metadata),
            chunks: OneChunk(bytes: bytes))
    }
}
