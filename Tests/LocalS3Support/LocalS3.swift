import BlockingWork
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// A local S3 for the integration tests: moto_server (tools/moto) and the fault-injecting proxy (tools/faultproxy.py)
// in front of it, started on first use and gone when the test process is.
//
//     let server = try await LocalS3.shared.server()          // endpoint, accessKeyID, secretAccessKey, region
//     let proxy = try await LocalS3.shared.faultProxy()       // the shared proxy; proxy.endpoint for the client
//     try await proxy.configure([FaultProxy.Rule(fault: "reset", nth: [1], method: "PUT")], seed: 1)
//     let stats = try await proxy.stats()                     // stats.requests, .forwarded, .faults["reset"], .records
//     let metadata = try await LocalS3.shared.newCredentialServer()   // a local IMDS + container credentials endpoint
//
// The shared proxy has one rule set for the whole process: tests that configure it must not run at the same time
// (put them in one `.serialized` suite), or use `newFaultProxy()` for a proxy of their own. Nothing here talks to
// anything but 127.0.0.1.

/// A failure to start or talk to the local S3 server or the fault proxy.
struct LocalS3Error: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A moto_server on 127.0.0.1 with SigV4 auth on, started once per test process (lazily, on first use), stopped
/// when the process exits (at `exit`, and otherwise by its own watchdog within a second of this process ending).
actor LocalS3 {
    static let shared = LocalS3()

    /// Where the server is and the IAM access key every request must be signed with.
    struct Server: Sendable, Equatable {
        /// `http://127.0.0.1:<port>`.
        let endpoint: String
        let accessKeyID: String
        let secretAccessKey: String
        let region: String
        /// The server's process id (`MOTO_PID`).
        let processID: Int32
        /// The directory holding `env` and `moto.log`.
        let directory: String
    }

    private var serverTask: Task<Server, any Error>?
    private var proxyTask: Task<FaultProxy, any Error>?

    /// The shared server, started by the first call (`tools/moto start --dir <tmp> --parent-pid <this process>`).
    /// Throws when the Python environment is missing (run tools/setup) or the server does not start; a failed start
    /// is not retried within the process.
    func server() async throws -> Server {
        if serverTask == nil {
            serverTask = Task { try await Self.startServer() }
        }
        return try await serverTask!.value
    }

    /// The shared fault proxy in front of `server()`, started by the first call. Starts with no rules.
    func faultProxy() async throws -> FaultProxy {
        if proxyTask == nil {
            let server = try await server()
            if proxyTask == nil {  // another call may have started it while this one waited for the server
                proxyTask = Task { try await Self.startProxy(upstream: server, name: "shared") }
            }
        }
        return try await proxyTask!.value
    }

    /// A new fault proxy in front of `server()`, for this caller alone: its rules and statistics are its own.
    /// Ends with the process, or earlier with `stop()`.
    func newFaultProxy() async throws -> FaultProxy {
        let server = try await server()
        return try await Self.startProxy(upstream: server, name: "own-\(UUID().uuidString.prefix(8))")
    }

    // MARK: Starting

    /// The directory holding Package.swift, above this source file.
    static let repositoryRoot: String? = {
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while directory.path != "/" {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
                return directory.path
            }
            directory = directory.deletingLastPathComponent()
        }
        return nil
    }()

    private static func tools() throws -> (root: String, python: String) {
        guard let root = repositoryRoot else {
            throw LocalS3Error("LocalS3: no Package.swift above \(#filePath)")
        }
        let python = root + "/.venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw LocalS3Error(
                "LocalS3: \(python) is missing: run tools/setup (it creates the Python environment with moto)")
        }
        return (root, python)
    }

    private static func startServer() async throws -> Server {
        let (root, _) = try tools()
        let directory = try makeRunDirectory("local-s3")
        let errorLog = directory + "/start.err"
        let status = try await runProcess(
            root + "/tools/moto", ["start", "--dir", directory, "--parent-pid", String(getpid())],
            stdoutPath: "/dev/null", stderrPath: errorLog)
        guard status == 0 else {
            let message = ((try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? "")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            throw LocalS3Error("LocalS3: tools/moto start exited with \(status): \(message)")
        }
        let env = try parseExports(String(contentsOfFile: directory + "/env", encoding: .utf8))
        guard let endpoint = env["AWS_ENDPOINT_URL"], let key = env["AWS_ACCESS_KEY_ID"],
            let secret = env["AWS_SECRET_ACCESS_KEY"], let region = env["AWS_REGION"],
            let pid = env["MOTO_PID"].flatMap({ Int32($0) })
        else {
            throw LocalS3Error("LocalS3: \(directory)/env lacks a variable: \(env.keys.sorted())")
        }
        registerChild(pid, marker: "moto_server")
        return Server(
            endpoint: endpoint, accessKeyID: key, secretAccessKey: secret, region: region, processID: pid,
            directory: directory)
    }

    private static func startProxy(upstream: Server, name: String) async throws -> FaultProxy {
        let started = try await startTool(
            "faultproxy.py", ["--upstream", upstream.endpoint, "--verbose"], name: "faultproxy-\(name)",
            marker: "faultproxy", in: upstream.directory)
        return FaultProxy(
            endpoint: "http://127.0.0.1:\(started.port)", port: started.port, processID: started.processID,
            logPath: started.logPath)
    }

    /// A new tools/credserver.py (instance metadata and container credentials endpoints) for this caller alone.
    /// Ends with the process.
    func newCredentialServer() async throws -> CredentialServer {
        let directory = try Self.makeRunDirectory("credserver")
        let started = try await Self.startTool(
            "credserver.py", [], name: "credserver", marker: "credserver", in: directory)
        return CredentialServer(endpoint: "http://127.0.0.1:\(started.port)", logPath: started.logPath)
    }

    /// Starts one of the Python test servers in tools/ (`--port-file` and `--parent-pid` added) and waits for its
    /// port; its standard error goes to `<directory>/<name>.log`.
    private static func startTool(
        _ script: String, _ arguments: [String], name: String, marker: String, in directory: String
    ) async throws -> (port: Int, processID: Int32, logPath: String) {
        let (root, python) = try tools()
        let portFile = directory + "/\(name).port"
        let logFile = directory + "/\(name).log"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments =
            [root + "/tools/" + script] + arguments + ["--port-file", portFile, "--parent-pid", String(getpid())]
        process.environment = environmentWithoutProxies()
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice  // "LISTENING <port>": read from --port-file instead
        process.standardError = try openForWriting(logFile)
        try process.run()
        registerChild(process.processIdentifier, marker: marker)
        proxyProcesses.withLock { $0.append(process) }

        // Generous: a Python interpreter starting while the whole suite keeps two cores busy can take many seconds.
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8),
                let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                return (port, process.processIdentifier, logFile)
            }
            if !process.isRunning {
                let log = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
                throw LocalS3Error("LocalS3: \(script) exited with \(process.terminationStatus): \(log)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        kill(process.processIdentifier, SIGTERM)
        throw LocalS3Error("LocalS3: \(script) did not start listening within 60 s (log: \(logFile))")
    }

    // MARK: Processes

    /// What to end when the test process exits normally: the processes started here (by pid, and a word their
    /// command line must still contain, so that a pid reused by another process is left alone) and the run
    /// directories (kept when LOCAL_S3_KEEP is set, for their logs).
    private struct Cleanup {
        var processes: [(pid: Int32, marker: String)] = []
        var directories: [String] = []
    }
    private static let cleanup = Mutex(Cleanup())
    private static let proxyProcesses = Mutex<[Process]>([])  // tool servers, kept so that Foundation reaps them
    private static let exitHook: Void = {
        atexit { LocalS3.cleanUpAtExit() }
    }()

    private static func registerChild(_ pid: Int32, marker: String) {
        _ = exitHook
        cleanup.withLock { $0.processes.append((pid, marker)) }
    }

    private static func cleanUpAtExit() {
        let work = cleanup.withLock { $0 }
        for (pid, marker) in work.processes where isRunning(pid, marker: marker) {
            kill(pid, SIGTERM)  // and should that not work, their --parent-pid watchdogs end them within a second
        }
        if ProcessInfo.processInfo.environment["LOCAL_S3_KEEP"] == nil {
            for directory in work.directories { try? FileManager.default.removeItem(atPath: directory) }
        }
    }

    /// Whether `pid` is alive and its command line contains `marker` (without /proc: whether it is alive).
    private static func isRunning(_ pid: Int32, marker: String) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard FileManager.default.fileExists(atPath: "/proc/self/cmdline") else { return true }
        guard let commandLine = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        return commandLine.range(of: Data(marker.utf8)) != nil
    }

    private static func makeRunDirectory(_ prefix: String) throws -> String {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)-\(getpid())-\(UUID().uuidString.prefix(8))", isDirectory: true).path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        _ = exitHook
        cleanup.withLock { $0.directories.append(path) }
        return path
    }

    private static func openForWriting(_ path: String) throws -> FileHandle {
        guard FileManager.default.createFile(atPath: path, contents: nil),
            let handle = FileHandle(forWritingAtPath: path)
        else { throw LocalS3Error("LocalS3: cannot create \(path)") }
        return handle
    }

    /// This process's environment without HTTP proxy settings: the tools talk to 127.0.0.1 only.
    private static func environmentWithoutProxies() -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        for name in ["http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            environment[name] = nil
        }
        environment["NO_PROXY"] = "127.0.0.1,localhost"
        environment["no_proxy"] = "127.0.0.1,localhost"
        return environment
    }

    /// Runs a program to its end without blocking a thread; its exit status.
    private static func runProcess(
        _ executable: String, _ arguments: [String], stdoutPath: String, stderrPath: String
    ) async throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environmentWithoutProxies()
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = stdoutPath == "/dev/null" ? FileHandle.nullDevice : try openForWriting(stdoutPath)
        process.standardError = try openForWriting(stderrPath)
        return try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
    }

    /// The variables of `export NAME=VALUE` lines, VALUE quoted the way Python's shlex.quote does.
    static func parseExports(_ text: String) throws -> [String: String] {
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("export ") {
            let assignment = line.dropFirst("export ".count)
            guard let equals = assignment.firstIndex(of: "=") else { continue }
            result[String(assignment[..<equals])] = try shellUnquote(assignment[assignment.index(after: equals)...])
        }
        return result
    }

    private static func shellUnquote(_ word: Substring) throws -> String {
        var output = ""
        var iterator = word.makeIterator()
        while let character = iterator.next() {
            switch character {
            case "'":
                var closed = false
                while let inner = iterator.next() {
                    if inner == "'" {
                        closed = true
                        break
                    }
                    output.append(inner)
                }
                if !closed { throw LocalS3Error("LocalS3: unterminated quote in \(word)") }
            case "\"":
                var closed = false
                while let inner = iterator.next() {
                    if inner == "\"" {
                        closed = true
                        break
                    }
                    if inner == "\\", let escaped = iterator.next() {
                        if !"$`\"\\".contains(escaped) { output.append("\\") }
                        output.append(escaped)
                    } else {
                        output.append(inner)
                    }
                }
                if !closed { throw LocalS3Error("LocalS3: unterminated quote in \(word)") }
            case "\\":
                if let escaped = iterator.next() { output.append(escaped) }
            default:
                output.append(character)
            }
        }
        return output
    }

    // MARK: A minimal HTTP client for 127.0.0.1

    /// The answer to `LocalS3.httpRequest`.
    struct HTTPResult: Sendable {
        let status: Int
        /// Header names lowercased; a repeated header's values joined with ", ".
        let headers: [String: String]
        let body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// One HTTP/1.1 request to 127.0.0.1 on a new connection (`Connection: close`), over a plain POSIX socket, run on
    /// a dispatch thread: for the proxy's control endpoint and unsigned probes. `url` must be `http://127.0.0.1:…`.
    static func httpRequest(
        _ method: String, _ url: String, headers: [String: String] = [:], body: [UInt8] = [],
        timeout: Duration = .seconds(30)
    ) async throws -> HTTPResult {
        guard let components = URLComponents(string: url), components.scheme == "http",
            components.host == "127.0.0.1", let port = components.port
        else { throw LocalS3Error("LocalS3: only http://127.0.0.1:<port> URLs, not \(url)") }
        var target = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        if let query = components.percentEncodedQuery { target += "?" + query }
        let request = target
        return try await withCheckedThrowingContinuation { continuation in
            blockingQueue.async {
                continuation.resume(
                    with: Result {
                        try blockingHTTPRequest(
                            method, port: port, target: request, headers: headers, body: body, timeout: timeout)
                    })
            }
        }
    }

    /// Where blocking requests wait: off the pool Swift's tasks run on.
    private static let blockingQueue = BlockingQueue(label: "local-s3.blocking-http")

    private static func blockingHTTPRequest(
        _ method: String, port: Int, target: String, headers: [String: String], body: [UInt8], timeout: Duration
    ) throws -> HTTPResult {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let sendFlags = Int32(MSG_NOSIGNAL)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        let sendFlags: Int32 = 0
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        guard fd >= 0 else { throw LocalS3Error("LocalS3: socket(): errno \(errno)") }
        defer { close(fd) }

        let seconds = timeout.components.seconds
        var limit = timeval(tv_sec: .init(seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))

        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port)).bigEndian
        address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian  // 127.0.0.1
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            throw LocalS3Error("LocalS3: connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }

        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        if !body.isEmpty || ["POST", "PUT"].contains(method) { head += "Content-Length: \(body.count)\r\n" }
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { head += "\(name): \(value)\r\n" }
        let message = Array((head + "\r\n").utf8) + body
        var sent = 0
        while sent < message.count {
            let n = message[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, sendFlags) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw LocalS3Error("LocalS3: send to 127.0.0.1:\(port): errno \(errno)") }
            sent += n
        }

        var received = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else {
                throw LocalS3Error("LocalS3: receive from 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            received += buffer[0..<n]
        }
        return try parseResponse(received, method: method)
    }

    private static func parseResponse(_ bytes: [UInt8], method: String) throws -> HTTPResult {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let end = bytes.indices.first(where: { bytes[$0...].starts(with: separator) }) else {
            throw LocalS3Error("LocalS3: incomplete HTTP response (\(bytes.count) bytes)")
        }
        let lines = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw LocalS3Error("LocalS3: bad status line \(lines[0])")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers[name] = headers[name].map { $0 + ", " + value } ?? value
        }
        var body = Array(bytes[(end + 4)...])
        if method == "HEAD" {
            body = []
        } else if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            body = try dechunk(body)
        } else if let length = headers["content-length"].flatMap({ Int($0) }) {
            guard body.count >= length else {
                throw LocalS3Error("LocalS3: response body truncated: \(body.count) of \(length) bytes")
            }
            body = Array(body[..<length])
        }
        return HTTPResult(status: status, headers: headers, body: body)
    }

    private static func dechunk(_ bytes: [UInt8]) throws -> [UInt8] {
        var output = [UInt8]()
        var position = 0
        while true {
            guard
                let lineEnd = (position..<max(position, bytes.count - 1)).first(where: {
                    bytes[$0] == 13 && bytes[$0 + 1] == 10
                })
            else { throw LocalS3Error("LocalS3: bad chunked body") }
            let sizeText = String(decoding: bytes[position..<lineEnd], as: UTF8.self)
            guard let size = Int(sizeText.split(separator: ";")[0].trimmingCharacters(in: .whitespaces), radix: 16),
                lineEnd + 2 + size <= bytes.count
            else { throw LocalS3Error("LocalS3: bad chunk size \(sizeText)") }
            if size == 0 { return output }
            output += bytes[(lineEnd + 2)..<(lineEnd + 2 + size)]
            position = lineEnd + 2 + size + 2
        }
    }
}

/// tools/faultproxy.py in front of the local moto_server: see that file for the faults and their exact behaviour.
struct FaultProxy: Sendable {
    /// `http://127.0.0.1:<port>`: give this to the S3 client as its endpoint.
    let endpoint: String
    let port: Int
    let processID: Int32
    /// The proxy's --verbose log (one line per request).
    let logPath: String

    /// A fault rule. `fault` is one of "reset", "drop_response", "error500", "slowdown", "stall",
    /// "stall_mid_request", "stall_mid_response", "delay". It fires on the `nth` matching requests (1-based,
    /// counting only requests that match `method` and `pathRegex`), or with `probability`; with neither, on every
    /// matching request; at most `times` times. `seconds`: how long a stall or delay lasts (default 30; delay: 1).
    /// `pathRegex` is searched for in the request target, query included (e.g. "^/my-bucket/").
    struct Rule: Codable, Sendable, Equatable {
        var fault: String
        var probability: Double?
        var nth: [Int]?
        var method: String?
        var pathRegex: String?
        var seconds: Double?
        var times: Int?

        init(
            fault: String, probability: Double? = nil, nth: [Int]? = nil, method: String? = nil,
            pathRegex: String? = nil, seconds: Double? = nil, times: Int? = nil
        ) {
            self.fault = fault
            self.probability = probability
            self.nth = nth
            self.method = method
            self.pathRegex = pathRegex
            self.seconds = seconds
            self.times = times
        }

        enum CodingKeys: String, CodingKey {
            case fault, probability, nth, method, seconds, times
            case pathRegex = "path_regex"
        }
    }

    /// What `GET /__faultproxy/stats` answers.
    struct Stats: Decodable, Sendable {
        /// Proxied requests seen (control requests are never counted).
        let requests: Int
        /// Requests sent on to the server (including drop_response, stall_mid_response and delay ones).
        let forwarded: Int
        /// Faults injected, by kind (every kind present, 0 when none).
        let faults: [String: Int]
        /// Client connections that carried at least one proxied request.
        let connections: Int
        let upstreamErrors: Int
        let seed: UInt64
        let rules: [RuleState]
        /// The last 1000 requests, oldest first.
        let records: [Record]

        /// How many faults of this kind were injected.
        func count(_ fault: String) -> Int { faults[fault] ?? 0 }

        enum CodingKeys: String, CodingKey {
            case requests, forwarded, faults, connections, seed, rules, records
            case upstreamErrors = "upstream_errors"
        }
    }

    /// A configured rule and how often it matched and fired.
    struct RuleState: Decodable, Sendable {
        let rule: Rule
        let matched: Int
        let fired: Int

        private enum CodingKeys: String, CodingKey { case matched, fired }

        init(from decoder: any Decoder) throws {
            rule = try Rule(from: decoder)
            let container = try decoder.container(keyedBy: CodingKeys.self)
            matched = try container.decode(Int.self, forKey: .matched)
            fired = try container.decode(Int.self, forKey: .fired)
        }
    }

    /// One proxied request.
    struct Record: Decodable, Sendable, Equatable {
        /// 1-based, in the order the requests' heads arrived (since the last reset).
        let n: Int
        let method: String
        /// The request target: path and query, as sent.
        let path: String
        /// The fault injected, or nil when forwarded untouched.
        let fault: String?
        /// The index of the rule that fired.
        let rule: Int?
        /// The status the client got; nil when it got no response (reset, drop_response, stall).
        let status: Int?
    }

    /// Replaces all rules (their counts start at 0) and re-seeds the random generator used for `probability`.
    func configure(_ rules: [Rule], seed: UInt64 = 0) async throws {
        struct Configuration: Encodable {
            let rules: [Rule]
            let seed: UInt64
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let body = try encoder.encode(Configuration(rules: rules, seed: seed))
        _ = try await control("POST", "config", body: Array(body))
    }

    /// The counters and the last requests. `records`: keep only the last so many records (nil: all the proxy has).
    func stats(records: Int? = nil) async throws -> Stats {
        let result = try await control("GET", records.map { "stats?records=\($0)" } ?? "stats")
        return try JSONDecoder().decode(Stats.self, from: Data(result.body))
    }

    /// Clears the counters, the records and the rules' counts; the rules stay.
    func reset() async throws {
        _ = try await control("POST", "reset")
    }

    /// Ends the proxy (for one from `LocalS3.newFaultProxy()`; the shared one is meant to live as long as the process).
    func stop() async throws {
        _ = try await control("POST", "shutdown")
    }

    private func control(_ method: String, _ path: String, body: [UInt8] = []) async throws -> LocalS3.HTTPResult {
        let result = try await LocalS3.httpRequest(
            method, "\(endpoint)/__faultproxy/\(path)", headers: ["Content-Type": "application/json"], body: body,
            timeout: .seconds(10))
        guard result.status == 200 else {
            throw LocalS3Error("FaultProxy: \(method) /__faultproxy/\(path): HTTP \(result.status): \(result.text)")
        }
        return result
    }
}

/// tools/credserver.py: a local EC2 instance metadata service and container credentials endpoint (see that file for
/// the endpoints and settings).
struct CredentialServer: Sendable {
    /// `http://127.0.0.1:<port>`: the IMDS endpoint, and the base of the container credentials URL.
    let endpoint: String
    let logPath: String

    /// What `GET /__credserver/stats` answers.
    struct Stats: Decodable, Sendable {
        let tokenRequests: Int
        let roleRequests: Int
        let credentialRequests: Int
        let containerRequests: Int
        let unauthorized: Int
        let failuresInjected: Int
        /// Access key ids handed out, in order.
        let handedOut: [String]
        /// The Authorization header of each container request (nil: none sent).
        let authorizations: [String?]

        enum CodingKeys: String, CodingKey {
            case tokenRequests = "token_requests", roleRequests = "role_requests"
            case credentialRequests = "credential_requests", containerRequests = "container_requests"
            case unauthorized, failuresInjected = "failures_injected", handedOut = "handed_out", authorizations
        }
    }

    /// One set of credentials the server hands out.
    struct Credentials: Encodable, Sendable {
        let accessKeyID: String
        let secretAccessKey: String
        let token: String

        enum CodingKeys: String, CodingKey {
            case accessKeyID = "AccessKeyId", secretAccessKey = "SecretAccessKey", token = "Token"
        }
    }

    /// Settings to change (nil: leave as is).
    struct Settings: Encodable, Sendable {
        var credentials: [Credentials]?
        var expiresIn: Double?
        /// "v2", "v1" or "optional".
        var imds: String?
        var role: String?
        var containerPath: String?
        var authToken: String?
        var failNext: Int?
        var failStatus: Int?

        enum CodingKeys: String, CodingKey {
            case credentials, expiresIn = "expires_in", imds, role, containerPath = "container_path"
            case authToken = "auth_token", failNext = "fail_next", failStatus = "fail_status"
        }
    }

    func configure(_ settings: Settings) async throws {
        let result = try await LocalS3.httpRequest(
            "POST", "\(endpoint)/__credserver/config", headers: ["Content-Type": "application/json"],
            body: Array(try JSONEncoder().encode(settings)), timeout: .seconds(10))
        guard result.status == 200 else {
            throw LocalS3Error("credserver config: HTTP \(result.status): \(result.text)")
        }
    }

    func stats() async throws -> Stats {
        let result = try await LocalS3.httpRequest("GET", "\(endpoint)/__credserver/stats", timeout: .seconds(10))
        guard result.status == 200 else { throw LocalS3Error("credserver stats: HTTP \(result.status)") }
        return try JSONDecoder().decode(Stats.self, from: Data(result.body))
    }
}

/// A random prefix for one test's keys or bucket: the test's name, lowercased, non-alphanumerics as "-", at most 30
/// characters, then "-" and 8 random hex digits, e.g. "putgetroundtrip-3f09a1c2". A valid bucket name too; as a key
/// prefix append "/".
func uniquePrefix(_ test: String = #function) -> String {
    var name = ""
    for character in test.lowercased() {
        if character.isASCII && (character.isLetter || character.isNumber) {
            name.append(character)
        } else if !name.isEmpty && name.last != "-" {
            name.append("-")
        }
        if name.count >= 30 { break }
    }
    while name.last == "-" { name.removeLast() }
    if name.isEmpty { name = "test" }
    let random = String(UInt32.random(in: .min ... .max), radix: 16)
    return name + "-" + String(repeating: "0", count: 8 - random.count) + random
}
