/// When `writeResource` returns, relative to the disk.
public enum Durability: Sendable, Hashable {
    /// Each resource is committed with its own fsync: durable on return, lowest latency for one writer.
    case fsync
    /// Group commit: concurrent writers share one fsync. Still durable on return; a writer may wait up to
    /// `maxDelay` for others to join its commit.
    case batched(maxDelay: Duration)

    /// Group commit with the default delay (5 ms).
    public static var batched: Durability { .batched(maxDelay: .milliseconds(5)) }
}

/// How a spool is opened: durability, limits and tunables.
public struct SpoolOptions: Sendable {
    /// When writes are durable: `.fsync` (default) or `.batched(maxDelay:)`.
    public var durability: Durability = .fsync
    /// Payloads up to this size are kept in the index itself, so that one commit makes them durable; larger ones get a
    /// file under `data/`. At most 1 MiB.
    public var inlineThresholdBytes: Int = 64 << 10
    /// The most payload bytes the spool may hold (pending, uploading, failed and retained); nil for no limit.
    public var maxSpoolBytes: Int64? = nil
    /// Writers wait when the spool's filesystem has less free space than this; nil for no floor.
    public var minFreeDiskBytes: Int64? = nil
    /// How long a writer waits for the drainer to free space before it throws `spoolFull`.
    public var spoolFullWait: Duration = .seconds(30)
    /// How long an SQLite call waits for another process's lock before it fails.
    public var busyTimeout: Duration = .seconds(30)
    /// Create the spool directory and index when missing. Operator tools turn this off, so that a mistyped path
    /// is reported instead of becoming a new, empty spool.
    public var createIfMissing = true
    /// The clock rows are stamped with.
    public var clock: any SpoolClock = SystemClock()

    /// The largest allowed `inlineThresholdBytes`.
    public static let maximumInlineThresholdBytes = 1 << 20

    /// Default options: `.fsync`, 64 KiB inline threshold, no limits.
    public init() {}

    /// The options, checked.
    ///
    /// - Throws: `SpoolError.invalidConfiguration` naming the option and the value.
    public func validated() throws -> SpoolOptions {
        guard (0...Self.maximumInlineThresholdBytes).contains(inlineThresholdBytes) else {
            throw SpoolError(
                .invalidConfiguration,
                "inlineThresholdBytes \(inlineThresholdBytes) is out of range; use "
                    + "0...\(Self.maximumInlineThresholdBytes)"
            )
        }
        if let maxSpoolBytes, maxSpoolBytes <= 0 {
            throw SpoolError(
                .invalidConfiguration, "maxSpoolBytes \(maxSpoolBytes) must be positive; leave it unset for no limit")
        }
        if let minFreeDiskBytes, minFreeDiskBytes < 0 {
            throw SpoolError(.invalidConfiguration, "minFreeDiskBytes \(minFreeDiskBytes) must not be negative")
        }
        if case .batched(let maxDelay) = durability, maxDelay < .zero || maxDelay > .seconds(1) {
            throw SpoolError(
                .invalidConfiguration, "batched maxDelay \(maxDelay) is out of range; use 0 to 1 second")
        }
        return self
    }

    /// The spool directory used when none is given: `$PIPELINE_SPOOL_DIR`, else
    /// `$XDG_STATE_HOME/pipeline-storage/spool`, else `~/.local/state/pipeline-storage/spool`.
    public static func defaultDirectory(environment: [String: String]) -> String {
        if let explicit = environment["PIPELINE_SPOOL_DIR"], !explicit.isEmpty { return explicit }
        if let state = environment["XDG_STATE_HOME"], !state.isEmpty { return state + "/pipeline-storage/spool" }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        return home + "/.local/state/pipeline-storage/spool"
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
