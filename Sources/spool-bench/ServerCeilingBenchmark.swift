import ArgumentParser
import CommandLineSupport
import Foundation
import Hashing
import S3

/// The server's own ceiling: PutObject calls as fast as the server answers them, with the bytes in memory and hashed
/// once, so that the client does as little as possible per object. Drain figures near this are bounded by the server.
struct ServerCeilingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "s3-put",
        abstract: "PUT N objects of size S from memory with C requests in flight; report objects/s and MiB/s.",
        discussion: """
            Credentials, region and endpoint come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, \
            AWS_REGION, AWS_ENDPOINT_URL). The bucket must exist. Objects are written under --prefix.
            """)

    @Option(help: "The bucket.")
    var bucket: String

    @Option(help: "Key prefix.")
    var prefix = "ceiling/"

    @Option(help: "Size of each object, e.g. 4KiB or 64MiB.")
    var size = "4KiB"

    @Option(help: "Number of objects.")
    var count = 2000

    @Option(help: "Requests in flight.")
    var concurrency = 32

    @Flag(help: "Print JSON.")
    var json = false

    struct Result: Encodable {
        var objects: Int
        var objectBytes: Int64
        var concurrency: Int
        var seconds: Double
        var objectsPerSecond: Double
        var mibPerSecond: Double
    }

    func run() async throws {
        try await runReportingErrors(tool: "spool-bench") {
            guard let objectBytes = Units.parseBytes(size), objectBytes <= 1 << 30 else {
                throw ValidationError("--size must be a size up to 1GiB, e.g. 4KiB or 64MiB")
            }
            guard count > 0, concurrency > 0 else {
                throw ValidationError("--count and --concurrency must be positive")
            }
            let client = S3Client(
                configuration: try S3Configuration.resolve(), credentials: EnvironmentCredentialsProvider())
            var generator = SplitMix64(seed: 42)
            let body = (0..<Int(objectBytes)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            let sha256 = SHA256Hasher.hexDigest(body)
            let started = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<count {
                    if index >= concurrency { try await group.next() }
                    group.addTask {
                        var request = PutObjectRequest(
                            bucket: bucket, key: prefix + String(format: "%06d", index), body: .bytes(body))
                        request.checksums = BodyChecksums(sha256Hex: sha256)
                        _ = try await client.putObject(request)
                    }
                }
                try await group.waitForAll()
            }
            let seconds = (ContinuousClock.now - started).seconds
            let result = Result(
                objects: count, objectBytes: objectBytes, concurrency: concurrency, seconds: seconds,
                objectsPerSecond: Double(count) / seconds,
                mibPerSecond: Double(objectBytes) * Double(count) / 1_048_576 / seconds)
            if json {
                try JSONOutput.print(result)
            } else {
                print(
                    "\(count) × \(Units.bytes(objectBytes)) with \(concurrency) in flight: "
                        + "\(Units.format(result.objectsPerSecond, fractionDigits: 1)) objects/s, "
                        + "\(Units.format(result.mibPerSecond, fractionDigits: 1)) MiB/s "
                        + "(\(Units.format(seconds, fractionDigits: 2)) s)")
            }
        }
    }
}
