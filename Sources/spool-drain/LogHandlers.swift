import Foundation
import Logging
import Synchronization

/// Log lines on standard error: JSON objects (one per line, for collectors) or text (for people).
struct StandardErrorLogHandler: LogHandler {
    enum Format: String {
        case json
        case text
    }

    let label: String
    let format: Format
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    /// Serialises writes so lines from concurrent deliveries never interleave.
    private static let lock = Mutex(())

    init(label: String, format: Format, level: Logger.Level) {
        self.label = label
        self.format = format
        self.logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let level = event.level
        let message = event.message
        let explicit = event.metadata
        var merged = metadata
        for (key, value) in explicit ?? [:] { merged[key] = value }
        let time = Self.timestamp()
        let text: String
        switch format {
        case .json:
            var object: [String: Any] = ["time": time, "level": level.rawValue, "message": message.description]
            for (key, value) in merged { object[key] = "\(value)" }
            let data =
                (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
                ?? Data()
            text = String(decoding: data, as: UTF8.self)
        case .text:
            let details = merged.keys.sorted().map { "\($0)=\(merged[$0]!)" }.joined(separator: " ")
            text = "\(time) \(level.rawValue.uppercased()) \(message)" + (details.isEmpty ? "" : " " + details)
        }
        Self.lock.withLock { _ in
            ProgressLine.clear()
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
    }

    static func timestamp() -> String {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        var parts = tm()
        var seconds = time.tv_sec
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int = 2) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1))-\(pad(parts.tm_mday))T\(pad(parts.tm_hour)):"
            + "\(pad(parts.tm_min)):\(pad(parts.tm_sec)).\(pad(Int32(time.tv_nsec / 1_000_000), 3))Z"
    }
}

/// A one-line progress display on a terminal, redrawn in place; log lines clear it first.
enum ProgressLine {
    private static let shown = Mutex(false)

    static func draw(_ text: String) {
        shown.withLock { shown in
            FileHandle.standardError.write(Data(("\r\u{1B}[2K" + text).utf8))
            shown = true
        }
    }

    static func clear() {
        shown.withLock { shown in
            guard shown else { return }
            FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8))
            shown = false
        }
    }
}
