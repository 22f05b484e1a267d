import Foundation
import PipelineStorage
import Synchronization
@_exported import SpoolTestSupport  // expectSpoolError, for every file of this target
import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

// MARK: Temporary spools

/// A fresh directory under the system's temporary directory for one test's spool, removed by `remove()`.
struct TemporarySpool {
    /// The directory holding the spool (and anything else the test needs).
    let base: String
    /// The spool directory itself (created by the first `PipelineStorage`).
    var path: String { base + "/spool" }
    var temporaryDirectory: String { path + "/tmp" }
    var dataDirectory: String { path + "/data" }
    var databasePath: String { path + "/spool.db" }

    init() throws {
        base =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("pipeline-storage-tests-\(UUID().uuidString)", isDirectory: true).path
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
    }

    func remove() async {
        await removeDirectory(base)
    }

    /// Storage delivering to `test-bucket` through this spool.
    func storage(
        prefix: String = "data/", options: StorageOptions = StorageOptions(),
        spoolOptions: SpoolOptions = SpoolOptions()
    ) throws -> PipelineStorage {
        try PipelineStorage(
            bucket: "test-bucket", prefix: prefix, region: "us-east-1", options: options, spool: .directory(path),
            spoolOptions: spoolOptions)
    }

    /// Payload files in `tmp/` (writes in progress or leaked).
    var temporaryFiles: [String] { directoryEntries(temporaryDirectory) }
    /// Payload files in `data/`.
    var dataFiles: [String] { directoryEntries(dataDirectory) }

    /// A second, independent connection to the index, as another process (the drainer, an operator) would have.
    func secondConnection() throws -> SQLiteConnection {
        try SQLiteConnection(path: databasePath, create: false, busyTimeoutMilliseconds: 10_000)
    }
}

/// Runs `body` with a new temporary spool directory and removes it afterwards, whether `body` returns or throws.
func withTemporarySpool<T>(_ body: (TemporarySpool) async throws -> T) async throws -> T {
    let spool = try TemporarySpool()
    do {
        let result = try await body(spool)
        await spool.remove()
        return result
    } catch {
        await spool.remove()
        throw error
    }
}

/// The names in a directory, sorted; empty when it does not exist.
func directoryEntries(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
}

func fileExists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
}

// MARK: Bytes

/// `bytes` cut into chunks whose sizes cycle through awkward values (1 byte, primes, just over 64 KiB, ...).
func oddChunks(_ bytes: [UInt8]) -> [[UInt8]] {
    let sizes = [1, 7, 4093, 65_537, 3, 333_333, 65_535, 1_048_577, 17]
    var chunks: [[UInt8]] = []
    var start = 0
    var index = 0
    while start < bytes.count {
        let end = min(bytes.count, start + sizes[index % sizes.count])
        chunks.append(Array(bytes[start..<end]))
        start = end
        index += 1
    }
    return chunks
}

/// An async stream of the given chunks, finished after the last.
func chunkStream(_ chunks: [[UInt8]]) -> AsyncStream<[UInt8]> {
    AsyncStream { continuation in
        for chunk in chunks { continuation.yield(chunk) }
        continuation.finish()
    }
}

/// An async stream of single bytes.
func byteStream(_ bytes: [UInt8]) -> AsyncStream<UInt8> {
    AsyncStream(bufferingPolicy: .unbounded) { continuation in
        for byte in bytes { continuation.yield(byte) }
        continuation.finish()
    }
}

/// A producer's own error, to check it comes back unchanged.
struct ProducerError: Error, Equatable {
    var detail: String
}

/// Yields `failAfter` bytes in chunks, then throws `ProducerError`. Records whether a payload file was present in
/// `tmp/` when it threw, so a test can show the failure happened while a file was being written.
final class FailingChunks: AsyncSequence, @unchecked Sendable {
    // @unchecked: iterated by one task at a time; the flag is read after the write returned.
    typealias Element = [UInt8]
    let failAfter: Int
    let chunkSize: Int
    let watchedDirectory: String
    private(set) var temporaryFilesWhenFailing: [String] = []
    private(set) var bytesYielded = 0

    init(failAfter: Int, chunkSize: Int = 256 << 10, watching directory: String) {
        self.failAfter = failAfter
        self.chunkSize = chunkSize
        self.watchedDirectory = directory
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        let owner: FailingChunks

        mutating func next() async throws -> [UInt8]? {
            if owner.bytesYielded >= owner.failAfter {
                owner.temporaryFilesWhenFailing = directoryEntries(owner.watchedDirectory)
                throw ProducerError(detail: "connection reset after \(owner.bytesYielded) bytes")
            }
            let count = Swift.min(owner.chunkSize, owner.failAfter - owner.bytesYielded)
            owner.bytesYielded += count
            return [UInt8](repeating: 0xAB, count: count)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(owner: self) }
}

/// A thread-safe counter.
final class Counter: Sendable {
    private let count = Mutex(0)
    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}

// MARK: Errors

/// The resources of a bundle (no manifests), oldest first.
func resources(of bundleID: String, in storage: PipelineStorage) async throws -> [ResourceRecord] {
    try await storage.spool.listResources(ResourceFilter(bundleID: bundleID, limit: 10_000))
}
