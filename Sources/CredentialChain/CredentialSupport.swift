import Foundation
import S3

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads small files (config files, token files) whole, refusing absurd sizes.
enum BoundedFile {
    /// The file's bytes; nil when there is no such file (or it is a directory, as botocore's `isfile` sees it).
    ///
    /// - Throws: `S3Error` `InvalidConfiguration` when it cannot be read or holds more than `limit` bytes.
    static func read(_ path: String, limit: Int, what: String) throws(S3Error) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        if descriptor < 0 {
            let code = errno
            if code == ENOENT || code == ENOTDIR { return nil }
            throw .invalidConfiguration("cannot read \(what) '\(path)': \(String(cString: strerror(code)))")
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw .invalidConfiguration("cannot read \(what) '\(path)': \(String(cString: strerror(errno)))")
        }
        if (info.st_mode & S_IFMT) == S_IFDIR { return nil }
        guard Int(info.st_size) <= limit else {
            throw .invalidConfiguration(
                "\(what) '\(path)' has \(info.st_size) bytes, more than the \(limit) accepted; is it the right file?")
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let got = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if got < 0 && errno == EINTR { continue }
            guard got >= 0 else {
                throw .invalidConfiguration("cannot read \(what) '\(path)': \(String(cString: strerror(errno)))")
            }
            if got == 0 { return bytes }
            bytes += buffer[0..<got]
            if bytes.count > limit {
                throw .invalidConfiguration("\(what) '\(path)' has more than the \(limit) bytes accepted")
            }
        }
    }
}

/// Keeping secrets out of error messages.
enum Redaction {
    static let placeholder = "<redacted>"

    /// `text` with every occurrence of each secret replaced.
    static func scrub(_ text: String, removing secrets: [String?]) -> String {
        var result = text
        for case let secret? in secrets where secret.count >= 4 {
            result = result.replacingOccurrences(of: secret, with: placeholder)
        }
        return result
    }

    /// The error with the secrets taken out of its message.
    static func scrub(_ error: S3Error, removing secrets: [String?]) -> S3Error {
        var scrubbed = error
        scrubbed.message = scrub(error.message, removing: secrets)
        return scrubbed
    }

    /// A bounded, secret-free excerpt of output we did not write (a credential process's stderr, an endpoint's error
    /// body): its first non-blank line, at most `limit` characters, with every word that could be a key, secret or
    /// token — 16 or more characters mixing letters and digits — replaced.
    static func excerpt(_ bytes: [UInt8], limit: Int = 160) -> String {
        let text = String(decoding: bytes.prefix(4096), as: UTF8.self)
        let line =
            text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .first { !$0.isEmpty } ?? ""
        let words = line.split(separator: " ", omittingEmptySubsequences: false).map { word -> String in
            let looksSecret =
                word.count >= 16 && word.contains(where: \.isLetter) && word.contains(where: \.isNumber)
            return looksSecret ? placeholder : String(word)
        }
        let joined = words.joined(separator: " ").filter { !$0.isASCII || $0.asciiValue! >= 0x20 }
        return joined.count > limit ? String(joined.prefix(limit)) + "…" : joined
    }
}

/// ISO 8601 timestamps as credential documents have them: `2026-01-31T12:00:00Z`, with optional fractional seconds
/// and a `Z`, `±hh:mm` or `±hhmm` zone.
enum Timestamp {
    static func parse(_ text: String) -> Date? {
        let scalars = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= scalars.count else { return nil }
            var value = 0
            for byte in scalars[range] {
                guard (0x30...0x39).contains(byte) else { return nil }
                value = value * 10 + Int(byte - 0x30)
            }
            return value
        }
        guard scalars.count >= 19, scalars[4] == 0x2D, scalars[7] == 0x2D, scalars[10] == 0x54 || scalars[10] == 0x74,
            scalars[13] == 0x3A, scalars[16] == 0x3A,
            let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
            let minute = number(14..<16), let second = number(17..<19),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var index = 19
        var fraction = 0.0
        if index < scalars.count, scalars[index] == 0x2E {
            index += 1
            var scale = 0.1
            let start = index
            while index < scalars.count, (0x30...0x39).contains(scalars[index]) {
                fraction += Double(scalars[index] - 0x30) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        var offset = 0
        guard index < scalars.count else { return nil }  // a zone is required: a local time is ambiguous
        switch scalars[index] {
        case 0x5A, 0x7A:  // Z
            index += 1
        case 0x2B, 0x2D:  // + or -
            let sign = scalars[index] == 0x2B ? 1 : -1
            let rest = String(decoding: scalars[(index + 1)...], as: UTF8.self).replacingOccurrences(of: ":", with: "")
            guard rest.count == 4, let hours = Int(rest.prefix(2)), let minutes = Int(rest.suffix(2)) else {
                return nil
            }
            offset = sign * (hours * 3600 + minutes * 60)
            index = scalars.count
        default:
            return nil
        }
        guard index == scalars.count else { return nil }
        let days = HTTPDate.daysSinceEpoch(year: year, month: month, day: day)
        let seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: TimeInterval(seconds) + fraction)
    }
}

/// The JSON credential documents of `credential_process`, container endpoints and instance metadata.
enum CredentialsDocument {
    /// Credentials from a JSON object with `AccessKeyId`, `SecretAccessKey`, and optionally the token under
    /// `tokenKey` and an `Expiration`. (botocore requires the token and expiration of container and instance
    /// credentials; the AWS SDK for Go does not, and neither is needed to sign.)
    ///
    /// - Parameters:
    ///   - source: Names where the document came from, for messages.
    /// - Throws: `S3Error` `InvalidCredentials` naming the missing or malformed field (never a value).
    static func parse(_ bytes: [UInt8], tokenKey: String, source: String) throws(S3Error) -> AWSCredentials {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw invalid("\(source) did not answer with a JSON object (\(bytes.count) bytes; not shown)")
        }
        return try parse(object, tokenKey: tokenKey, source: source)
    }

    static func parse(_ object: [String: Any], tokenKey: String, source: String) throws(S3Error) -> AWSCredentials {
        func field(_ name: String, required: Bool) throws(S3Error) -> String? {
            switch object[name] {
            case let value as String where !value.isEmpty: return value
            case nil where !required, is NSNull where !required: return nil
            default: throw invalid("\(source): '\(name)' is missing, empty or not a string")
            }
        }
        guard let keyID = try field("AccessKeyId", required: true),
            let secret = try field("SecretAccessKey", required: true)
        else { throw invalid("\(source): no AccessKeyId or SecretAccessKey") }
        let token = try field(tokenKey, required: false)
        var expiration: Date?
        if let text = try field("Expiration", required: false) {
            guard let date = Timestamp.parse(text) else {
                throw invalid("\(source): 'Expiration' is not an ISO 8601 time such as 2026-01-31T12:00:00Z")
            }
            expiration = date
        }
        return AWSCredentials(accessKeyID: keyID, secretAccessKey: secret, sessionToken: token, expiration: expiration)
    }

    static func invalid(_ message: String) -> S3Error {
        S3Error(status: 0, code: "InvalidCredentials", message: message, isRetryable: false)
    }
}

extension Dictionary where Key == String, Value == String {
    /// The variable's value, nil when unset or empty.
    func nonEmpty(_ name: String) -> String? {
        guard let value = self[name], !value.isEmpty else { return nil }
        return value
    }
}

/// Paths as botocore expands them (`os.path.expandvars`, then `os.path.expanduser`).
enum PathExpansion {
    /// `$NAME` and `${NAME}` replaced when set (left as written otherwise), then a leading `~` or `~/` by `HOME`.
    static func expand(_ path: String, environment: [String: String]) -> String {
        var output = ""
        var scalars = Substring(path).unicodeScalars[...]
        func isNameScalar(_ scalar: Unicode.Scalar) -> Bool {
            scalar == "_" || (scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar)))
        }
        while let scalar = scalars.first {
            scalars = scalars.dropFirst()
            guard scalar == "$" else {
                output.unicodeScalars.append(scalar)
                continue
            }
            if scalars.first == "{", let close = scalars.firstIndex(of: "}") {
                let name = String(String.UnicodeScalarView(scalars[scalars.index(after: scalars.startIndex)..<close]))
                if let value = environment[name], !name.isEmpty {
                    output += value
                    scalars = scalars[scalars.index(after: close)...]
                    continue
                }
            } else {
                let name = String(String.UnicodeScalarView(scalars.prefix(while: isNameScalar)))
                if !name.isEmpty, let value = environment[name] {
                    output += value
                    scalars = scalars.dropFirst(name.unicodeScalars.count)
                    continue
                }
            }
            output.unicodeScalars.append(scalar)
        }
        if output == "~" || output.hasPrefix("~/"), let home = environment.nonEmpty("HOME") ?? accountHome() {
            output = home + output.dropFirst()
        }
        return output
    }

    /// The home directory of the account, as Python's `expanduser` falls back to it when `HOME` is not set.
    private static func accountHome() -> String? {
        guard let entry = getpwuid(getuid()), let directory = entry.pointee.pw_dir else { return nil }
        let home = String(cString: directory)
        return home.isEmpty ? nil : home
    }
}
