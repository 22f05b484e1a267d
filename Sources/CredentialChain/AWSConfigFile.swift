import S3

/// One AWS shared config or credentials file, parsed exactly as botocore parses it
/// (`botocore.configloader.raw_config_parse`, which is Python's `configparser.RawConfigParser` with its defaults):
///
/// - `[name]` starts a section; the name is everything between the first `[` and the last `]` of the line, spaces
///   kept (`[ default ]` is the section " default "); text after the `]` is ignored. A `[DEFAULT]` section is not a
///   section of its own: its keys are the defaults of every other section of the file.
/// - `key = value` or `key: value`; the key is what comes before the first `=` or `:`, trimmed and lowercased; the
///   value is trimmed. An empty key, a line with neither delimiter, or a key line before the first section is an
///   error, as is a repeated section or a key repeated within a section.
/// - A line that starts (after leading whitespace) with `#` or `;` is a comment, wherever it is. There are no
///   comments at the end of a line: `region = us-east-1 # main` is the value `us-east-1 # main`.
/// - A line indented deeper than its key line continues the value (joined with a newline); blank lines inside a value
///   are kept, trailing ones dropped. A value whose first line is empty and that continues on indented lines is a
///   nested section (`s3 =` then `  max_concurrent_requests = 10`): each non-blank line must be `key = value`
///   (split at the first `=`, both sides trimmed, the key's case kept).
/// - Lines end at `\n`, `\r\n` or `\r`; the file must be UTF-8.
///
/// Error messages name the file and line and never quote a line (it may hold a secret).
public struct AWSConfigFile: Sendable, Hashable {
    /// One value: a string, or a nested section.
    public enum Value: Sendable, Hashable {
        /// A plain value (continuation lines joined with `\n`).
        case string(String)
        /// A nested section: its keys as written, and their values.
        case section([String: String])
    }

    /// A value and where it was written.
    public struct Entry: Sendable, Hashable {
        /// The value.
        public var value: Value
        /// The 1-based line of its key.
        public var line: Int
    }

    /// A section: its name as written between the brackets, and its keys (lowercased), `[DEFAULT]`'s included.
    public struct Section: Sendable, Hashable {
        /// The name between the brackets.
        public var name: String
        /// The keys, lowercased, and their entries.
        public var entries: [String: Entry]
        /// The 1-based line of the section header.
        public var line: Int
    }

    /// The file's path (for messages).
    public var path: String
    /// The sections in the order they appear, `[DEFAULT]` excluded.
    public var sections: [Section]

    /// Largest file read (botocore has no limit; anything this large is not a config file).
    public static let maximumFileBytes = 4 << 20

    /// Parses the text of a file.
    ///
    /// - Parameters:
    ///   - text: The file's contents.
    ///   - path: The path, for messages.
    /// - Throws: `S3Error` `InvalidConfiguration` naming the file and line of the first problem.
    public static func parse(_ text: String, path: String) throws(S3Error) -> AWSConfigFile {
        var parser = Parser(path: path)
        for (index, line) in splitLines(text).enumerated() {
            try parser.read(line, number: index + 1)
        }
        return try parser.finish()
    }

    /// Reads and parses a file; nil when there is no such file.
    ///
    /// - Throws: `S3Error` `InvalidConfiguration` when the file cannot be read, is too large, is not UTF-8, or does
    ///   not parse.
    public static func load(path: String) throws(S3Error) -> AWSConfigFile? {
        guard let bytes = try BoundedFile.read(path, limit: maximumFileBytes, what: "AWS config file") else {
            return nil
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw .invalidConfiguration("AWS config file '\(path)' is not valid UTF-8; save it as UTF-8")
        }
        return try parse(text, path: path)
    }

    /// The section with this exact name; the last one when several headers resolve to it.
    public func section(_ name: String) -> Section? { sections.last { $0.name == name } }

    /// Lines as Python's universal-newline reading yields them: split at `\r\n`, `\n` or `\r`.
    static func splitLines(_ text: String) -> [Substring.UnicodeScalarView] {
        var lines: [Substring.UnicodeScalarView] = []
        let scalars = text.unicodeScalars
        var start = scalars.startIndex
        var index = start
        while index < scalars.endIndex {
            let scalar = scalars[index]
            if scalar == "\n" || scalar == "\r" {
                lines.append(Substring(text)[start..<index].unicodeScalars)
                var next = scalars.index(after: index)
                if scalar == "\r", next < scalars.endIndex, scalars[next] == "\n" { next = scalars.index(after: next) }
                start = next
                index = next
            } else {
                index = scalars.index(after: index)
            }
        }
        if start < scalars.endIndex { lines.append(Substring(text)[start...].unicodeScalars) }
        return lines
    }

    /// Python's `str.isspace()`: Unicode White_Space plus the four ASCII separators it also counts.
    static func isSpace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value)
    }

    static func trimmed(_ scalars: Substring.UnicodeScalarView) -> Substring.UnicodeScalarView {
        guard let first = scalars.firstIndex(where: { !isSpace($0) }) else { return scalars[scalars.endIndex...] }
        let last = scalars.lastIndex(where: { !isSpace($0) })!
        return scalars[first...last]
    }

    /// The parser's state between lines.
    private struct Parser {
        let path: String
        var sections: [Section] = []
        var defaults: [String: Entry] = [:]
        var defaultsLine = 0
        /// Index into `sections`, or -1 for `[DEFAULT]`; nil before the first header.
        var current: Int?
        var seenSections: Set<String> = []
        var option: String?
        /// The raw lines of each value, joined at the end.
        var pieces: [String: [String]] = [:]
        var indent = 0
        var badLines: [Int] = []

        init(path: String) { self.path = path }

        func failure(_ line: Int, _ problem: String) -> S3Error {
            .invalidConfiguration("AWS config file '\(path)' line \(line): \(problem)")
        }

        func pieceKey(_ option: String) -> String { "\(current ?? -2)\u{0}\(option)" }

        mutating func read(_ line: Substring.UnicodeScalarView, number: Int) throws(S3Error) {
            let value = trimmed(line)
            if value.first == "#" || value.first == ";" { return }
            if value.isEmpty {
                // configparser keeps blank lines inside a value (trailing ones are dropped when joining).
                if let option { pieces[pieceKey(option)]?.append("") }
                return
            }
            let level = line.distance(from: line.startIndex, to: line.firstIndex { !isSpace($0) }!)
            if current != nil, let option, level > indent {
                pieces[pieceKey(option)]?.append(String(value))
                return
            }
            indent = level
            if value.first == "[", let close = value.lastIndex(of: "]"), value.index(after: value.startIndex) < close {
                let name = String(value[value.index(after: value.startIndex)..<close])
                option = nil
                if name == "DEFAULT" {
                    current = -1
                    if defaultsLine == 0 { defaultsLine = number }
                    return
                }
                guard seenSections.insert(name).inserted else {
                    throw failure(number, "section [\(name)] appears twice in this file; merge the two")
                }
                sections.append(Section(name: name, entries: [:], line: number))
                current = sections.count - 1
                return
            }
            guard current != nil else {
                if number == 1, value.first == "\u{FEFF}" {
                    throw failure(number, "the file starts with a byte-order mark; save it as UTF-8 without one")
                }
                throw failure(number, "a setting before the first [section] header; start the file with a section")
            }
            guard let delimiter = value.firstIndex(where: { $0 == "=" || $0 == ":" }) else {
                badLines.append(number)
                return
            }
            let key = String(trimmed(value[..<delimiter])).lowercased()
            guard !key.isEmpty else {
                badLines.append(number)
                return
            }
            let text = String(trimmed(value[value.index(after: delimiter)...]))
            let sectionName = current == -1 ? "DEFAULT" : sections[current!].name
            let exists = current == -1 ? defaults[key] != nil : sections[current!].entries[key] != nil
            if exists {
                throw failure(number, "key '\(key)' appears twice in section [\(sectionName)]; keep one")
            }
            let entry = Entry(value: .string(""), line: number)
            if current == -1 { defaults[key] = entry } else { sections[current!].entries[key] = entry }
            option = key
            pieces[pieceKey(key)] = [text]
        }

        func finish() throws(S3Error) -> AWSConfigFile {
            if let first = badLines.first {
                let others = badLines.count > 1 ? " (and \(badLines.count - 1) more line(s))" : ""
                throw failure(first, "expected 'key = value', a [section] header or a comment\(others)")
            }
            func joined(_ entries: inout [String: Entry], slot: Int) throws(S3Error) {
                for key in Array(entries.keys) {
                    let raw = pieces["\(slot)\u{0}\(key)"] ?? [""]
                    var text = raw.joined(separator: "\n")
                    while let last = text.unicodeScalars.last, isSpace(last) { text.unicodeScalars.removeLast() }
                    entries[key]!.value = try nested(text, key: key, line: entries[key]!.line)
                }
            }
            var defaults = self.defaults
            var sections = self.sections
            try joined(&defaults, slot: -1)
            for index in sections.indices {
                try joined(&sections[index].entries, slot: index)
                for (key, entry) in defaults where sections[index].entries[key] == nil {
                    sections[index].entries[key] = entry
                }
            }
            return AWSConfigFile(path: path, sections: sections)
        }

        /// botocore's `_parse_nested`: a value that starts with a newline is a nested section.
        func nested(_ text: String, key: String, line: Int) throws(S3Error) -> Value {
            guard text.hasPrefix("\n") else { return .string(text) }
            var result: [String: String] = [:]
            for piece in text.split(separator: "\n") {
                let stripped = trimmed(piece.unicodeScalars)
                if stripped.isEmpty { continue }
                guard let equals = stripped.firstIndex(of: "=") else {
                    throw failure(
                        line,
                        "'\(key)' has an empty value followed by indented lines, so it is a nested section, "
                            + "and each of those lines must be 'key = value'")
                }
                result[String(trimmed(stripped[..<equals]))] = String(
                    trimmed(stripped[stripped.index(after: equals)...]))
            }
            return .section(result)
        }
    }
}
