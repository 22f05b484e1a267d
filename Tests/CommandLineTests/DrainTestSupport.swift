import Foundation
import Hashing
@testable import LocalS3Support
import S3
import Spool
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Shared by DrainCrashTests and DrainChaosTests: a versioned bucket on the local moto server, a spool filled by
// spool-load, spool-drain as a child process, and the end-to-end check that everything acknowledged arrived exactly
// once.

/// A bucket on moto (versioning on) and a spool that feeds it, with every write spool-load acknowledged.
struct DrainScenario {
    let directory: String
    let server: LocalS3.Server
    let bucket: String
    /// Key prefix, ending in "/".
    let prefix: String
    /// Talks to moto directly (never through a fault proxy).
    let client: S3Client
    var writes: [AcknowledgedWrite] = []
    var sealed: Set<String> = []

    var spoolDirectory: String { directory + "/spool" }

    /// A new bucket with versioning on, named after the test.
    static func make(directory: String, name: String = #function) async throws -> DrainScenario {
        let server = try await LocalS3.shared.server()
        let client = S3Client(
            configuration: S3Configuration(region: server.region, endpoint: server.endpoint),
            credentials: StaticCredentialsProvider(
                AWSCredentials(accessKeyID: server.accessKeyID, secretAccessKey: server.secretAccessKey)))
        let bucket = uniquePrefix(name)
        try await client.createBucket(bucket)
        try await client.putBucketVersioning(bucket, enabled: true)
        return DrainScenario(
            directory: directory, server: server, bucket: bucket, prefix: "load/", client: client)
    }

    /// Runs spool-load once (new bundles, all sealed), recording `endpoint` as the destination's endpoint.
    mutating func load(
        endpoint: String, bundles: Int, resources: Int, minSize: String, maxSize: String, seed: UInt64,
        writers: Int = 4
    ) async throws {
        let result = try await runTool(
            "spool-load",
            [
                "--spool", spoolDirectory, "--bucket", bucket, "--endpoint", endpoint, "--region", server.region,
                "--prefix", prefix, "--bundles", String(bundles), "--resources", String(resources),
                "--min-size", minSize, "--max-size", maxSize, "--writers", String(writers), "--seed", String(seed),
            ])
        try #require(result.status == 0, "spool-load failed: \(result.stderr)")
        let output = parseLoadOutput(result.stdout)
        try #require(output.finished, "spool-load did not finish: \(result.stderr)")
        try #require(output.writes.count == bundles * resources)
        try #require(output.sealed.count == bundles)
        writes += output.writes
        sealed.formUnion(output.sealed)
    }

    /// What spool-drain needs from the environment: moto's credentials and region, nothing else of AWS's.
    var drainerEnvironment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        for name in environment.keys where name.hasPrefix("AWS_") { environment[name] = nil }
        for name in ["http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            environment[name] = nil
        }
        environment["AWS_ACCESS_KEY_ID"] = server.accessKeyID
        environment["AWS_SECRET_ACCESS_KEY"] = server.secretAccessKey
        environment["AWS_REGION"] = server.region
        return environment
    }

    /// Starts spool-drain on this spool with JSON logs into `logPath`.
    func startDrainer(_ extraArguments: [String], logPath: String) throws -> ChildProcess {
        try ChildProcess(
            tool: "spool-drain",
            arguments: ["--spool", spoolDirectory, "--no-progress", "--log-format", "json"] + extraArguments,
            environment: drainerEnvironment, logPath: logPath)
    }

    func manifestKey(_ bundle: String) -> String { prefix + bundle + "/_bundle.json" }
}

/// A tool running as a child process, standard error (the log) into a file, standard output into another one or
/// nowhere. Waiting never blocks a thread.
final class ChildProcess {
    let process = Process()
    let logPath: String
    let outputPath: String?
    let startedAt = ContinuousClock.now

    init(
        tool: String, arguments: [String], environment: [String: String], logPath: String, outputPath: String? = nil
    ) throws {
        self.logPath = logPath
        self.outputPath = outputPath
        process.executableURL = URL(fileURLWithPath: binDirectory + "/" + tool)
        process.arguments = arguments
        process.environment = environment
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardInput = FileHandle.nullDevice
        if let outputPath {
            _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        } else {
            process.standardOutput = FileHandle.nullDevice
        }
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try process.run()
    }

    /// What it wrote to standard output so far (empty when it was not kept).
    var output: String { outputPath.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? "" }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Sends a signal; false when the process had already ended.
    @discardableResult
    func send(_ signalNumber: Int32) -> Bool {
        guard process.isRunning else { return false }
        return kill(process.processIdentifier, signalNumber) == 0
    }

    /// Waits for the process to end; false on timeout (the process is left running).
    func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    /// Kills it with SIGKILL and waits for it (after a failed wait, so that no child outlives its test).
    func killAndWait() async {
        send(SIGKILL)
        _ = await waitForExit(timeout: .seconds(30))
    }

    var exitStatus: Int32 { process.terminationStatus }
    var killedBySignal: Bool { process.terminationReason == .uncaughtSignal }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The JSON log lines whose message is `message`.
    func logLines(_ message: String) -> [[String: Any]] {
        log.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                object["message"] as? String == message
            else { return nil }
            return object
        }
    }
}

/// What the spool's audit trail says about every resource and `_bundle.json` row.
struct AuditSummary {
    /// `resource.delivered` events per resource id.
    var deliveries: [Int64: Int] = [:]
    /// The pid of the process that recorded each delivery.
    var deliveredBy: [Int64: Int] = [:]
    /// `lease.reclaimed` events.
    var reclaims = 0
    /// Deliveries settled by HEAD after a lost answer ("already in place").
    var alreadyInPlace: Int { alreadyInPlaceIDs.count }
    /// The resources (and manifests) whose delivery was settled that way.
    var alreadyInPlaceIDs: Set<Int64> = []
    /// `resource.released` events (graceful shutdown, paused destinations).
    var releases = 0
    /// `resource.retry_scheduled` events, by error code.
    var retriesByCode: [String: Int] = [:]

    init(_ spool: SpoolStore) async throws {
        let rows = try await spool.listResources(ResourceFilter(limit: 1_000_000, includeManifests: true))
        for row in rows {
            for event in try await spool.resourceDetail(row.id).events {
                switch event.action {
                case "resource.delivered":
                    deliveries[row.id, default: 0] += 1
                    deliveredBy[row.id] = event.actorPID
                    if event.detail["note"]?.contains("already in place") == true { alreadyInPlaceIDs.insert(row.id) }
                case "lease.reclaimed": reclaims += 1
                case "resource.released": releases += 1
                case "resource.retry_scheduled": retriesByCode[event.detail["error"] ?? "?", default: 0] += 1
                default: break
                }
            }
        }
    }
}

/// The SHA-256 of a file, read a MiB at a time.
func sha256OfFile(_ path: String) throws -> (sha256: String, size: Int64) {
    let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    var hasher = SHA256Hasher()
    var size: Int64 = 0
    while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
        chunk.withUnsafeBytes { hasher.update($0) }
        size += Int64(chunk.count)
    }
    return (hasher.finalize().hexString, size)
}

/// One object downloaded and hashed.
private struct Downloaded: Sendable {
    var key: String
    var size: Int64
    var sha256: String
    var lastModified: Date?
    var metadataSHA256: String?
}

/// What the end-to-end check after a drain found wrong, by kind (every list empty: delivered exactly once).
struct DeliveryReport {
    /// Acknowledged resources (or sealed bundles' `_bundle.json`) with no object at their key.
    var missingKeys: [String] = []
    /// Objects under the prefix that nothing acknowledged.
    var unexpectedKeys: [String] = []
    /// Keys with more than one version, and how many.
    var duplicatedKeys: [String: Int] = [:]
    /// Delete markers under the prefix.
    var deleteMarkers: [String] = []
    /// Objects whose bytes (size, SHA-256) or `x-amz-meta-sha256` differ from what was acknowledged.
    var corruptObjects: [String] = []
    /// `_bundle.json` documents that do not list their bundle exactly, or are older than a resource.
    var manifestProblems: [String] = []
    /// Multipart uploads left in the bucket.
    var uploadsLeft: [String] = []
    /// Acknowledged resources the spool does not hold as `done` with the object's version.
    var spoolProblems: [String] = []

    /// Acknowledged resources that did not arrive: missing objects, and rows not done.
    var lost: Int { missingKeys.count + spoolProblems.filter { $0.hasPrefix("not done") }.count }
    /// Versions beyond the first, and delete markers.
    var duplicates: Int { duplicatedKeys.values.reduce(0) { $0 + $1 - 1 } + deleteMarkers.count }
}

/// The end-to-end check after a drain: in the bucket, every acknowledged resource and every sealed bundle's
/// `_bundle.json` exists with exactly one version (no delete markers, nothing else under the prefix), with the
/// acknowledged bytes; each `_bundle.json` lists its resources and is no older than any of them; no multipart upload
/// is left. In the spool, every resource and manifest is `done`, every bundle `delivered`, nothing pending or failed,
/// and the recorded version ids are the ones in the bucket.
func verifyDeliveredExactlyOnce(_ scenario: DrainScenario) async throws {
    let report = try await deliveryReport(scenario)
    #expect(report.deleteMarkers.isEmpty, "delete markers: \(report.deleteMarkers)")
    #expect(report.duplicatedKeys.isEmpty, "keys with more than one version: \(report.duplicatedKeys)")
    #expect(report.missingKeys.isEmpty, "missing: \(report.missingKeys.sorted())")
    #expect(report.unexpectedKeys.isEmpty, "unexpected: \(report.unexpectedKeys.sorted())")
    #expect(report.corruptObjects.isEmpty, "objects that differ from what was acknowledged: \(report.corruptObjects)")
    #expect(report.manifestProblems.isEmpty, "\(report.manifestProblems)")
    #expect(report.uploadsLeft.isEmpty, "multipart uploads left: \(report.uploadsLeft)")
    #expect(report.spoolProblems.isEmpty, "\(report.spoolProblems.prefix(10))")
}

/// Compares the bucket and the spool with what was acknowledged (see `verifyDeliveredExactlyOnce`).
func deliveryReport(_ scenario: DrainScenario) async throws -> DeliveryReport {
    var report = DeliveryReport()
    let client = scenario.client
    let bucket = scenario.bucket

    // Exactly one version of exactly the expected keys.
    let versions = try await client.listAllObjectVersions(bucket: bucket, prefix: scenario.prefix)
    report.deleteMarkers = versions.filter(\.isDeleteMarker).map(\.key)
    let versionsByKey = Dictionary(grouping: versions.filter { !$0.isDeleteMarker }, by: \.key)
    report.duplicatedKeys = versionsByKey.filter { $0.value.count != 1 }.mapValues(\.count)
    let expectedKeys = Set(scenario.writes.map(\.key)).union(scenario.sealed.map(scenario.manifestKey))
    let presentKeys = Set(versionsByKey.keys)
    report.missingKeys = expectedKeys.subtracting(presentKeys).sorted()
    report.unexpectedKeys = presentKeys.subtracting(expectedKeys).sorted()

    // The bytes: every acknowledged resource downloaded (large ones streamed to a file) and hashed.
    let downloadDirectory = scenario.directory + "/downloads"
    try FileManager.default.createDirectory(atPath: downloadDirectory, withIntermediateDirectories: true)
    let downloads = try await withThrowingTaskGroup(of: Downloaded?.self) { group -> [String: Downloaded] in
        var results: [String: Downloaded] = [:]
        var started = 0
        for write in scenario.writes where presentKeys.contains(write.key) {
            if started >= 4, let done = try await group.next(), let done { results[done.key] = done }
            started += 1
            group.addTask {
                if write.size >= 8 << 20 {
                    let path = downloadDirectory + "/" + UUID().uuidString
                    defer { try? FileManager.default.removeItem(atPath: path) }
                    let metadata = try await client.getObject(bucket: bucket, key: write.key, to: path)
                    let (sha256, size) = try sha256OfFile(path)
                    return Downloaded(
                        key: write.key, size: size, sha256: sha256, lastModified: metadata.lastModified,
                        metadataSHA256: metadata.metadata["sha256"])
                }
                let (bytes, metadata) = try await client.getObjectBytes(bucket: bucket, key: write.key)
                return Downloaded(
                    key: write.key, size: Int64(bytes.count), sha256: SHA256Hasher.hexDigest(bytes),
                    lastModified: metadata.lastModified, metadataSHA256: metadata.metadata["sha256"])
            }
        }
        for try await done in group { if let done { results[done.key] = done } }
        return results
    }
    for write in scenario.writes {
        guard let object = downloads[write.key] else { continue }
        if object.size != write.size {
            report.corruptObjects.append("\(write.key): size \(object.size), acknowledged \(write.size)")
        } else if object.sha256 != write.sha256 {
            report.corruptObjects.append("\(write.key): content differs from what was acknowledged")
        } else if object.metadataSHA256 != write.sha256 {
            report.corruptObjects.append("\(write.key): x-amz-meta-sha256 \(object.metadataSHA256 ?? "missing")")
        }
    }

    // Each _bundle.json: one version, lists exactly its resources with their digests and versions, written last.
    let writesByBundle = Dictionary(grouping: scenario.writes, by: \.bundle)
    for bundle in scenario.sealed {
        let key = scenario.manifestKey(bundle)
        guard presentKeys.contains(key) else { continue }
        let (bytes, metadata) = try await client.getObjectBytes(bucket: bucket, key: key)
        guard let document = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            document["bundle_id"] as? String == bundle, let entries = document["resources"] as? [[String: Any]]
        else {
            report.manifestProblems.append("\(key) is not a _bundle.json of \(bundle)")
            continue
        }
        let bundleWrites = writesByBundle[bundle] ?? []
        if entries.count != bundleWrites.count {
            report.manifestProblems.append("\(key): \(entries.count) entries, \(bundleWrites.count) written")
        }
        let entriesByKey = Dictionary(
            entries.compactMap { entry in (entry["key"] as? String).map { ($0, entry) } },
            uniquingKeysWith: { first, _ in first })
        for write in bundleWrites {
            let entry = entriesByKey[write.key]
            if entry?["sha256"] as? String != write.sha256 || (entry?["size"] as? NSNumber)?.int64Value != write.size {
                report.manifestProblems.append("\(key): entry for \(write.key)")
            }
            if let listed = versionsByKey[write.key]?.first?.versionID, entry?["version_id"] as? String != listed {
                report.manifestProblems.append("\(key): version of \(write.key)")
            }
        }
        let newestResource = bundleWrites.compactMap { downloads[$0.key]?.lastModified }.max()
        if let manifestTime = metadata.lastModified, let newestResource {
            if manifestTime < newestResource { report.manifestProblems.append("\(key) is older than a resource") }
        } else if !bundleWrites.isEmpty {
            report.manifestProblems.append("\(key): no Last-Modified to compare")
        }
    }

    // No multipart upload left behind, anywhere in the bucket.
    report.uploadsLeft = try await client.listAllMultipartUploads(bucket: bucket).map { "\($0.key) \($0.uploadID)" }

    // The spool agrees: all done, all delivered, the version ids recorded are the ones in the bucket.
    let spool = try SpoolStore.open(scenario.spoolDirectory)
    let rows = try await spool.listResources(ResourceFilter(limit: 1_000_000, includeManifests: true))
    let rowsByID = Dictionary(uniqueKeysWithValues: rows.map { ($0.id, $0) })
    for row in rows where row.state != .done {
        report.spoolProblems.append(
            "not done: \(row.id) \(row.state) \(row.lastErrorCode ?? "") \(row.lastErrorMessage ?? "")")
    }
    for write in scenario.writes {
        guard let row = rowsByID[write.id] else {
            report.spoolProblems.append("not done: acknowledged resource \(write.id) is not in the spool")
            continue
        }
        if row.objectKey != write.key { report.spoolProblems.append("resource \(write.id): key \(row.objectKey)") }
        if row.state == .done, row.versionID == nil || row.versionID != versionsByKey[write.key]?.first?.versionID {
            report.spoolProblems.append(
                "resource \(write.id): recorded version \(row.versionID ?? "nil") is not the object's")
        }
    }
    for bundle in scenario.sealed where try await spool.bundle(bundle)?.state != .delivered {
        report.spoolProblems.append("bundle \(bundle) is not delivered")
    }
    let status = try await spool.status()
    if status.manifestsPending != 0 { report.spoolProblems.append("\(status.manifestsPending) manifests pending") }
    if !status.failuresByCode.isEmpty { report.spoolProblems.append("failures: \(status.failuresByCode)") }
    if !status.pausedDestinations.isEmpty { report.spoolProblems.append("paused: \(status.pausedDestinations)") }
    return report
}
