import BlockingWork
import CCurl
import Dispatch
import Foundation
import Synchronization

/// The body of a request: nothing, bytes in memory, or a range of a file streamed from disk (never loaded whole).
public enum RequestBody: Sendable {
    /// No body.
    case empty
    /// Bytes in memory (small bodies: XML documents, small objects).
    case bytes([UInt8])
    /// `length` bytes of the file at `path` starting at `offset`, read as they are sent.
    case file(path: String, offset: Int64, length: Int64)

    /// The body's length in bytes.
    public var length: Int64 {
        switch self {
        case .empty: 0
        case .bytes(let bytes): Int64(bytes.count)
        case .file(_, _, let length): length
        }
    }
}

/// Where a response body goes.
public enum ResponseDestination: Sendable {
    /// Into memory, refusing bodies larger than `limit` bytes.
    case memory(limit: Int)
    /// Into the file at `path` (created or truncated, mode 0600), streamed.
    case file(path: String)
}

/// One HTTP request as the transport sends it.
public struct HTTPRequest: Sendable {
    /// `GET`, `PUT`, `POST`, `HEAD`, `DELETE`.
    public var method: String
    /// The full URL, already percent-encoded.
    public var url: String
    /// Headers to send, in order. The transport adds none of its own that matter for signing.
    public var headers: [(name: String, value: String)]
    /// The body.
    public var body: RequestBody
    /// Where the response body goes.
    public var destination: ResponseDestination
    /// Bound on the whole exchange; nil for the transport's default.
    public var timeout: Duration?

    /// A request.
    public init(
        method: String, url: String, headers: [(name: String, value: String)] = [], body: RequestBody = .empty,
        destination: ResponseDestination = .memory(limit: 16 << 20), timeout: Duration? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.destination = destination
        self.timeout = timeout
    }
}

/// An HTTP response.
public struct HTTPResponse: Sendable {
    /// The status code.
    public var status: Int
    /// Headers with lowercase names, in order.
    public var headers: [(name: String, value: String)]
    /// The body, for `.memory` destinations.
    public var body: [UInt8]
    /// Body bytes received (also for `.file` destinations).
    public var bodyBytes: Int64
    /// How many new connections the request opened (0 when an idle one was reused).
    public var connectionsOpened: Int

    /// The first header with this name (case-insensitive).
    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.first { $0.name == lowered }?.value
    }
}

/// Sends HTTP requests. The S3 client talks to this protocol, so tests can put something else underneath.
public protocol HTTPTransport: Sendable {
    /// Sends the request and returns the response, whatever its status.
    ///
    /// - Throws: `S3Error` for failures with no HTTP answer: `ConnectionFailed`, `ConnectionReset`, `Timeout`,
    ///   `TransferStalled`, `TLSVerificationFailed`, `ResponseTooLarge`, `InvalidRequest`; `CancellationError` when the
    ///   task is cancelled.
    func execute(_ request: HTTPRequest) async throws -> HTTPResponse
}

/// Timeouts, stall detection and TLS settings of the libcurl transport.
public struct TransportOptions: Sendable {
    /// How long to wait for a TCP (and TLS) connection.
    public var connectTimeout: Duration = .seconds(10)
    /// Default bound on a whole request when the request sets none; nil for no bound.
    public var requestTimeout: Duration? = nil
    /// A transfer slower than this many bytes per second for `lowSpeedWindow` is stalled and aborted.
    public var lowSpeedLimitBytesPerSecond = 1024
    /// The window over which the minimum speed is measured.
    public var lowSpeedWindow: Duration = .seconds(30)
    /// A PEM file of CA certificates to verify servers against, instead of the system's. Verification itself is
    /// always on: there is no option to turn it off.
    public var caBundlePath: String? = nil
    /// Idle connections (curl handles) kept for reuse.
    public var maxIdleConnections = 32

    /// Default options.
    public init() {}
}

/// HTTP over libcurl: a pool of easy handles, each keeping its connection alive between requests; TLS verification
/// always on; connect timeout, total timeout and stalled-transfer detection; bodies streamed from file ranges.
///
/// `curl_easy_perform` blocks, so every transfer runs on a Dispatch thread of its own, never on Swift's cooperative
/// pool; the caller awaits it through a continuation.
public final class CurlTransport: HTTPTransport {
    private let options: TransportOptions
    private let idleHandles = Mutex<[CurlEasy]>([])
    private let queue = BlockingQueue(label: "pipeline-storage.curl")

    /// A transport with these options.
    public init(options: TransportOptions = TransportOptions()) {
        CurlGlobal.initialize()
        self.options = options
    }

    /// Sends the request on a pooled handle.
    public func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        try Self.checkHeaders(request)
        let context = try TransferContext(request: request)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                queue.async { [self] in
                    continuation.resume(with: Result { try perform(request, context: context) })
                }
            }
        } onCancel: {
            context.cancelled.store(true, ordering: .relaxed)
        }
    }

    /// A header value with CR, LF or NUL could split the request: refuse it before anything is sent.
    static func checkHeaders(_ request: HTTPRequest) throws {
        for (name, value) in request.headers {
            let badName = name.isEmpty || name.utf8.contains { $0 <= 0x20 || $0 >= 0x7F || $0 == UInt8(ascii: ":") }
            let badValue = value.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0 }
            if badName || badValue {
                throw S3Error.invalidRequest(
                    "header \(badName ? "name" : "value") of '\(badName ? "?" : name)' contains characters that are "
                        + "not allowed in HTTP headers (CR, LF, NUL, or separators in a name); the request was not sent"
                )
            }
        }
    }

    private func perform(_ request: HTTPRequest, context: TransferContext) throws -> HTTPResponse {
        let easy = try idleHandles.withLock { $0.popLast() } ?? CurlEasy()
        defer {
            context.close()
            idleHandles.withLock { handles in
                if handles.count < options.maxIdleConnections { handles.append(easy) }
            }
        }
        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(headerList) }
        for (name, value) in request.headers {
            headerList = curl_slist_append(headerList, "\(name): \(value)")
        }
        // Keep curl from adding headers of its own: no 100-continue round trip (it can wait a full second on servers
        // that never answer it), no Accept, and no form content type on POST.
        for suppressed in ["Expect:", "Accept:"] { headerList = curl_slist_append(headerList, suppressed) }
        if request.method == "POST", !request.headers.contains(where: { $0.name.lowercased() == "content-type" }) {
            headerList = curl_slist_append(headerList, "Content-Type:")
        }
        let timeout = request.timeout ?? options.requestTimeout
        try easy.configure(
            request: request, headers: headerList, context: context, options: options, timeout: timeout)
        let started = ContinuousClock.now
        let code = curl_easy_perform(easy.handle)
        if code != CURLE_OK {
            throw transportError(
                code, easy: easy, context: context, request: request, elapsed: ContinuousClock.now - started,
                timeout: timeout)
        }
        var status = 0
        var connects = 0
        var value = 0
        if pipeline_curl_easy_getinfo_long(easy.handle, CURLINFO_RESPONSE_CODE, &value) == CURLE_OK { status = value }
        if pipeline_curl_easy_getinfo_long(easy.handle, CURLINFO_NUM_CONNECTS, &value) == CURLE_OK { connects = value }
        return HTTPResponse(
            status: status, headers: context.responseHeaders, body: context.responseBody,
            bodyBytes: context.responseBytes, connectionsOpened: connects)
    }

    private func transportError(
        _ code: CURLcode, easy: CurlEasy, context: TransferContext, request: HTTPRequest, elapsed: Duration,
        timeout: Duration?
    ) -> any Error {
        if context.cancelled.load(ordering: .relaxed) { return CancellationError() }
        if let failure = context.failure { return failure }
        let detail = easy.errorMessage.isEmpty ? String(cString: curl_easy_strerror(code)) : easy.errorMessage
        let host = Self.hostOf(request.url)
        switch code {
        case CURLE_OPERATION_TIMEDOUT:
            if let timeout, elapsed >= timeout {
                return S3Error(
                    status: 0, code: "Timeout", message: "no complete answer from \(host) within \(timeout)",
                    isRetryable: true, isTimeout: true)
            }
            return S3Error(
                status: 0, code: "TransferStalled",
                message: "the transfer with \(host) stalled: slower than \(options.lowSpeedLimitBytesPerSecond) B/s "
                    + "for \(options.lowSpeedWindow), or no connection within \(options.connectTimeout) (\(detail))",
                isRetryable: true, isTimeout: true)
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            return S3Error(
                status: 0, code: "ConnectionFailed", message: "could not connect to \(host): \(detail)",
                isRetryable: true)
        case CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE, CURLE_HTTP2,
            CURLE_HTTP2_STREAM:
            return S3Error(
                status: 0, code: "ConnectionReset", message: "the connection to \(host) broke: \(detail)",
                isRetryable: true)
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM,
            CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH:
            return S3Error(
                status: 0, code: "TLSVerificationFailed",
                message: "the TLS certificate of \(host) could not be verified: \(detail); fix the endpoint, or give "
                    + "the CA that signed it with the CA bundle option", isRetryable: false)
        case CURLE_SSL_CONNECT_ERROR:
            return S3Error(
                status: 0, code: "ConnectionFailed", message: "TLS handshake with \(host) failed: \(detail)",
                isRetryable: true)
        case CURLE_WEIRD_SERVER_REPLY:
            return S3Error(
                status: 0, code: "InvalidResponse", message: "the answer from \(host) is not valid HTTP: \(detail)",
                isRetryable: true)
        case CURLE_UNSUPPORTED_PROTOCOL where detail.contains("HTTP/0.9") || detail.contains("in response"):
            // The server's first bytes were no HTTP status line curl can read ("Received HTTP/0.9 when not allowed",
            // "Unsupported HTTP version in response"): not an S3 endpoint (a wrong port, say).
            return S3Error(
                status: 0, code: "EndpointNotHTTP",
                message:
                    "\(host) answered with something that is not HTTP (\(detail)); check the endpoint URL and port",
                isRetryable: false)
        case CURLE_OUT_OF_MEMORY:
            // What libcurl 7.x reports for a response header over its 100 KiB limit.
            return S3Error(
                status: 0, code: "ResponseHeadersTooLarge",
                message: "the answer from \(host) could not be taken in (\(detail)): libcurl gives this for response "
                    + "headers over 100 KiB", isRetryable: true)
        case CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT:
            return S3Error.invalidRequest("'\(request.url)' cannot be requested: \(detail)")
        case CURLE_READ_ERROR, CURLE_ABORTED_BY_CALLBACK, CURLE_WRITE_ERROR:
            return S3Error(
                status: 0, code: "LocalIOError", message: "local read or write failed during the transfer: \(detail)",
                isRetryable: false)
        default:
            return S3Error(
                status: 0, code: "ConnectionFailed",
                message: "request to \(host) failed: \(detail) (curl \(code.rawValue))",
                isRetryable: true)
        }
    }

    static func hostOf(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        return String(rest.prefix(while: { $0 != "/" && $0 != "?" }))
    }
}

/// libcurl's process-wide set-up, done once before any handle exists.
enum CurlGlobal {
    private static let initialized: Bool = {
        curl_global_init(Int(CURL_GLOBAL_DEFAULT))
        return true
    }()

    static func initialize() { _ = initialized }
}

/// One curl easy handle: owns it, resets it between requests (which keeps its live connection), frees it in deinit.
final class CurlEasy: @unchecked Sendable {
    // @unchecked: a handle serves one transfer at a time — the pool hands it out under its lock and takes it back
    // only after `curl_easy_perform` has returned — so no two threads ever touch it at once.
    let handle: UnsafeMutableRawPointer
    private var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)

    init() throws {
        guard let handle = curl_easy_init() else {
            throw S3Error(status: 0, code: "ConnectionFailed", message: "curl_easy_init failed", isRetryable: false)
        }
        self.handle = handle
    }

    deinit { curl_easy_cleanup(handle) }

    /// `NO_PROXY` from the environment plus the loopback names and the link-local credential endpoints (EC2
    /// instance metadata, ECS/EKS container credentials): a proxy must never see a metadata token or the credentials
    /// those endpoints hand out.
    static let noProxyHosts: String = {
        let environment = ProcessInfo.processInfo.environment
        let configured = environment["NO_PROXY"] ?? environment["no_proxy"] ?? ""
        let local = [
            "localhost", "127.0.0.1", "::1", "169.254.169.254", "169.254.170.2", "169.254.170.23", "fd00:ec2::254",
            "fd00:ec2::23",
        ]
        return ([configured] + local).filter { !$0.isEmpty }.joined(separator: ",")
    }()

    /// Bodies of at least this many bytes are sent through a larger upload buffer.
    static let largeBodyBytes: Int64 = 1 << 20
    /// The upload buffer for large bodies. Small enough to stay in the CPU's second-level cache between the read
    /// that fills it and the copy into the socket that empties it (1 MiB did not, on a 1 MiB L2: 5% more CPU per GiB
    /// sent, and 18 MiB more resident with eight transfers); large enough that a read, a `send()` and a `poll()` per
    /// buffer cost little next to the bytes (64 KiB, libcurl's default, cost more).
    static let largeBodyUploadBufferBytes = 256 << 10

    var errorMessage: String {
        String(decoding: errorBuffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func configure(
        request: HTTPRequest, headers: UnsafeMutablePointer<curl_slist>?, context: TransferContext,
        options: TransportOptions, timeout: Duration?
    ) throws {
        curl_easy_reset(handle)
        errorBuffer.withUnsafeMutableBufferPointer { buffer in
            buffer[0] = 0
            _ = pipeline_curl_easy_setopt_pointer(handle, CURLOPT_ERRORBUFFER, buffer.baseAddress)
        }
        var results: [CURLcode] = []
        results.append(pipeline_curl_easy_setopt_string(handle, CURLOPT_URL, request.url))
        results.append(pipeline_curl_easy_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https"))
        results.append(pipeline_curl_easy_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
        results.append(pipeline_curl_easy_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0))
        // Environment proxies (HTTPS_PROXY, ...) are honoured as the AWS SDKs do, but loopback never goes through
        // one: a local test server or fault proxy must be reached directly.
        results.append(pipeline_curl_easy_setopt_string(handle, CURLOPT_NOPROXY, CurlEasy.noProxyHosts))
        // Send the path exactly as signed: curl would otherwise squash "/./" and "/../" in object keys.
        results.append(pipeline_curl_easy_setopt_long(handle, CURLOPT_PATH_AS_IS, 1))
        results.append(pipeline_curl_easy_setopt_long(handle, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1)))
        // TLS: verification is always on; only the trust anchors can be changed.
        results.append(pipeline_curl_easy_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1))
        results.append(pipeline_curl_easy_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2))
        if let bundle = options.caBundlePath {
            results.append(pipeline_curl_easy_setopt_string(handle, CURLOPT_CAINFO, bundle))
        }
        results.append(pipeline_curl_easy_setopt_long(handle, CURLOPT_TCP_KEEPALIVE, 1))
        results.append(pipeline_curl_easy_setopt_long(handle, CURLOPT_TCP_NODELAY, 1))
        results.append(
            pipeline_curl_easy_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, options.connectTimeout.wholeMilliseconds))
        if let timeout {
            results.append(
                pipeline_curl_easy_setopt_long(handle, CURLOPT_TIMEOUT_MS, max(1, timeout.wholeMilliseconds)))
        }
        results.append(
            pipeline_curl_easy_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, options.lowSpeedLimitBytesPerSecond))
        results.append(
            pipeline_curl_easy_setopt_long(
                handle, CURLOPT_LOW_SPEED_TIME, max(1, options.lowSpeedWindow.wholeMilliseconds / 1000)))
        let length = request.body.length
        switch request.method {
        case "GET":
            results.append(pipeline_curl_easy_setopt_long(handle, CURLOPT_HTTPGET, 1))
        case "HEAD":
            results.append(pipeline_curl_easy_setopt_long(handle, CURLOPT_NOBODY, 1))
        case "PUT":
            results.append(pipeline_curl_easy_setopt_long(handle, CURLOPT_UPLOAD, 1))
            results.append(pipeline_curl_easy_setopt_int64(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(length)))
        case "POST":
            results.append(pipeline_curl_easy_setopt_long(handle, CURLOPT_POST, 1))
            results.append(pipeline_curl_easy_setopt_int64(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(length)))
        default:
            results.append(pipeline_curl_easy_setopt_string(handle, CURLOPT_CUSTOMREQUEST, request.method))
            if length > 0 {
                results.append(pipeline_curl_easy_setopt_long(handle, CURLOPT_UPLOAD, 1))
                results.append(pipeline_curl_easy_setopt_int64(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(length)))
            }
        }
        if length >= CurlEasy.largeBodyBytes {
            // libcurl reads an upload through a 64 KiB buffer by default: a read callback, a send() and a poll() per
            // 64 KiB. Large bodies (multipart parts, big objects) get a larger one, set per request so that small
            // requests keep the default.
            results.append(
                pipeline_curl_easy_setopt_long(handle, CURLOPT_UPLOAD_BUFFERSIZE, CurlEasy.largeBodyUploadBufferBytes))
        }
        results.append(pipeline_curl_easy_setopt_slist(handle, CURLOPT_HTTPHEADER, headers))
        let opaque = Unmanaged.passUnretained(context).toOpaque()
        results.append(pipeline_curl_easy_setopt_data_callback(handle, CURLOPT_READFUNCTION, TransferContext.read))
        results.append(pipeline_curl_easy_setopt_pointer(handle, CURLOPT_READDATA, opaque))
        results.append(pipeline_curl_easy_setopt_seek_callback(handle, CURLOPT_SEEKFUNCTION, TransferContext.seek))
        results.append(pipeline_curl_easy_setopt_pointer(handle, CURLOPT_SEEKDATA, opaque))
        results.append(pipeline_curl_easy_setopt_data_callback(handle, CURLOPT_WRITEFUNCTION, TransferContext.write))
        results.append(pipeline_curl_easy_setopt_pointer(handle, CURLOPT_WRITEDATA, opaque))
        results.append(pipeline_curl_easy_setopt_data_callback(handle, CURLOPT_HEADERFUNCTION, TransferContext.header))
        results.append(pipeline_curl_easy_setopt_pointer(handle, CURLOPT_HEADERDATA, opaque))
        results.append(pipeline_curl_easy_setopt_long(handle, CURLOPT_NOPROGRESS, 0))
        results.append(
            pipeline_curl_easy_setopt_xferinfo_callback(handle, CURLOPT_XFERINFOFUNCTION, TransferContext.progress))
        results.append(pipeline_curl_easy_setopt_pointer(handle, CURLOPT_XFERINFODATA, opaque))
        if let failed = results.first(where: { $0 != CURLE_OK }) {
            throw S3Error.invalidRequest("libcurl refused an option: \(String(cString: curl_easy_strerror(failed)))")
        }
    }
}

/// The state of one transfer, reached from libcurl's callbacks through their context pointer.
final class TransferContext: @unchecked Sendable {
    // @unchecked: the callbacks run on the one thread performing the transfer; `cancelled` is atomic because the
    // cancelling task sets it from another thread; the rest is read after `curl_easy_perform` returned.
    let cancelled = Atomic<Bool>(false)
    private let body: RequestBody
    private var uploadDescriptor: Int32 = -1
    private var uploadPosition: Int64 = 0
    private let destination: ResponseDestination
    private var downloadDescriptor: Int32 = -1
    private(set) var responseHeaders: [(name: String, value: String)] = []
    private(set) var responseBody: [UInt8] = []
    private(set) var responseBytes: Int64 = 0
    private(set) var failure: S3Error?

    init(request: HTTPRequest) throws {
        body = request.body
        destination = request.destination
        if case .file(let path, _, let length) = request.body {
            uploadDescriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard uploadDescriptor >= 0 else {
                throw S3Error(
                    status: 0, code: "LocalIOError",
                    message: "cannot read '\(path)' to send it: \(String(cString: strerror(errno)))", isRetryable: false
                )
            }
            var info = stat()
            if fstat(uploadDescriptor, &info) == 0, case .file(_, let offset, _) = request.body,
                Int64(info.st_size) < offset + length
            {
                Glibc.close(uploadDescriptor)
                throw S3Error(
                    status: 0, code: "LocalIOError",
                    message: "'\(path)' has \(info.st_size) bytes, fewer than the \(offset + length) to send",
                    isRetryable: false)
            }
        }
        if case .file(let path) = request.destination {
            downloadDescriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard downloadDescriptor >= 0 else {
                if uploadDescriptor >= 0 { Glibc.close(uploadDescriptor) }
                throw S3Error(
                    status: 0, code: "LocalIOError",
                    message: "cannot write '\(path)': \(String(cString: strerror(errno)))", isRetryable: false)
            }
        }
    }

    func close() {
        if uploadDescriptor >= 0 { Glibc.close(uploadDescriptor) }
        if downloadDescriptor >= 0 { Glibc.close(downloadDescriptor) }
        uploadDescriptor = -1
        downloadDescriptor = -1
    }

    deinit { close() }

    private static func context(_ pointer: UnsafeMutableRawPointer?) -> TransferContext {
        Unmanaged<TransferContext>.fromOpaque(pointer!).takeUnretainedValue()
    }

    static let read: pipeline_curl_data_callback = { buffer, size, count, pointer in
        let context = TransferContext.context(pointer)
        guard let buffer else { return 0 }
        let capacity = size * count
        switch context.body {
        case .empty:
            return 0
        case .bytes(let bytes):
            let remaining = bytes.count - Int(context.uploadPosition)
            let amount = min(capacity, remaining)
            guard amount > 0 else { return 0 }
            bytes.withUnsafeBytes { raw in
                UnsafeMutableRawPointer(buffer).copyMemory(
                    from: raw.baseAddress! + Int(context.uploadPosition), byteCount: amount)
            }
            context.uploadPosition += Int64(amount)
            return amount
        case .file(let path, let offset, let length):
            let remaining = length - context.uploadPosition
            let amount = Int(min(Int64(capacity), remaining))
            guard amount > 0 else { return 0 }
            while true {
                let got = pread(context.uploadDescriptor, buffer, amount, off_t(offset + context.uploadPosition))
                if got < 0 && errno == EINTR { continue }
                guard got > 0 else {
                    context.failure = S3Error(
                        status: 0, code: "LocalIOError",
                        message: "reading '\(path)' failed or it shrank while being sent", isRetryable: false)
                    return Int(CURL_READFUNC_ABORT)
                }
                context.uploadPosition += Int64(got)
                return got
            }
        }
    }

    static let seek: pipeline_curl_seek_callback = { pointer, offset, origin in
        let context = TransferContext.context(pointer)
        guard origin == SEEK_SET, offset >= 0, offset <= context.body.length else { return CURL_SEEKFUNC_CANTSEEK }
        context.uploadPosition = Int64(offset)
        return CURL_SEEKFUNC_OK
    }

    static let write: pipeline_curl_data_callback = { buffer, size, count, pointer in
        let context = TransferContext.context(pointer)
        let amount = size * count
        guard let buffer, amount > 0 else { return amount }
        switch context.destination {
        case .memory(let limit):
            guard context.responseBody.count + amount <= limit else {
                context.failure = S3Error(
                    status: 0, code: "ResponseTooLarge",
                    message: "the response body is larger than the \(limit) bytes expected", isRetryable: false)
                return 0
            }
            buffer.withMemoryRebound(to: UInt8.self, capacity: amount) { bytes in
                context.responseBody.append(contentsOf: UnsafeBufferPointer(start: bytes, count: amount))
            }
        case .file(let path):
            var written = 0
            while written < amount {
                let result = Glibc.write(context.downloadDescriptor, buffer + written, amount - written)
                if result < 0 && errno == EINTR { continue }
                guard result > 0 else {
                    context.failure = S3Error(
                        status: 0, code: "LocalIOError",
                        message: "writing '\(path)' failed: \(String(cString: strerror(errno)))", isRetryable: false)
                    return 0
                }
                written += result
            }
        }
        context.responseBytes += Int64(amount)
        return amount
    }

    static let header: pipeline_curl_data_callback = { buffer, size, count, pointer in
        let context = TransferContext.context(pointer)
        let amount = size * count
        guard let buffer else { return amount }
        let line = buffer.withMemoryRebound(to: UInt8.self, capacity: amount) {
            String(decoding: UnsafeBufferPointer(start: $0, count: amount), as: UTF8.self)
        }
        if line.hasPrefix("HTTP/") {
            // A new status line (after a 100 Continue, say): the headers before it belonged to another response.
            context.responseHeaders.removeAll()
            return amount
        }
        guard let colon = line.firstIndex(of: ":") else { return amount }
        let name = String(line[..<colon]).lowercased()
        let value = String(line[line.index(after: colon)...]).trimmed(of: " \t\r\n")
        context.responseHeaders.append((name, value))
        return amount
    }

    static let progress: pipeline_curl_xferinfo_callback = { pointer, _, _, _, _ in
        TransferContext.context(pointer).cancelled.load(ordering: .relaxed) ? 1 : 0
    }
}

extension Duration {
    /// The duration in whole milliseconds, for libcurl's `_MS` options.
    var wholeMilliseconds: Int {
        let (seconds, attoseconds) = components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }
}
