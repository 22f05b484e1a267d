import Spool

/// Sizes and durations in the units people read, and parsing of what they type.
public enum Units {
    /// `0 B`, `512 B`, `4.0 KiB`, `12.3 MiB`, `1.50 GiB`.
    public static func bytes(_ count: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(count)
        var unit = 0
        while abs(value) >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(count) B" }
        let digits = abs(value) < 10 ? 2 : (abs(value) < 100 ? 1 : 0)
        return format(value, fractionDigits: digits) + " " + units[unit]
    }

    /// `850ms`, `42s`, `5m 02s`, `3h 04m`, `2d 05h`.
    public static func duration(milliseconds: Int64) -> String {
        let negative = milliseconds < 0
        let total = abs(milliseconds)
        let text: String
        if total < 1000 {
            text = "\(total)ms"
        } else if total < 60_000 {
            text = "\(total / 1000)s"
        } else if total < 3_600_000 {
            text = "\(total / 60_000)m " + twoDigits((total / 1000) % 60) + "s"
        } else if total < 86_400_000 {
            text = "\(total / 3_600_000)h " + twoDigits((total / 60_000) % 60) + "m"
        } else {
            text = "\(total / 86_400_000)d " + twoDigits((total / 3_600_000) % 24) + "h"
        }
        return negative ? "-" + text : text
    }

    /// A fixed-point decimal without Foundation's locale-dependent formatting.
    public static func format(_ value: Double, fractionDigits: Int) -> String {
        guard value.isFinite else { return value.isNaN ? "nan" : (value < 0 ? "-inf" : "inf") }
        var scale = 1.0
        for _ in 0..<fractionDigits { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        let whole = Int64(scaled / scale)
        let fraction = Int64(scaled - Double(whole) * scale)
        var text = (value < 0 && scaled != 0 ? "-" : "") + String(whole)
        if fractionDigits > 0 {
            let digits = String(fraction)
            text += "." + String(repeating: "0", count: fractionDigits - digits.count) + digits
        }
        return text
    }

    /// An ISO 8601 UTC timestamp for Unix milliseconds: `2026-11-24T15:12:03.042Z`.
    public static func timestamp(milliseconds: Int64) -> String {
        let days = floorDivide(milliseconds, 86_400_000)
        let inDay = milliseconds - days * 86_400_000
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = floorDivide(z, 146_097)
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        let hours = inDay / 3_600_000
        let minutes = (inDay / 60_000) % 60
        let seconds = (inDay / 1000) % 60
        let millis = inDay % 1000
        return "\(year)-\(twoDigits(month))-\(twoDigits(day))T\(twoDigits(hours)):\(twoDigits(minutes)):"
            + "\(twoDigits(seconds)).\(String(repeating: "0", count: 3 - String(millis).count))\(millis)Z"
    }

    /// Parses a size: `4096`, `4k`, `4KiB`, `64MiB`, `2G`, `1.5GiB` (binary multiples; `kB`/`MB` are decimal).
    public static func parseBytes(_ text: String) -> Int64? { Quantities.parseBytes(text) }

    /// Parses a duration: `500ms`, `30s`, `5m`, `2h`, `7d`, or combinations like `1h30m`; a bare number is seconds.
    public static func parseDuration(_ text: String) -> Int64? { Quantities.parseMilliseconds(text) }

    /// Parses a point in time as Unix milliseconds: ISO 8601 (`2026-11-24T10:00:00Z`, `2026-11-24T10:00:00.250+01:00`,
    /// `2026-11-24T10:00Z`, `2026-11-24` for midnight UTC; no zone means UTC), or a duration ago (`2h`, `1d`, `90m`)
    /// counted back from `now`.
    public static func parseTime(_ text: String, now: Int64) -> Int64? {
        let trimmed = text.trimmingWhitespace()
        if let ago = parseDuration(trimmed), !trimmed.contains("-") { return now - ago }
        return parseTimestamp(trimmed)
    }

    /// Parses an ISO 8601 date or date-time (see `parseTime`) as Unix milliseconds.
    public static func parseTimestamp(_ text: String) -> Int64? {
        var scanner = Array(text.trimmingWhitespace().utf8)[...]
        func number(_ digits: Int) -> Int64? {
            guard scanner.count >= digits else { return nil }
            var value: Int64 = 0
            for byte in scanner.prefix(digits) {
                guard byte >= 48 && byte <= 57 else { return nil }
                value = value * 10 + Int64(byte - 48)
            }
            scanner = scanner.dropFirst(digits)
            return value
        }
        func take(_ character: Character) -> Bool {
            guard let first = scanner.first, first == character.asciiValue else { return false }
            scanner = scanner.dropFirst()
            return true
        }
        guard let year = number(4), take("-"), let month = number(2), take("-"), let day = number(2),
            (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var milliseconds: Int64 = 0
        if take("T") || take("t") || take(" ") {
            guard let hour = number(2), take(":"), let minute = number(2), hour < 24, minute < 60 else { return nil }
            milliseconds = (hour * 60 + minute) * 60_000
            if take(":") {
                guard let second = number(2), second < 61 else { return nil }
                milliseconds += second * 1000
                if take(".") || take(",") {
                    var scale: Int64 = 100
                    var digits = 0
                    while let byte = scanner.first, byte >= 48 && byte <= 57 {
                        milliseconds += Int64(byte - 48) * scale
                        scale /= 10
                        digits += 1
                        scanner = scanner.dropFirst()
                    }
                    guard digits > 0 else { return nil }
                }
            }
            if take("Z") || take("z") {
            } else if let sign = scanner.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
                scanner = scanner.dropFirst()
                guard let hours = number(2) else { return nil }
                _ = take(":")
                guard let minutes = number(2), hours < 24, minutes < 60 else { return nil }
                let offset = (hours * 60 + minutes) * 60_000
                milliseconds += sign == UInt8(ascii: "+") ? -offset : offset
            }
        }
        guard scanner.isEmpty else { return nil }
        return daysFromCivil(year: year, month: month, day: day) * 86_400_000 + milliseconds
    }

    /// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    private static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = floorDivide(y, 400)
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    private static func twoDigits(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }

    private static func floorDivide(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : (a - b + 1) / b }
}
