/// Sizes and durations as people write them in options, configuration files and environment variables.
public enum Quantities {
    /// Parses a size: `4096`, `4k`, `4KiB`, `64MiB`, `2G`, `1.5GiB` (binary multiples; `kB`/`MB` are decimal).
    public static func parseBytes(_ text: String) -> Int64? {
        let trimmed = text.trimmingWhitespace()
        let numberPart = trimmed.prefix(while: { $0.isNumber || $0 == "." })
        guard !numberPart.isEmpty, let number = Double(numberPart), number >= 0 else { return nil }
        let suffix = trimmed.dropFirst(numberPart.count).trimmingWhitespace().lowercased()
        let multipliers: [String: Double] = [
            "": 1, "b": 1,
            "k": 1024, "kib": 1024, "kb": 1000,
            "m": 1_048_576, "mib": 1_048_576, "mb": 1e6,
            "g": 1_073_741_824, "gib": 1_073_741_824, "gb": 1e9,
            "t": 1_099_511_627_776, "tib": 1_099_511_627_776, "tb": 1e12,
        ]
        guard let multiplier = multipliers[suffix] else { return nil }
        let value = (number * multiplier).rounded()
        guard value < 9e18 else { return nil }
        return Int64(value)
    }

    /// Parses a duration: `500ms`, `30s`, `5m`, `2h`, `7d`, or combinations like `1h30m`; a bare number is seconds.
    public static func parseMilliseconds(_ text: String) -> Int64? {
        var rest = Substring(text.trimmingWhitespace().lowercased())
        guard !rest.isEmpty else { return nil }
        if let seconds = Double(rest) {
            // "inf", "nan", "1e300" parse as Double; none is a duration.
            guard seconds.isFinite, seconds >= 0, seconds < 1e12 else { return nil }
            return Int64(seconds * 1000)
        }
        var total: Double = 0
        while !rest.isEmpty {
            let numberPart = rest.prefix(while: { $0.isNumber || $0 == "." })
            guard let number = Double(numberPart) else { return nil }
            rest = rest.dropFirst(numberPart.count)
            let unit = rest.prefix(while: { $0.isLetter })
            rest = rest.dropFirst(unit.count)
            switch unit {
            case "ms": total += number
            case "s": total += number * 1000
            case "m": total += number * 60_000
            case "h": total += number * 3_600_000
            case "d": total += number * 86_400_000
            case "w": total += number * 604_800_000
            default: return nil
            }
        }
        guard total < 1e15 else { return nil }
        return Int64(total)
    }
}

extension StringProtocol {
    /// The text without leading and trailing whitespace (Unicode's, not only ASCII).
    package func trimmingWhitespace() -> String {
        String(drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }
}
