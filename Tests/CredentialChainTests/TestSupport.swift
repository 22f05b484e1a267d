import CredentialChain
import Foundation
import S3
import SpoolTestSupport
import Synchronization
import Testing

@testable import LocalS3Support

#if canImport(Glibc)
import Glibc
#endif

// MARK: Files and environments

/// A temporary directory for one test: shared config and credentials files, scripts, token files; and the
/// environment a chain should see (HOME there, both files there, instance metadata off, nothing from the machine's
/// own AWS settings).
final class Sandbox: Sendable {
    let path: String

    init() throws {
        path =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("credential-tests-\(UUID().uuidString.prefix(8))", isDirectory: true).path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    var configFile: String { path + "/config" }
    var credentialsFile: String { path + "/credentials" }

    /// Writes a file under the sandbox (or at an absolute path); returns its path.
    @discardableResult
    func write(_ name: String, _ text: String, executable: Bool = false) throws -> String {
        let target = name.hasPrefix("/") ? name : path + "/" + name
        // Close-on-exec: a program another test starts meanwhile must not keep this file open for writing, or
        // running it fails with ETXTBSY for as long as that program lives.
        let descriptor = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, executable ? 0o755 : 0o644)
        guard descriptor >= 0 else { throw LocalS3Error("cannot write \(target): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let result = bytes[written...].withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            if result < 0 && errno == EINTR { continue }
            guard result > 0 else { throw LocalS3Error("cannot write \(target): \(String(cString: strerror(errno)))") }
            written += result
        }
        return target
    }

    func config(_ text: String) throws { try write("config", text) }
    func credentials(_ text: String) throws { try write("credentials", text) }

    /// The environment of a chain under test; `extra` adds or overrides variables.
    func environment(_ extra: [String: String] = [:]) -> [String: String] {
        var environment = [
            "HOME": path, "AWS_CONFIG_FILE": configFile, "AWS_SHARED_CREDENTIALS_FILE": credentialsFile,
            "AWS_EC2_METADATA_DISABLED": "true", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
        ]
        environment.merge(extra) { _, new in new }
        return environment
    }
}

/// Options for chains under test: short refresh windows are set per test.
func chainOptions(
    clock: (@Sendable () -> Date)? = nil, observer: (@Sendable (CredentialChain.Event) -> Void)? = nil
) -> CredentialChain.Options {
    var options = CredentialChain.Options()
    if let clock { options.clock = clock }
    options.observer = observer
    return options
}

/// The environment pointing STS at moto.
func motoEnvironment(_ server: LocalS3.Server, _ sandbox: Sandbox, _ extra: [String: String] = [:]) -> [String: String]
{
    sandbox.environment(["AWS_ENDPOINT_URL_STS": server.endpoint, "AWS_REGION": server.region].merging(extra) { $1 })
}

// MARK: Assertions

/// Expects `body` to throw an `S3Error` with this code; returns it.
@discardableResult
func expectS3Error(
    _ code: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void
) async -> S3Error? {
    do {
        try await body()
        Issue.record("expected S3Error \(code), got no error", sourceLocation: sourceLocation)
    } catch let error as S3Error {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected S3Error \(code), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// Expects none of the secrets anywhere in the error's description.
func expectNoSecrets(_ error: S3Error?, _ secrets: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    guard let error else { return }
    for secret in secrets {
        #expect(
            !error.description.contains(secret), "a secret leaked into: \(error.description)",
            sourceLocation: sourceLocation)
    }
}

// MARK: Clocks and fake providers

/// A clock tests move by hand.
final class ManualClock: Sendable {
    private let now: Mutex<Date>
    init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { now = Mutex(start) }
    var date: Date { now.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { now.withLock { $0 = $0.addingTimeInterval(seconds) } }
    var function: @Sendable () -> Date { { self.date } }
}

/// A provider that counts fetches, can be made to fail, and can hold every fetch until released.
final class ScriptedProvider: CredentialsProvider {
    private struct State {
        var fetches = 0
        var failing = false
        var held: [CheckedContinuation<Void, Never>] = []
        var holding = false
    }
    private let state = Mutex(State())
    private let lifetime: TimeInterval?
    private let clock: @Sendable () -> Date

    /// Credentials valid for `lifetime` seconds from the clock's now (nil: no expiration).
    init(lifetime: TimeInterval?, clock: @escaping @Sendable () -> Date) {
        self.lifetime = lifetime
        self.clock = clock
    }

    var fetches: Int { state.withLock { $0.fetches } }
    func setFailing(_ failing: Bool) { state.withLock { $0.failing = failing } }
    func hold() { state.withLock { $0.holding = true } }
    var waiting: Int { state.withLock { $0.held.count } }
    func release() {
        let held = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.holding = false
            defer { state.held = [] }
            return state.held
        }
        held.forEach { $0.resume() }
    }

    func credentials() async throws -> AWSCredentials {
        let (number, failing, holding) = state.withLock { state in
            state.fetches += 1
            return (state.fetches, state.failing, state.holding)
        }
        if holding {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    guard state.holding else { return true }
                    state.held.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
        if failing {
            throw S3Error(status: 503, code: "ServiceUnavailable", message: "scripted failure", isRetryable: true)
        }
        return AWSCredentials(
            accessKeyID: "AKIDFETCH\(number)", secretAccessKey: "secret-\(number)", sessionToken: "token-\(number)",
            expiration: lifetime.map { clock().addingTimeInterval($0) })
    }
}

/// A client for moto with these credentials.
func motoClient(_ server: LocalS3.Server, _ credentials: any CredentialsProvider) -> S3Client {
    var configuration = S3Configuration(region: server.region, endpoint: server.endpoint)
    configuration.maxBackoff = .milliseconds(200)
    return S3Client(configuration: configuration, credentials: credentials)
}

/// Creates a bucket, puts an object and reads it back, all with `credentials`.
func putAndGet(_ server: LocalS3.Server, _ credentials: any CredentialsProvider, test: String = #function)
    async throws
{
    let client = motoClient(server, credentials)
    let bucket = uniquePrefix(test)
    try await client.createBucket(bucket)
    let body = Array("assumed \(bucket)".utf8)
    _ = try await client.putObject(PutObjectRequest(bucket: bucket, key: "hello.txt", body: .bytes(body)))
    let fetched = try await client.getObjectBytes(bucket: bucket, key: "hello.txt")
    #expect(fetched.bytes == body)
}

// MARK: botocore, for comparisons

/// Runs Python code with the venv's interpreter (which has botocore); its standard output.
func runVenvPython(_ code: String, arguments: [String] = []) async throws -> String {
    guard let root = LocalS3.repositoryRoot else { throw LocalS3Error("no repository root") }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: root + "/.venv/bin/python")
    process.arguments = ["-c", code] + arguments
    // Into a file, read once the program has ended: nothing blocks a thread, and no pipe fills up meanwhile.
    let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("py-\(UUID().uuidString)").path
    _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: outputPath) }
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
    process.standardError = FileHandle.nullDevice
    try await process.runToExit()
    guard process.terminationStatus == 0 else { throw LocalS3Error("python exited \(process.terminationStatus)") }
    return try String(contentsOfFile: outputPath, encoding: .utf8)
}
