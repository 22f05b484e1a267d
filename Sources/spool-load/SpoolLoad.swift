import ArgumentParser
import CommandLineSupport
import Foundation
import PipelineStorage
import Synchronization

/// A producer process for crash, concurrency and chaos tests: writes bundles of seeded random resources and prints
/// one JSON line per resource as soon as it is durable (and per sealed bundle), so a test that kills it knows exactly
/// what was acknowledged.
@main
struct SpoolLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool-load",
        abstract: "Write bundles of seeded random resources, reporting each durable write as a JSON line.",
        discussion: """
            Output lines: {"event":"written","id":…,"bundle":…,"seq":…,"size":…,"sha256":…,"key":…} once a \
            resource is durable; {"event":"sealed","bundle":…,"resources":…} once a bundle is sealed; \
            {"event":"finished"} at the end.
            """)

    @OptionGroup var spoolDirectory: SpoolDirectoryOptions

    @Option(help: "Local directory target (file://).")
    var directory: String?

    @Option(help: "S3 bucket target.")
    var bucket: String?

    @Option(help: "S3-compatible endpoint URL.")
    var endpoint: String?

    @Option(help: "Bucket region.")
    var region: String?

    @Option(help: "Key prefix.")
    var prefix = ""

    @Option(help: "Bundles to write (ignored with --forever and --seconds).")
    var bundles = 1

    @Option(help: "Resources per bundle.")
    var resources = 10

    @Option(help: "Smallest resource (e.g. 0, 4KiB).")
    var minSize = "0"

    @Option(help: "Largest resource (e.g. 64KiB, 40MiB).")
    var maxSize = "64KiB"

    @Option(help: "Concurrent writer tasks per bundle.")
    var writers = 1

    @Option(help: "fsync or batched.")
    var durability = "fsync"

    @Option(help: "Seed of the sizes and the content.")
    var seed: UInt64 = 1

    @Option(help: "Bytes per chunk of the streams.")
    var chunk = "256KiB"

    @Option(help: "Spool limit (maxSpoolBytes), e.g. 64MiB.")
    var maxSpoolBytes: String?

    @Option(help: "Seconds a writer waits for room before spoolFull.")
    var spoolFullWait: Double = 30

    @Flag(help: "Keep writing bundles until killed.")
    var forever = false

    @Option(help: "Keep writing bundles for this many seconds (the bundle in progress is finished and sealed).")
    var seconds: Double?

    @Option(help: "Milliseconds to wait between bundles (paces a long run).")
    var bundlePauseMs = 0

    @Flag(help: "Leave the last bundle open (do not seal).")
    var leaveOpen = false

    func run() async throws {
        try await runReportingErrors(tool: "spool-load") {
            guard let minimum = Units.parseBytes(minSize), let maximum = Units.parseBytes(maxSize), minimum <= maximum,
                let chunkBytes = Units.parseBytes(chunk), chunkBytes > 0
            else {
                throw ValidationError("--min-size, --max-size and --chunk must be sizes with min <= max")
            }
            var spoolOptions = SpoolOptions()
            switch durability {
            case "fsync": spoolOptions.durability = .fsync
            case "batched": spoolOptions.durability = .batched
            default: throw ValidationError("--durability must be fsync or batched")
            }
            if let maxSpoolBytes {
                guard let limit = Units.parseBytes(maxSpoolBytes) else {
                    throw ValidationError("--max-spool-bytes '\(maxSpoolBytes)' is not a size")
                }
                spoolOptions.maxSpoolBytes = limit
            }
            spoolOptions.spoolFullWait = .milliseconds(Int64(spoolFullWait * 1000))
            let storage: PipelineStorage
            if let bucket {
                storage = try PipelineStorage(
                    bucket: bucket, prefix: prefix, region: region, endpoint: endpoint,
                    spool: .directory(spoolDirectory.directory), spoolOptions: spoolOptions)
            } else {
                storage = try PipelineStorage(
                    directory: directory ?? spoolDirectory.directory + "-target", prefix: prefix,
                    spool: .directory(spoolDirectory.directory), spoolOptions: spoolOptions)
            }
            var sizes = SplitMix64(seed: seed)
            var bundleNumber = 0
            let deadline = seconds.map { ContinuousClock.now + .milliseconds(Int64($0 * 1000)) }
            while deadline.map({ ContinuousClock.now < $0 }) ?? (forever || bundleNumber < bundles) {
                if bundleNumber > 0 && bundlePauseMs > 0 { try await Task.sleep(for: .milliseconds(bundlePauseMs)) }
                bundleNumber += 1
                let bundleID = PipelineStorage.newBundleID()
                let plan = (0..<resources).map { index -> (Int64, UInt64) in
                    let size = minimum + Int64(sizes.next() % UInt64(maximum - minimum + 1))
                    return (size, seed &* 1_000_003 &+ UInt64(bundleNumber) &* 10_007 &+ UInt64(index))
                }
                let bundle = try await storage.openBundle(bundleID, metadata: ["generator": "spool-load"])
                let next = WorkCounter()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<max(1, writers) {
                        group.addTask {
                            while true {
                                let index = next.take()
                                guard index < plan.count else { return }
                                let (size, contentSeed) = plan[index]
                                let resource = try await bundle.writeResource(
                                    url: "https://load.example/\(bundleID)/r\(index).bin",
                                    contentType: "application/octet-stream", statusCode: 200,
                                    metadata: ["index": String(index)],
                                    stream: SeededBytes(size: size, seed: contentSeed, chunkBytes: Int(chunkBytes)))
                                emit([
                                    "event": "written", "id": resource.id, "bundle": resource.bundleID,
                                    "seq": resource.seq, "size": resource.size, "sha256": resource.sha256,
                                    "key": resource.objectKey,
                                ])
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                if leaveOpen && !forever && bundleNumber == bundles { break }
                try await bundle.close()
                emit(["event": "sealed", "bundle": bundleID, "resources": resources])
            }
            emit(["event": "finished"])
        }
    }
}

/// Hands out work item indexes to writer tasks.
private final class WorkCounter: Sendable {
    private let next = Mutex(0)

    func take() -> Int {
        next.withLock { value in
            defer { value += 1 }
            return value
        }
    }
}

private let outputLock = Mutex(())

/// Prints one JSON line and flushes it at once: the line is the acknowledgement a test relies on.
private func emit(_ fields: [String: any Sendable]) {
    let data = try! JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
    outputLock.withLock { _ in
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}
