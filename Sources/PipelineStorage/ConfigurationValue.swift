import Foundation
import Spool

/// A value read from the configuration file (JSON) or from an environment variable (always text), with where it came
/// from, so that an error can name both.
struct ConfigurationValue {
    /// What was read.
    enum Raw: Codable {
        case string(String)
        case bool(Bool)
        case number(Double)
        case object([String: Raw])
        case array([Raw])
        case null

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() {
                self = .null
            } else if let value = try? container.decode(Bool.self) {
                self = .bool(value)
            } else if let value = try? container.decode(Double.self) {
                self = .number(value)
            } else if let value = try? container.decode(String.self) {
                self = .string(value)
            } else if let value = try? container.decode([String: Raw].self) {
                self = .object(value)
            } else {
                self = .array(try container.decode([Raw].self))
            }
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .string(let value): try container.encode(value)
            case .bool(let value): try container.encode(value)
            case .number(let value): try container.encode(value)
            case .object(let value): try container.encode(value)
            case .array(let value): try container.encode(value)
            case .null: try container.encodeNil()
            }
        }

        /// The value as it would be written in the file, for error messages (bounded).
        var display: String {
            let text: String
            switch self {
            case .string(let value): text = "\"\(value)\""
            case .bool(let value): text = String(value)
            case .number(let value):
                text = value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
            case .object: text = "an object"
            case .array: text = "a list"
            case .null: text = "null"
            }
            return text.count > 80 ? String(text.prefix(77)) + "..." : text
        }
    }

    let raw: Raw
    /// `key 's3.maxRetries' in /etc/app/storage.json` or `PIPELINE_STORAGE_S3_MAX_RETRIES`.
    let source: String

    func reject(_ problem: String) -> SpoolError {
        SpoolError(.invalidConfiguration, "\(source) = \(raw.display) \(problem)")
    }

    /// Text; numbers and booleans in the file are not silently turned into text.
    func string() throws -> String {
        guard case .string(let value) = raw else { throw reject("is not text; write it in quotes") }
        guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw reject("contains control characters (a newline?); remove them")
        }
        return value
    }

    /// Text that may be empty, mapped to nil when it is.
    func optionalString() throws -> String? {
        if case .null = raw { return nil }
        let value = try string()
        return value.isEmpty ? nil : value
    }

    func bool() throws -> Bool {
        switch raw {
        case .bool(let value): return value
        case .string(let text):
            switch text.lowercased() {
            case "true", "yes", "on", "1": return true
            case "false", "no", "off", "0": return false
            default: break
            }
        default: break
        }
        throw reject("is not a boolean; use true or false")
    }

    func integer(in range: ClosedRange<Int>) throws -> Int {
        let number: Double?
        switch raw {
        case .number(let value): number = value
        case .string(let text): number = Double(text.trimmingCharacters(in: .whitespaces))
        default: number = nil
        }
        guard let number, number == number.rounded(), number >= Double(range.lowerBound),
            number <= Double(range.upperBound)
        else { throw reject("is not a whole number in \(range.lowerBound)...\(range.upperBound)") }
        return Int(number)
    }

    /// A size in bytes: a number, or text with a unit (`64MiB`, `5 GB`).
    func bytes() throws -> Int64 {
        switch raw {
        case .number(let value) where value >= 0 && value == value.rounded() && value < 9e18: return Int64(value)
        case .string(let text):
            if let value = Quantities.parseBytes(text) { return value }
        default: break
        }
        throw reject("is not a size; use a number of bytes or a size with a unit such as 64MiB")
    }

    /// A duration: a number of seconds, or text with units (`500ms`, `30s`, `15m`).
    func duration() throws -> Duration {
        switch raw {
        case .number(let value) where value.isFinite && value >= 0 && value < 1e12:
            return .milliseconds(Int64(value * 1000))
        case .string(let text):
            if let milliseconds = Quantities.parseMilliseconds(text) { return .milliseconds(milliseconds) }
        default: break
        }
        throw reject("is not a duration; use a number of seconds or a duration such as 500ms, 30s or 15m")
    }

    /// A JSON object decoded as `T` (the file only: a variable holds JSON text, parsed the same way).
    func decoded<T: Decodable>(_ type: T.Type) throws -> T {
        let data: Data
        switch raw {
        case .object, .array: data = try JSONEncoder().encode(raw)
        case .string(let text): data = Data(text.utf8)
        default: throw reject("is not a JSON object")
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw reject("is not a valid value here (\(String(describing: error).prefix(160))); see the README")
        }
    }

    func choice<T>(_ choices: [(String, T)]) throws -> T {
        let text = try string()
        if let match = choices.first(where: { $0.0 == text.lowercased() || $0.0 == text }) { return match.1 }
        throw reject("is not one of " + choices.map(\.0).joined(separator: ", "))
    }
}

/// The closest name to `name` among `candidates` (Levenshtein distance at most a third of its length), for "did you
/// mean" hints.
func closestName(to name: String, among candidates: [String]) -> String? {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        var previous = Array(0...b.count)
        for (i, ca) in a.enumerated() {
            var current = [i + 1] + Array(repeating: 0, count: b.count)
            for (j, cb) in b.enumerated() {
                current[j + 1] = min(previous[j + 1] + 1, current[j] + 1, previous[j] + (ca == cb ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
    let lowered = Array(name.lowercased())
    let scored = candidates.map { ($0, distance(lowered, Array($0.lowercased()))) }
    guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(2, lowered.count / 3) else { return nil }
    return best.0
}
