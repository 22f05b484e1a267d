import ArgumentParser
import CommandLineSupport
import Foundation
import PipelineStorage

/// Benchmarks of the spool, each printed beside the machine's raw limits measured in the same run.
@main
struct SpoolBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool-bench",
        abstract: "Benchmark the spool against the raw limits of its filesystem, measured in the same run.",
        subcommands: [WriteBenchmark.self, FillCommand.self, ServerCeilingCommand.self])
}

struct WriteBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "write",
        abstract: "Write N resources of size S from W writer tasks; report resources/s, MiB/s, latency, memory.",
        discussion: """
            The raw limits are measured on the spool's own filesystem, before and after the run: fsync'd 4 KiB \
            appends per second, and sequential write MiB/s (1 MiB writes, one fsync at the end). The ratios divide \
            the spool's figures by the mean of the two measurements.
            """)

    @Option(help: "A spool directory to use (default: a new one under $TMPDIR, removed afterwards).")
    var spool: String?

    @Option(help: "Size of each resource, e.g. 4KiB, 64MiB, 2GiB.")
    var size = "4KiB"

    @Option(help: "Number of resources.")
    var count = 1000

    @Option(help: "Concurrent writer tasks.")
    var writers = 1

    @Option(help: "fsync or batched.")
    var durability = "fsync"

    @Option(help: "Group-commit delay for batched, in milliseconds.")
    var maxDelayMs = 5.0

    @Option(help: "Bytes per chunk handed to writeResource.")
    var chunk = "1MiB"

    @Flag(help: "Skip the raw filesystem measurements.")
    var noRaw = false

    @Flag(help: "Keep the spool directory.")
    var keep = false

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        try await runReportingErrors(tool: "spool-bench") {
            guard let resourceBytes = Units.parseBytes(size), let chunkBytes = Units.parseBytes(chunk), chunkBytes > 0
            else { throw ValidationError("--size and --chunk must be sizes, e.g. 4KiB or 64MiB") }
            guard count > 0, writers > 0 else { throw ValidationError("--count and --writers must be positive") }
            var options = SpoolOptions()
            switch durability {
            case "fsync": options.durability = .fsync
            case "batched": options.durability = .batched(maxDelay: .microseconds(Int64(maxDelayMs * 1000)))
            default: throw ValidationError("--durability must be fsync or batched")
            }
            let directory = try spool ?? makeTemporaryDirectory()
            defer { if !keep && spool == nil { try? FileManager.default.removeItem(atPath: directory) } }

            let rawBefore =
                noRaw ? nil : try RawLimits.measure(in: directory, sequentialBytes: sequentialBytes(resourceBytes))
            let memoryBefore = ProcessMemory.current()
            let storage = try PipelineStorage(
                directory: directory + "/target", spool: .directory(directory + "/spool"), spoolOptions: options)
            let payload = SeededPayload(size: resourceBytes, chunkBytes: Int(chunkBytes))
            let bundle = try await storage.openBundle(PipelineStorage.newBundleID())
            let started = ContinuousClock.now
            let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
                for writer in 0..<writers {
                    let share = count / writers + (writer < count % writers ? 1 : 0)
                    group.addTask {
                        var latencies: [Double] = []
                        latencies.reserveCapacity(share)
                        for index in 0..<share {
                            let begin = ContinuousClock.now
                            try await bundle.writeResource(
                                url: "https://bench.example/w\(writer)/\(index)",
                                contentType: "application/octet-stream",
                                statusCode: 200, stream: payload.chunks())
                            latencies.append((ContinuousClock.now - begin).seconds)
                        }
                        return latencies
                    }
                }
                var all: [Double] = []
                for try await part in group { all += part }
                return all.sorted()
            }
            let elapsed = (ContinuousClock.now - started).seconds
            let memoryAfter = ProcessMemory.current()
            try await bundle.close()
            let rawAfter =
                noRaw ? nil : try RawLimits.measure(in: directory, sequentialBytes: sequentialBytes(resourceBytes))

            let result = WriteResult(
                spool: directory, size: resourceBytes, count: count, writers: writers,
                durability: durability == "batched"
                    ? "batched(\(Units.format(maxDelayMs, fractionDigits: 1))ms)" : "fsync",
                seconds: elapsed, resourcesPerSecond: Double(count) / elapsed,
                mibPerSecond: Double(resourceBytes) * Double(count) / 1_048_576 / elapsed,
                latencyP50Ms: percentile(latencies, 0.50) * 1000, latencyP99Ms: percentile(latencies, 0.99) * 1000,
                latencyMaxMs: (latencies.last ?? 0) * 1000,
                rssBeforeBytes: memoryBefore.residentBytes, rssAfterBytes: memoryAfter.residentBytes,
                peakRSSBytes: memoryAfter.peakResidentBytes,
                raw: rawBefore.flatMap { before in rawAfter.map { RawLimits.mean(before, $0) } },
                rawBefore: rawBefore, rawAfter: rawAfter)
            if json {
                try JSONOutput.print(result)
            } else {
                print(result.rendered())
            }
        }
    }

    /// The sequential-write probe writes a file at least as large as one resource (256 MiB to 1 GiB).
    func sequentialBytes(_ resourceBytes: Int64) -> Int64 {
        min(max(resourceBytes, 256 << 20), 1 << 30)
    }

    func makeTemporaryDirectory() throws -> String {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array((base + "/spool-bench-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw ValidationError("could not create a directory under \(base)")
        }
        return String(cString: made)
    }
}

func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let index = min(sorted.count - 1, Int((Double(sorted.count - 1) * fraction).rounded()))
    return sorted[index]
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// The same random bytes for every resource, handed out as slices of one buffer (no allocation per chunk), so the
/// benchmark measures the spool, not a generator.
struct SeededPayload: Sendable {
    let size: Int64
    let chunkBytes: Int
    let buffer: [UInt8]

    init(size: Int64, chunkBytes: Int) {
        self.size = size
        self.chunkBytes = chunkBytes
        var generator = SplitMix64(seed: 42)
        let count = Int(min(size, Int64(chunkBytes)))
        buffer = (0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
    }

    func chunks() -> SliceChunks { SliceChunks(buffer: buffer, total: size) }

    struct SliceChunks: AsyncSequence, Sendable {
        typealias Element = ArraySlice<UInt8>
        let buffer: [UInt8]
        let total: Int64

        struct AsyncIterator: AsyncIteratorProtocol {
            let buffer: [UInt8]
            var remaining: Int64
            mutating func next() async -> ArraySlice<UInt8>? {
                guard remaining > 0 else { return nil }
                let count = Int(Swift.min(Int64(buffer.count), remaining))
                remaining -= Int64(count)
                return buffer[0..<count]
            }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(buffer: buffer, remaining: total) }
    }
}

/// What the spool's filesystem can do at best.
struct RawLimits: Codable {
    var fsyncWritesPerSecond: Double
    var sequentialMibPerSecond: Double

    static func mean(_ a: RawLimits, _ b: RawLimits) -> RawLimits {
        RawLimits(
            fsyncWritesPerSecond: (a.fsyncWritesPerSecond + b.fsyncWritesPerSecond) / 2,
            sequentialMibPerSecond: (a.sequentialMibPerSecond + b.sequentialMibPerSecond) / 2)
    }

    /// fsync'd 4 KiB appends for about 2 seconds; then one file of `sequentialBytes` in 1 MiB writes and one fsync.
    static func measure(in directory: String, sequentialBytes: Int64) throws -> RawLimits {
        let path = directory + "/raw-probe"
        defer { unlink(path) }
        var descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw ValidationError("cannot write the probe file \(path)") }
        var block = [UInt8](repeating: 0x5A, count: 4096)
        let fsyncStart = ContinuousClock.now
        var writes = 0
        while ContinuousClock.now - fsyncStart < .seconds(2) {
            _ = block.withUnsafeMutableBytes { write(descriptor, $0.baseAddress, 4096) }
            fsync(descriptor)
            writes += 1
        }
        let fsyncRate = Double(writes) / (ContinuousClock.now - fsyncStart).seconds
        close(descriptor)
        unlink(path)

        descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw ValidationError("cannot write the probe file \(path)") }
        var generator = SplitMix64(seed: 7)
        block = (0..<(1 << 20)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let sequentialStart = ContinuousClock.now
        var written: Int64 = 0
        while written < sequentialBytes {
            let count = block.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            written += Int64(count)
        }
        fsync(descriptor)
        let sequential = Double(written) / 1_048_576 / (ContinuousClock.now - sequentialStart).seconds
        close(descriptor)
        return RawLimits(fsyncWritesPerSecond: fsyncRate, sequentialMibPerSecond: sequential)
    }
}

/// Resident memory of this process, from /proc/self/status.
struct ProcessMemory {
    var residentBytes: Int64
    var peakResidentBytes: Int64

    static func current() -> ProcessMemory {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else {
            return ProcessMemory(residentBytes: 0, peakResidentBytes: 0)
        }
        func kibibytes(_ field: String) -> Int64 {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return 0 }
            return Int64(line.split(separator: " ").dropFirst().first.map(String.init) ?? "0").map { $0 * 1024 } ?? 0
        }
        return ProcessMemory(residentBytes: kibibytes("VmRSS"), peakResidentBytes: kibibytes("VmHWM"))
    }
}

struct WriteResult: Encodable {
    var spool: String
    var size: Int64
    var count: Int
    var writers: Int
    var durability: String
    var seconds: Double
    var resourcesPerSecond: Double
    var mibPerSecond: Double
    var latencyP50Ms: Double
    var latencyP99Ms: Double
    var latencyMaxMs: Double
    var rssBeforeBytes: Int64
    var rssAfterBytes: Int64
    var peakRSSBytes: Int64
    var raw: RawLimits?
    var rawBefore: RawLimits?
    var rawAfter: RawLimits?

    func rendered() -> String {
        func number(_ value: Double, _ digits: Int = 1) -> String { Units.format(value, fractionDigits: digits) }
        var lines = [
            "spool-bench write: \(count) × \(Units.bytes(size)), \(writers) writer(s), \(durability)",
            "  resources/s   \(number(resourcesPerSecond, resourcesPerSecond < 100 ? 2 : 0))"
                + (raw.map { "   (\(number(resourcesPerSecond / $0.fsyncWritesPerSecond, 2))× the fsync rate)" }
                    ?? ""),
            "  MiB/s         \(number(mibPerSecond))"
                + (raw.map { "   (\(number(mibPerSecond / $0.sequentialMibPerSecond, 2))× sequential write)" } ?? ""),
            "  latency       p50 \(number(latencyP50Ms, 2)) ms   p99 \(number(latencyP99Ms, 2)) ms   max "
                + "\(number(latencyMaxMs, 2)) ms",
            "  memory        RSS \(Units.bytes(rssBeforeBytes)) before, \(Units.bytes(rssAfterBytes)) after "
                + "(+\(Units.bytes(rssAfterBytes - rssBeforeBytes))), peak \(Units.bytes(peakRSSBytes))",
            "  wall time     \(number(seconds, 2)) s",
        ]
        if let raw, let rawBefore, let rawAfter {
            lines.append(
                "raw limits of the spool's filesystem (mean of before/after): fsync'd 4 KiB writes "
                    + "\(number(raw.fsyncWritesPerSecond, 0))/s (\(number(rawBefore.fsyncWritesPerSecond, 0)), "
                    + "\(number(rawAfter.fsyncWritesPerSecond, 0))); sequential write "
                    + "\(number(raw.sequentialMibPerSecond)) MiB/s (\(number(rawBefore.sequentialMibPerSecond)), "
                    + "\(number(rawAfter.sequentialMibPerSecond)))")
        }
        return lines.joined(separator: "\n")
    }
}
