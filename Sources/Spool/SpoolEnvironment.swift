#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The wall clock the spool stamps rows with, injectable so tests can move time.
public protocol SpoolClock: Sendable {
    /// The current time in Unix milliseconds.
    func nowMilliseconds() -> Int64
}

/// The system's real-time clock.
public struct SystemClock: SpoolClock {
    /// Creates the system clock.
    public init() {}

    /// The current time in Unix milliseconds.
    public func nowMilliseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }
}

/// Who is acting, for the audit trail: user, host and process id.
public struct ActorIdentity: Sendable, Hashable, Codable {
    /// The user name (or uid when it has no name).
    public var user: String
    /// The host name.
    public var host: String
    /// The process id.
    public var pid: Int

    /// The identity of this process.
    public static let current: ActorIdentity = {
        let uid = geteuid()
        var user = "uid \(uid)"
        if let entry = getpwuid(uid), let name = entry.pointee.pw_name { user = String(cString: name) }
        var hostBuffer = [CChar](repeating: 0, count: 256)
        let host =
            gethostname(&hostBuffer, hostBuffer.count - 1) == 0
            ? String(decoding: hostBuffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            : "unknown"
        return ActorIdentity(user: user, host: host, pid: Int(getpid()))
    }()
}

/// Whether a process with this pid is alive on this host (signal 0 probes without signalling).
func processIsAlive(_ pid: Int) -> Bool {
    if kill(pid_t(pid), 0) == 0 { return true }
    return errno == EPERM
}
