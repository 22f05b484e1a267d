import BlockingWork
import CProcessSpawn
import Dispatch
import Foundation
import S3

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Credentials printed by a program: a profile's `credential_process`.
///
/// The command is split into words as botocore splits it (`shlex.split`, no shell: no variables, pipes or globs)
/// and the program is looked up in `PATH` when it has no `/`. It runs with the chain's environment, no standard
/// input, and a time limit; it must exit 0 and print a JSON object: `{"Version": 1, "AccessKeyId": …,
/// "SecretAccessKey": …, "SessionToken": …, "Expiration": "2026-01-31T12:00:00Z"}` (token and expiration optional;
/// with an expiration the credentials are refreshed by running the program again).
///
/// Errors name the profile and the program, never the whole command line (it may carry a secret argument) nor what
/// the program printed on standard output. Of its standard error only a bounded excerpt is kept: the first line, at
/// most 160 characters, with anything that looks like a key or token replaced by `<redacted>`.
public struct ProcessCredentialsProvider: CredentialsProvider {
    /// Longest output read from the program (the JSON document is a few KB).
    public static let maximumOutputBytes = 64 << 10
    /// Default time limit (the AWS SDK for Go's default; botocore has none).
    public static let defaultTimeout: Duration = .seconds(60)

    /// The command line.
    public let command: String
    /// The profile it comes from, for messages.
    public let profile: String
    /// The time limit; the program is killed (SIGKILL) when it runs longer.
    public let timeout: Duration
    private let environment: [String: String]

    /// A provider running `command`.
    ///
    /// - Parameters:
    ///   - command: The `credential_process` value.
    ///   - profile: The profile it comes from.
    ///   - timeout: How long the program may run.
    ///   - environment: The program's environment (and the `PATH` it is looked up in).
    public init(
        command: String, profile: String, timeout: Duration = defaultTimeout,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        self.command = command
        self.profile = profile
        self.timeout = timeout
        self.environment = environment
    }

    /// Runs the program and reads its credentials.
    ///
    /// - Throws: `S3Error` `InvalidConfiguration` (the command cannot be split or the program found),
    ///   `CredentialProcessFailed` (it failed, timed out, or printed something else than a Version 1 document), or
    ///   `InvalidCredentials` (a field is missing or malformed).
    public func credentials() async throws -> AWSCredentials {
        let words: [String]
        do {
            words = try ShellWords.split(command)
        } catch {
            throw S3Error.invalidConfiguration(
                "credential_process of profile '\(profile)' cannot be split into words: \(error.reason); check its "
                    + "quotes and backslashes")
        }
        guard let program = words.first, !program.isEmpty else {
            throw S3Error.invalidConfiguration("credential_process of profile '\(profile)' is empty")
        }
        let label = "credential_process of profile '\(profile)' (program '\(program)')"
        guard let executable = Self.locate(program, path: environment["PATH"]) else {
            throw S3Error.invalidConfiguration(
                "\(label): no executable '\(program)' \(program.contains("/") ? "exists" : "in PATH"); fix the path")
        }
        let limit = timeout
        let childEnvironment = environment
        func failed(_ message: String) -> S3Error {
            S3Error(status: 0, code: "CredentialProcessFailed", message: "\(label) \(message)", isRetryable: false)
        }
        let outcome: ChildProcess.Outcome
        do {
            let arguments = Array(words.dropFirst())
            outcome = try await ChildProcess.queue.run {
                try ChildProcess.run(
                    executable, arguments: arguments, environment: childEnvironment, timeout: limit,
                    outputLimit: Self.maximumOutputBytes)
            }
        } catch let error as S3Error {
            throw failed(error.message)
        }
        if outcome.timedOut { throw failed("did not finish within \(limit) and was killed") }
        if let signal = outcome.signal { throw failed("was killed by signal \(signal)") }
        guard outcome.status == 0 else {
            let excerpt = Redaction.excerpt(outcome.standardError)
            throw failed(
                "exited with status \(outcome.status)"
                    + (excerpt.isEmpty ? " and wrote nothing on standard error" : ": \(excerpt)"))
        }
        if outcome.outputTruncated {
            throw failed("printed more than \(Self.maximumOutputBytes) bytes; expected one JSON document")
        }
        guard let document = try? JSONSerialization.jsonObject(with: Data(outcome.standardOutput)) as? [String: Any]
        else {
            throw failed(
                "did not print a JSON object (\(outcome.standardOutput.count) bytes, not shown: they may hold "
                    + "credentials)")
        }
        // JSONDecoder, not the dictionary: it tells the number 1 from `true`.
        struct VersionField: Decodable {
            let version: Int
            enum CodingKeys: String, CodingKey { case version = "Version" }
        }
        guard (try? JSONDecoder().decode(VersionField.self, from: Data(outcome.standardOutput)))?.version == 1 else {
            let version = document["Version"].map { "\($0)" } ?? "none"
            throw failed("printed Version \(version.prefix(20)); only Version 1 is supported")
        }
        do {
            return try CredentialsDocument.parse(document, tokenKey: "SessionToken", source: label)
        }
    }

    /// The executable a command's first word names: as is when it has a `/`, else the first match in `PATH`.
    static func locate(_ program: String, path: String?) -> String? {
        if program.contains("/") { return access(program, X_OK) == 0 ? program : nil }
        let directories = (path ?? "/usr/local/bin:/usr/bin:/bin").split(
            separator: ":", omittingEmptySubsequences: false)
        for directory in directories {
            let candidate = (directory.isEmpty ? "." : String(directory)) + "/" + program
            var info = stat()
            if stat(candidate, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
    }
}

/// Runs a program with posix_spawn, collects its output (bounded) and status, and kills it at a deadline. Blocking:
/// call it on a Dispatch thread, never on the cooperative pool.
enum ChildProcess {
    /// Where `run` blocks: not on the pool Swift's tasks run on (see `BlockingQueue`), or a blocked program holds up
    /// unrelated tasks — and they it (a time limit of 300 ms once took 45 s to be noticed).
    static let queue = BlockingQueue(label: "pipeline-storage.credential-process")

    struct Outcome {
        var status: Int32 = 0
        var signal: Int32?
        var timedOut = false
        var standardOutput: [UInt8] = []
        var standardError: [UInt8] = []
        var outputTruncated = false
    }

    static func run(
        _ executable: String, arguments: [String], environment: [String: String], timeout: Duration, outputLimit: Int
    ) throws -> Outcome {
        var outPipe: [Int32] = [-1, -1]
        var errPipe: [Int32] = [-1, -1]
        guard pipe(&outPipe) == 0 else { throw spawnError("could not be started (pipe)", errno) }
        guard pipe(&errPipe) == 0 else {
            close(outPipe[0])
            close(outPipe[1])
            throw spawnError("could not be started (pipe)", errno)
        }
        // Close-on-exec, so that no other program started meanwhile keeps a pipe open (pipe2 is not imported).
        for descriptor in outPipe + errPipe { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        // The program gets standard input, output and error, nothing else: no descriptor of ours that lacks
        // close-on-exec (one opened by a library, a file another thread is writing — which would make exec of that
        // file fail with ETXTBSY while the program runs) leaks into it.
        // (ENOSYS before glibc 2.34: then only close-on-exec keeps descriptors from the program, as before.)
        _ = pipeline_spawn_actions_close_from(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The caller may be a thread with every signal blocked, or a process ignoring SIGPIPE: the program gets
        // neither (both would survive exec).
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        var spawned = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        // ETXTBSY: a program just written is still open for writing in a process forked meanwhile; that copy of the
        // descriptor goes away at its exec. Try again briefly rather than fail.
        for _ in 0..<20 where spawned == ETXTBSY {
            usleep(10_000)
            spawned = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        }
        close(outPipe[1])
        close(errPipe[1])
        defer {
            close(outPipe[0])
            close(errPipe[0])
        }
        guard spawned == 0 else { throw spawnError("could not be started", spawned) }

        var outcome = Outcome()
        let deadline = ContinuousClock.now + timeout
        var open = [outPipe[0], errPipe[0]]
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        while !open.isEmpty {
            let left = deadline - ContinuousClock.now
            if left <= .zero {
                outcome.timedOut = true
                break
            }
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let milliseconds = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1
            let ready = poll(&fds, nfds_t(fds.count), Int32(clamping: milliseconds))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            for descriptor in fds where descriptor.revents != 0 {
                let got = buffer.withUnsafeMutableBytes { read(descriptor.fd, $0.baseAddress, $0.count) }
                if got < 0 && errno == EINTR { continue }
                if got <= 0 {
                    open.removeAll { $0 == descriptor.fd }
                    continue
                }
                if descriptor.fd == outPipe[0] {
                    let room = max(0, outputLimit - outcome.standardOutput.count)
                    if got > room { outcome.outputTruncated = true }
                    outcome.standardOutput += buffer[0..<min(got, room)]
                } else {
                    outcome.standardError += buffer[0..<min(got, max(0, 4096 - outcome.standardError.count))]
                }
            }
        }
        // Output is closed (or time is up): wait for the exit, still bounded by the deadline.
        if outcome.timedOut { kill(pid, SIGKILL) }
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, outcome.timedOut ? 0 : WNOHANG)
            if result == pid { break }
            if result < 0 {
                if errno == EINTR { continue }
                throw spawnError("could not be waited for", errno)
            }
            if ContinuousClock.now >= deadline {
                outcome.timedOut = true
                kill(pid, SIGKILL)
            } else {
                usleep(5_000)
            }
        }
        if outcome.timedOut {
            return outcome
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import as macros.
        if status & 0x7F == 0 {
            outcome.status = (status >> 8) & 0xFF
        } else {
            outcome.signal = status & 0x7F
        }
        return outcome
    }

    private static func spawnError(_ what: String, _ code: Int32) -> S3Error {
        S3Error(
            status: 0, code: "CredentialProcessFailed", message: "\(what): \(String(cString: strerror(code)))",
            isRetryable: false)
    }
}
