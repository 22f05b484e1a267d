import Drain
import Foundation
import Hashing
import Logging
import PipelineStorage
import S3
import Synchronization
@_exported import SpoolTestSupport  // eventually, unusedPID, expectSpoolError: for every file of this target
import Testing

@testable import LocalS3Support
@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

// MARK: Local S3

/// A client for the local moto_server, signed with its IAM key (or with `secret` instead of the real one).
func localClient(_ server: LocalS3.Server, secret: String? = nil, maxAttempts: Int = 3) -> S3Client {
    localClient(
        server,
        credentials: StaticCredentialsProvider(
            AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: secret ?? server.secretAccessKey)),
        maxAttempts: maxAttempts)
}

/// A client for the local moto_server with any credentials provider.
func localClient(_ server: LocalS3.Server, credentials: any CredentialsProvider, maxAttempts: Int = 3) -> S3Client {
    var configuration = S3Configuration(region: server.region, endpoint: server.endpoint)
    configuration.maxAttempts = maxAttempts
    configuration.maxBackoff = .milliseconds(200)
    return S3Client(configuration: configuration, credentials: credentials)
}

/// A new bucket name (not created).
func newBucketName(_ test: String = #function) -> String {
    "dt-" + UUID().uuidString.lowercased().prefix(18).replacingOccurrences(of: "-", with: "")
}

/// A new bucket with a random name, versioned when asked.
func freshBucket(_ client: S3Client, versioned: Bool = false) async throws -> String {
    let name = newBucketName()
    try await client.createBucket(name)
    if versioned { try await client.putBucketVersioning(name, enabled: true) }
    return name
}

/// Credentials that can be changed while a drainer runs: the fix of a wrong secret, without a restart.
final class SwitchableCredentials: CredentialsProvider {
    private let value: Mutex<AWSCredentials>
    init(_ credentials: AWSCredentials) { value = Mutex(credentials) }
    func set(_ credentials: AWSCredentials) { value.withLock { $0 = credentials } }
    func credentials() async throws -> AWSCredentials { value.withLock { $0 } }
}

// MARK: Options

/// Storage options for tests: multipart from 5 MiB in 5 MiB parts, fast retries.
func testStorageOptions(maxRetries: Int = 5, retryDelay: Double = 0.05) -> StorageOptions {
    var options = StorageOptions()
    options.multipartThresholdBytes = 5 << 20
    options.multipartChunkSizeBytes = 5 << 20
    options.maxRetries = maxRetries
    options.retryDelaySeconds = retryDelay
    options.uploadTimeoutSeconds = 120
    return options
}

/// Drain options for tests: short lease, fast polling, run to completion.
func testDrainOptions(untilDone: Bool = true) -> DrainOptions {
    var options = DrainOptions()
    options.concurrency = 8
    options.leaseDuration = .seconds(10)
    options.pollInterval = .milliseconds(50)
    options.untilDone = untilDone
    options.gracePeriod = .seconds(10)
    options.pausedRecheck = .milliseconds(300)
    options.maximumRetryDelay = .seconds(2)
    return options
}

/// A quiet logger (warnings and errors only).
func testLogger() -> Logger {
    var logger = Logger(label: "drain-tests")
    logger.logLevel = .warning
    return logger
}

/// The store a test drainer uses for a destination: the directory, or the bucket on moto (with `credentials`, else
/// the server's own key); `wrap` may put a test wrapper around it.
func resolver(
    server: LocalS3.Server? = nil, credentials: (any CredentialsProvider)? = nil,
    wrap: (@Sendable (any ObjectStore) -> any ObjectStore)? = nil
) -> Drainer.StoreResolver {
    { destination in
        let store: any ObjectStore
        switch destination.spec.kind {
        case .file:
            store = DirectoryObjectStore(root: destination.spec.location)
        case .s3:
            guard let server else { throw LocalS3Error("no S3 server for \(destination.spec.displayName)") }
            let options = try StorageOptions.decode(
                json: destination.spec.optionsJSON, destination: destination.spec.displayName)
            let client =
                credentials.map { localClient(server, credentials: $0) } ?? localClient(server)
            store = S3ObjectStore(client: client, bucket: destination.spec.location, options: options)
        }
        return wrap?(store) ?? store
    }
}

/// Runs a drainer to completion (`untilDone`), failing the test if it takes longer than `timeout`.
@discardableResult
func drain(
    _ spool: SpoolStore, options: DrainOptions = testDrainOptions(), timeout: Duration = .seconds(120),
    _ resolve: @escaping Drainer.StoreResolver
) async throws -> DrainProgress {
    let drainer = Drainer(spool: spool, options: options, logger: testLogger(), resolveStore: resolve)
    let watchdog = Task {
        try await Task.sleep(for: timeout)
        Issue.record("the drainer did not finish within \(timeout)")
        drainer.stop()
    }
    defer { watchdog.cancel() }
    return try await drainer.run()
}

// MARK: Directories

/// A fresh directory for one test (spool, target), removed by `remove()`.
struct TestDirectory {
    let path: String
    var spool: String { path + "/spool" }
    var target: String { path + "/target" }
    var data: String { spool + "/data" }

    init() throws {
        path =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("drain-tests-\(UUID().uuidString)", isDirectory: true).path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() async {
        await removeDirectory(path)
    }
}

/// Runs `body` with a new test directory, removed afterwards.
func withTestDirectory<T>(_ body: (TestDirectory) async throws -> T) async throws -> T {
    let directory = try TestDirectory()
    do {
        let result = try await body(directory)
        await directory.remove()
        return result
    } catch {
        await directory.remove()
        throw error
    }
}

/// Every regular file under `root`, as paths relative to it.
func filesUnder(_ root: String) -> [String] {
    guard let enumerator = FileManager.default.enumerator(atPath: root) else { return [] }
    var files: [String] = []
    while let relative = enumerator.nextObject() as? String {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: root + "/" + relative, isDirectory: &isDirectory),
            !isDirectory.boolValue
        {
            files.append(relative)
        }
    }
    return files.sorted()
}

func directoryEntries(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
}

func readFile(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try FileManager.default.createDirectory(
        atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Sets a file's access and modification times `seconds` into the past.
func age(_ path: String, bySeconds seconds: Int) {
    var times = [timeval(), timeval()]
    let then = time(nil) - seconds
    times[0].tv_sec = then
    times[1].tv_sec = then
    _ = utimes(path, &times)
}

// MARK: Bytes

/// A megabyte of fixed pseudo-random bytes that test contents are cut from (the same bytes as ever: SplitMix64 from
/// state 0x5EED).
let randomBlock = testBytes(1 << 20, seed: 0x5EED &- 0x9E37_79B9_7F4A_7C15)

/// Deterministic content for one resource: 1 MiB chunks rotated by the seed, each stamped with seed and chunk number
/// (so no two chunks of any two resources are equal). Chunk-wise, so large contents cost a memcpy per MiB.
func contentChunks(size: Int, seed: Int) -> [[UInt8]] {
    var chunks: [[UInt8]] = []
    var produced = 0
    var index = 0
    while produced < size {
        let count = min(1 << 20, size - produced)
        let offset = (seed &* 7_919 &+ index &* 104_729) % randomBlock.count
        var chunk = Array(randomBlock[offset...] + randomBlock[..<offset])
        chunk.removeSubrange(count...)
        withUnsafeBytes(of: (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: index))) { stamp in
            for (position, byte) in stamp.prefix(count).enumerated() { chunk[position] = byte }
        }
        chunks.append(chunk)
        produced += count
        index += 1
    }
    return chunks
}

func content(size: Int, seed: Int) -> [UInt8] { contentChunks(size: size, seed: seed).flatMap { $0 } }

/// An async sequence of the chunks.
func chunkStream(_ chunks: [[UInt8]]) -> AsyncStream<[UInt8]> {
    AsyncStream(bufferingPolicy: .unbounded) { continuation in
        for chunk in chunks { continuation.yield(chunk) }
        continuation.finish()
    }
}

func sha256Hex(_ bytes: [UInt8]) -> String { SHA256Hasher.hexDigest(bytes) }

func sha256Hex(chunks: [[UInt8]]) -> String {
    var hasher = SHA256Hasher()
    for chunk in chunks { chunk.withUnsafeBytes { hasher.update($0) } }
    return hasher.finalize().hexString
}

// MARK: The spool, read directly

extension SpoolStore {
    /// Every row (resources and manifests).
    func allRows() async throws -> [ResourceRecord] {
        try await listResources(ResourceFilter(limit: 100_000, includeManifests: true))
    }

    func row(_ id: Int64) async throws -> ResourceRecord {
        try await resourceDetail(id).resource
    }

    /// Audit events with this action, oldest first.
    func auditEvents(action: String) async throws -> [AuditEvent] {
        try await database.run { connection in
            try connection.query(
                "SELECT \(AuditRows.columns) FROM audit_events WHERE action = ? ORDER BY id", [.text(action)],
                AuditRows.map)
        }
    }

    /// Rows of the inline payload table.
    func inlinePayloadCount() async throws -> Int {
        try await database.run { connection in
            try connection.queryFirst("SELECT COUNT(*) FROM payloads", [], { $0.int(0) }) ?? -1
        }
    }

    /// Replaces a resource's inline bytes behind the spool's back (disk corruption, for tests).
    func overwriteInlinePayload(id: Int64, with bytes: [UInt8]) async throws {
        try await database.run { connection in
            _ = try connection.execute(
                "UPDATE payloads SET bytes = ? WHERE resource_id = ?", [.blob(bytes), .integer(id)])
        }
    }

    /// Deletes a part's row behind the spool's back: what a drainer killed between S3's answer and recording the part
    /// leaves.
    func forgetRecordedPart(resourceID: Int64, partNumber: Int) async throws {
        try await database.run { connection in
            _ = try connection.execute(
                "DELETE FROM resource_parts WHERE resource_id = ? AND part_number = ?",
                [.integer(resourceID), .int(partNumber)])
        }
    }

    /// The multipart_uploads table: upload id → (finished, outcome).
    func recordedUploads() async throws -> [String: (finished: Bool, outcome: String?)] {
        let rows = try await database.run { connection in
            try connection.query(
                "SELECT upload_id, finished_at IS NOT NULL, outcome FROM multipart_uploads", [],
                { ($0.text(0), $0.int(1) != 0, $0.optionalText(2)) })
        }
        var result: [String: (finished: Bool, outcome: String?)] = [:]
        for (id, finished, outcome) in rows { result[id] = (finished, outcome) }
        return result
    }

    /// Records a multipart upload that no resource references (what a crash can leave behind).
    func recordUnreferencedUpload(_ uploadID: String, destinationID: Int64, key: String) async throws {
        let now = clock.nowMilliseconds()
        try await database.run { connection in
            _ = try connection.execute(
                """
                INSERT INTO multipart_uploads (upload_id, destination_id, object_key, resource_id, created_at)
                VALUES (?, ?, ?, NULL, ?)
                """, [.text(uploadID), .integer(destinationID), .text(key), .integer(now)])
        }
    }
}

extension SpoolStatus {
    func count(_ state: ResourceState) -> Int { resources.first { $0.state == state.rawValue }?.count ?? 0 }
    func bundles(_ state: BundleState) -> Int { bundles.first { $0.state == state.rawValue }?.count ?? 0 }
}

// MARK: Test object stores

/// Wraps a store: counts calls, and lets a test fail or delay any of them.
final class InstrumentedStore: ObjectStore {
    enum Call: String, Sendable {
        case put, head, createUpload, uploadPart, listParts, completeUpload, abortUpload, listUploads
    }

    let base: any ObjectStore
    /// Called before each call is passed on; throw to fail it.
    let before: @Sendable (Call, _ key: String, _ partNumber: Int?) async throws -> Void
    private let calls = Mutex<[(Call, String, Int?)]>([])
    private let completed = Mutex<[(Call, String, Int?)]>([])

    init(
        _ base: any ObjectStore,
        before: @escaping @Sendable (Call, _ key: String, _ partNumber: Int?) async throws -> Void = { _, _, _ in }
    ) {
        self.base = base
        self.before = before
    }

    var displayName: String { base.displayName }
    var supportsMultipart: Bool { base.supportsMultipart }

    func count(_ call: Call, key: String? = nil) -> Int {
        calls.withLock { $0.filter { $0.0 == call && (key == nil || $0.1 == key) }.count }
    }

    func partNumbers(key: String) -> [Int] {
        calls.withLock { $0.filter { $0.0 == .uploadPart && $0.1 == key }.compactMap(\.2).sorted() }
    }

    /// Calls that returned without throwing.
    func completedCount(_ call: Call, key: String? = nil) -> Int {
        completed.withLock { $0.filter { $0.0 == call && (key == nil || $0.1 == key) }.count }
    }

    private func note(_ call: Call, _ key: String, _ part: Int? = nil) async throws {
        calls.withLock { $0.append((call, key, part)) }
        try await before(call, key, part)
    }

    private func done(_ call: Call, _ key: String, _ part: Int? = nil) {
        completed.withLock { $0.append((call, key, part)) }
    }

    func put(_ object: ObjectWrite) async throws -> StoredObject {
        try await note(.put, object.key)
        let stored = try await base.put(object)
        done(.put, object.key)
        return stored
    }

    func head(key: String) async throws -> ExistingObject? {
        try await note(.head, key)
        return try await base.head(key: key)
    }

    func createUpload(for object: ObjectWrite) async throws -> String {
        try await note(.createUpload, object.key)
        return try await base.createUpload(for: object)
    }

    func uploadPart(key: String, uploadID: String, number: Int, body: PayloadBody, crc32c: UInt32, sha256: String)
        async throws -> StoredPart
    {
        try await note(.uploadPart, key, number)
        let part = try await base.uploadPart(
            key: key, uploadID: uploadID, number: number, body: body, crc32c: crc32c, sha256: sha256)
        done(.uploadPart, key, number)
        return part
    }

    func listParts(key: String, uploadID: String) async throws -> [StoredPart] {
        try await note(.listParts, key)
        return try await base.listParts(key: key, uploadID: uploadID)
    }

    func completeUpload(key: String, uploadID: String, parts: [StoredPart]) async throws -> StoredObject {
        try await note(.completeUpload, key)
        return try await base.completeUpload(key: key, uploadID: uploadID, parts: parts)
    }

    func abortUpload(key: String, uploadID: String) async throws {
        try await note(.abortUpload, key)
        try await base.abortUpload(key: key, uploadID: uploadID)
    }

    func listUploads(key: String) async throws -> [String] {
        try await note(.listUploads, key)
        return try await base.listUploads(key: key)
    }
}

/// A value several tasks share.
final class Shared<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
    func get() -> Value { value.withLock { $0 } }
    func set(_ newValue: Value) { value.withLock { $0 = newValue } }
    @discardableResult
    func update<T: Sendable>(_ body: (inout Value) -> T) -> T { value.withLock { body(&$0) } }
}

// MARK: A delivery target under test

/// A spool feeding a local directory or a fresh bucket on moto, with what tests need to look at the other side.
struct TargetFixture: Sendable {
    let target: DeliveryTarget
    let storage: PipelineStorage
    let server: LocalS3.Server?
    let client: S3Client?
    let bucket: String
    let root: String

    var spool: SpoolStore { storage.spool }

    static func make(
        _ target: DeliveryTarget, in directory: TestDirectory, prefix: String = "data/",
        options: StorageOptions = testStorageOptions()
    ) async throws -> TargetFixture {
        switch target {
        case .directory:
            let storage = try PipelineStorage(
                directory: directory.target, prefix: prefix, options: options, spool: .directory(directory.spool))
            return TargetFixture(
                target: target, storage: storage, server: nil, client: nil, bucket: "", root: directory.target)
        case .versionedBucket:
            let server = try await LocalS3.shared.server()
            let client = localClient(server)
            let bucket = try await freshBucket(client, versioned: true)
            let storage = try PipelineStorage(
                bucket: bucket, prefix: prefix, region: server.region, endpoint: server.endpoint, options: options,
                spool: .directory(directory.spool))
            return TargetFixture(
                target: target, storage: storage, server: server, client: client, bucket: bucket, root: "")
        }
    }

    /// The resolver a drainer for this target uses.
    func resolve(wrap: (@Sendable (any ObjectStore) -> any ObjectStore)? = nil) -> Drainer.StoreResolver {
        resolver(server: server, wrap: wrap)
    }

    /// Drains the spool through an `InstrumentedStore`: what the drainer did, and every store call it made.
    func drainCountingCalls(timeout: Duration = .seconds(60)) async throws -> (DrainProgress, InstrumentedStore) {
        let store = Shared<InstrumentedStore?>(nil)
        let progress = try await drain(
            spool, timeout: timeout,
            resolve { base in
                let instrumented = InstrumentedStore(base)
                store.set(instrumented)
                return instrumented
            })
        return (progress, try #require(store.get()))
    }

    /// The bytes at a key, or nil.
    func object(_ key: String) async throws -> [UInt8]? {
        if let client {
            guard try await client.headObjectIfExists(bucket: bucket, key: key) != nil else { return nil }
            return try await client.getObjectBytes(bucket: bucket, key: key).bytes
        }
        guard FileManager.default.fileExists(atPath: root + "/" + key) else { return nil }
        return try readFile(root + "/" + key)
    }

    /// Puts an object behind the drainer's back (with `sha256` metadata, as the drainer would); its version id.
    @discardableResult
    func place(_ key: String, _ bytes: [UInt8]) async throws -> String? {
        if let client {
            var request = PutObjectRequest(bucket: bucket, key: key, body: .bytes(bytes))
            request.metadata = ["sha256": sha256Hex(bytes)]
            request.contentType = "application/octet-stream"
            return try await client.putObject(request).versionID
        }
        try writeFile(root + "/" + key, bytes)
        return nil
    }

    /// The version ids held at a key (one per put; a directory has exactly one when the file exists).
    func versions(_ key: String) async throws -> [String] {
        if let client {
            return try await client.listAllObjectVersions(bucket: bucket, prefix: key).filter { $0.key == key }
                .map(\.versionID)
        }
        return FileManager.default.fileExists(atPath: root + "/" + key) ? ["file"] : []
    }

    /// Unfinished multipart uploads in the bucket (none for a directory).
    func unfinishedUploads() async throws -> [MultipartUpload] {
        guard let client else { return [] }
        return try await client.listAllMultipartUploads(bucket: bucket)
    }
}
