import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Enforces `maxSpoolBytes` and `minFreeDiskBytes`: a writer reserves room before it writes, waits while the spool
/// is full, and after `spoolFullWait` gives up with `spoolFull`. It never drops data and never touches the network.
final class SpoolCapacity: Sendable {
    private struct State {
        var usage: Int64 = 0
        var usageReadAt: ContinuousClock.Instant? = nil
        /// Bytes reserved by writers in this process that are not committed yet.
        var reserved: Int64 = 0
    }

    private let state = Mutex(State())
    private let database: SpoolDatabase
    private let root: String
    let maxSpoolBytes: Int64?
    let minFreeDiskBytes: Int64?
    private let wait: Duration

    /// How stale the cached usage may be: other processes write and drain the same spool.
    private static let usageRefreshInterval: Duration = .milliseconds(250)
    private static let pollInterval: Duration = .milliseconds(100)

    init(database: SpoolDatabase, root: String, maxSpoolBytes: Int64?, minFreeDiskBytes: Int64?, wait: Duration) {
        self.database = database
        self.root = root
        self.maxSpoolBytes = maxSpoolBytes
        self.minFreeDiskBytes = minFreeDiskBytes
        self.wait = wait
    }

    /// Whether any limit is set; when not, reservations cost nothing.
    var isLimited: Bool { maxSpoolBytes != nil || minFreeDiskBytes != nil }

    /// Reserves room for `bytes` more, waiting for the drainer when the spool is full. When `bytes` does not fit but
    /// `minimum` (what the writer really needs) does, reserves `minimum`: reserving ahead must not turn into a refusal.
    ///
    /// - Returns: the bytes reserved: `bytes`, or `minimum`.
    /// - Throws: `SpoolError.spoolFull` after `spoolFullWait`, naming the limit that was hit.
    @discardableResult
    func reserve(_ bytes: Int64, atLeast minimum: Int64? = nil, for url: String) async throws -> Int64 {
        let minimum = Swift.min(minimum ?? bytes, bytes)
        guard isLimited, minimum > 0 else { return 0 }
        let deadline = ContinuousClock.now + wait
        var forceRefresh = false
        while true {
            let usage = try await currentUsage(forceRefresh: forceRefresh)
            let free = minFreeDiskBytes == nil ? Int64.max : freeDiskBytes()
            let (granted, refusal) = state.withLock { state -> (Int64?, String) in
                var refusal = ""
                for amount in bytes > minimum ? [bytes, minimum] : [minimum] {
                    if let maxSpoolBytes, usage + state.reserved + amount > maxSpoolBytes {
                        refusal =
                            "the spool holds \(usage + state.reserved) bytes and its limit maxSpoolBytes is "
                            + "\(maxSpoolBytes)"
                        continue
                    }
                    if let minFreeDiskBytes, free - amount < minFreeDiskBytes {
                        refusal =
                            "the spool's filesystem has \(free) bytes free and minFreeDiskBytes is \(minFreeDiskBytes)"
                        continue
                    }
                    state.reserved += amount
                    return (amount, "")
                }
                return (nil, refusal)
            }
            if let granted { return granted }
            if ContinuousClock.now >= deadline {
                throw SpoolError(
                    .spoolFull,
                    "spool '\(root)' is full: \(refusal), and nothing was freed within \(wait); the resource for "
                        + "\(Validation.quoted(url)) was not kept. Run spool-drain, purge delivered payloads, or raise "
                        + "the limit")
            }
            try await Task.sleep(for: Self.pollInterval)
            forceRefresh = true
        }
    }

    /// Gives back a reservation; `committedBytes` of it are now part of the spool's usage.
    func release(_ bytes: Int64, committedBytes: Int64) {
        guard isLimited, bytes > 0 || committedBytes > 0 else { return }
        state.withLock { state in
            state.reserved -= bytes
            state.usage += committedBytes
        }
    }

    private func currentUsage(forceRefresh: Bool) async throws -> Int64 {
        let cached = state.withLock { state -> Int64? in
            guard let readAt = state.usageReadAt, !forceRefresh,
                ContinuousClock.now - readAt < Self.usageRefreshInterval
            else { return nil }
            return state.usage
        }
        if let cached { return cached }
        let usage = try await database.run { connection in
            try connection.queryFirst(
                "SELECT COALESCE(SUM(size), 0) FROM resources WHERE payload_storage IN ('file', 'inline')"
            ) { $0.int64(0) } ?? 0
        }
        state.withLock { state in
            state.usage = usage
            state.usageReadAt = ContinuousClock.now
        }
        return usage
    }

    private func freeDiskBytes() -> Int64 {
        var info = statvfs()
        guard statvfs(root, &info) == 0 else { return Int64.max }
        return Int64(info.f_bavail) * Int64(info.f_frsize)
    }
}
