/// A parsed XML element: what S3's responses and errors are made of.
///
/// A small strict reader for the XML S3 and STS send: elements, attributes, text, CDATA, comments, processing
/// instructions, the five named entities and numeric character references. Namespaces are kept out of the way: an
/// element's `name` is its local name (`s3:Key` and `Key` both read as `Key`). No DTDs, no external entities — a
/// document that has one is refused, which also rules out entity-expansion attacks.
public struct XMLNode: Sendable, Hashable {
    /// The element's local name.
    public var name: String
    /// Attributes by local name.
    public var attributes: [String: String]
    /// Child elements, in document order.
    public var children: [XMLNode]
    /// The element's own text (concatenated text and CDATA directly inside it), untrimmed.
    public var text: String

    /// An element to send: a name, attributes (e.g. `xmlns`), child elements and text.
    public init(_ name: String, attributes: [String: String] = [:], text: String = "", children: [XMLNode] = []) {
        self.name = name
        self.attributes = attributes
        self.children = children
        self.text = text
    }

    /// An element holding only text: `<Days>30</Days>`.
    public static func text(_ name: String, _ text: String) -> XMLNode { XMLNode(name, text: text) }

    /// The element as XML text: attributes in name order, escaped text before the children. What `parse` read comes
    /// back equivalent (namespace declarations excepted: `parse` drops them, so give the root its `xmlns` again).
    public func serialized() -> String {
        var output = "<" + name
        for key in attributes.keys.sorted() { output += " \(key)=\"\(XMLText.escape(attributes[key]!))\"" }
        let body = text.trimmed(of: " \t\r\n").isEmpty && !children.isEmpty ? "" : XMLText.escape(text)
        if body.isEmpty && children.isEmpty { return output + "/>" }
        output += ">" + body
        for child in children { output += child.serialized() }
        return output + "</" + name + ">"
    }

    /// The first child element with this name.
    public func child(_ name: String) -> XMLNode? { children.first { $0.name == name } }

    /// All child elements with this name.
    public func children(_ name: String) -> [XMLNode] { children.filter { $0.name == name } }

    /// The trimmed text of the first child with this name.
    public func string(_ name: String) -> String? {
        child(name).map { $0.text.trimmed(of: " \t\r\n") }
    }

    /// The first child's text as an integer.
    public func int(_ name: String) -> Int? { string(name).flatMap { Int($0) } }

    /// The first child's text as a boolean (`true`/`false`).
    public func bool(_ name: String) -> Bool? {
        switch string(name) {
        case "true": true
        case "false": false
        default: nil
        }
    }

    /// The largest document accepted, and the deepest nesting: answers beyond these are refused, not parsed.
    public static let maximumDocumentBytes = 64 << 20
    /// The deepest nesting accepted.
    public static let maximumDepth = 64

    /// Parses a document and returns its root element.
    ///
    /// - Throws: `XMLParseError` with the byte offset and what was expected.
    public static func parse(_ bytes: [UInt8]) throws(XMLParseError) -> XMLNode {
        guard bytes.count <= maximumDocumentBytes else {
            throw XMLParseError(offset: 0, reason: "document is \(bytes.count) bytes, more than the limit")
        }
        var reader = XMLReader(bytes: bytes)
        return try reader.document()
    }

    /// Parses a document given as text.
    ///
    /// - Throws: `XMLParseError`.
    public static func parse(_ text: String) throws(XMLParseError) -> XMLNode {
        try parse(Array(text.utf8))
    }
}

/// Why a document could not be read.
public struct XMLParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Byte offset of the problem.
    public var offset: Int
    /// What went wrong.
    public var reason: String

    /// `invalid XML at byte N: reason`.
    public var description: String { "invalid XML at byte \(offset): \(reason)" }
}

private struct XMLReader {
    let bytes: [UInt8]
    var index = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func document() throws(XMLParseError) -> XMLNode {
        // A UTF-8 byte order mark is allowed before anything else.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }
        try skipMisc()
        guard peek() == UInt8(ascii: "<") else { throw error("expected the root element") }
        let root = try element(depth: 1)
        try skipMisc()
        guard index == bytes.count else { throw error("content after the root element") }
        return root
    }

    /// Whitespace, comments and processing instructions (including the XML declaration); a DOCTYPE is refused.
    mutating func skipMisc() throws(XMLParseError) {
        while true {
            skipWhitespace()
            if starts(with: "<?") {
                try skip(past: "?>")
            } else if starts(with: "<!--") {
                try skip(past: "-->")
            } else if starts(with: "<!") {
                throw error("document type declarations are not accepted")
            } else {
                return
            }
        }
    }

    mutating func element(depth: Int) throws(XMLParseError) -> XMLNode {
        guard depth <= XMLNode.maximumDepth else { throw error("elements nested deeper than \(XMLNode.maximumDepth)") }
        index += 1  // '<'
        let qualifiedName = try name()
        var node = XMLNode(localName(qualifiedName))
        while true {
            let hadSpace = skipWhitespace()
            if starts(with: "/>") {
                index += 2
                return node
            }
            if peek() == UInt8(ascii: ">") {
                index += 1
                break
            }
            guard hadSpace else { throw error("expected whitespace, '>' or '/>' in <\(qualifiedName)>") }
            let attributeName = try name()
            skipWhitespace()
            guard consume(UInt8(ascii: "=")) else { throw error("expected '=' after attribute \(attributeName)") }
            skipWhitespace()
            let value = try quotedValue()
            if attributeName != "xmlns" && !attributeName.hasPrefix("xmlns:") {
                node.attributes[localName(attributeName)] = value
            }
        }
        // Content.
        var text: [UInt8] = []
        while true {
            guard index < bytes.count else { throw error("<\(qualifiedName)> is not closed") }
            if starts(with: "</") {
                index += 2
                let closing = try name()
                guard closing == qualifiedName else {
                    throw error("</\(closing)> closes <\(qualifiedName)>")
                }
                skipWhitespace()
                guard consume(UInt8(ascii: ">")) else { throw error("expected '>' after </\(closing)") }
                node.text = String(decoding: text, as: UTF8.self)
                return node
            }
            if starts(with: "<!--") {
                try skip(past: "-->")
            } else if starts(with: "<![CDATA[") {
                index += 9
                let start = index
                try skip(past: "]]>")
                text += bytes[start..<(index - 3)]
            } else if starts(with: "<?") {
                try skip(past: "?>")
            } else if starts(with: "<!") {
                throw error("declarations are not accepted inside elements")
            } else if peek() == UInt8(ascii: "<") {
                node.children.append(try element(depth: depth + 1))
            } else if peek() == UInt8(ascii: "&") {
                text += try reference()
            } else {
                text.append(bytes[index])
                index += 1
            }
        }
    }

    mutating func name() throws(XMLParseError) -> String {
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            let isNameByte =
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "_")
                || byte == UInt8(ascii: ":") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte >= 0x80
            guard isNameByte else { break }
            index += 1
        }
        guard index > start else { throw error("expected a name") }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    mutating func quotedValue() throws(XMLParseError) -> String {
        guard let quote = peek(), quote == UInt8(ascii: "\"") || quote == UInt8(ascii: "'") else {
            throw error("expected a quoted attribute value")
        }
        index += 1
        var value: [UInt8] = []
        while true {
            guard index < bytes.count else { throw error("attribute value is not closed") }
            let byte = bytes[index]
            if byte == quote {
                index += 1
                return String(decoding: value, as: UTF8.self)
            }
            if byte == UInt8(ascii: "<") { throw error("'<' in an attribute value") }
            if byte == UInt8(ascii: "&") {
                value += try reference()
            } else {
                value.append(byte)
                index += 1
            }
        }
    }

    /// `&name;` or `&#N;` / `&#xN;`, as UTF-8.
    mutating func reference() throws(XMLParseError) -> [UInt8] {
        let start = index
        index += 1
        guard let end = bytes[index...].prefix(12).firstIndex(of: UInt8(ascii: ";")) else {
            index = start
            throw error("'&' does not start an entity reference")
        }
        let entity = String(decoding: bytes[index..<end], as: UTF8.self)
        index = end + 1
        switch entity {
        case "lt": return [UInt8(ascii: "<")]
        case "gt": return [UInt8(ascii: ">")]
        case "amp": return [UInt8(ascii: "&")]
        case "quot": return [UInt8(ascii: "\"")]
        case "apos": return [UInt8(ascii: "'")]
        default:
            var digits = Substring(entity)
            guard digits.first == "#" else {
                index = start
                throw error("unknown entity &\(entity);")
            }
            digits = digits.dropFirst()
            let radix = digits.first == "x" || digits.first == "X" ? 16 : 10
            if radix == 16 { digits = digits.dropFirst() }
            guard let value = UInt32(digits, radix: radix), let scalar = Unicode.Scalar(value), value != 0 else {
                index = start
                throw error("invalid character reference &\(entity);")
            }
            return Array(String(Character(scalar)).utf8)
        }
    }

    @discardableResult
    mutating func skipWhitespace() -> Bool {
        let start = index
        while index < bytes.count,
            bytes[index] == 0x20 || bytes[index] == 0x09 || bytes[index] == 0x0A || bytes[index] == 0x0D
        {
            index += 1
        }
        return index > start
    }

    mutating func skip(past terminator: String) throws(XMLParseError) {
        let pattern = Array(terminator.utf8)
        while index + pattern.count <= bytes.count {
            if bytes[index..<(index + pattern.count)].elementsEqual(pattern) {
                index += pattern.count
                return
            }
            index += 1
        }
        throw error("missing '\(terminator)'")
    }

    func starts(with prefix: String) -> Bool {
        let pattern = Array(prefix.utf8)
        return index + pattern.count <= bytes.count && bytes[index..<(index + pattern.count)].elementsEqual(pattern)
    }

    func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    mutating func consume(_ byte: UInt8) -> Bool {
        guard peek() == byte else { return false }
        index += 1
        return true
    }

    func localName(_ qualified: String) -> String {
        guard let colon = qualified.lastIndex(of: ":") else { return qualified }
        return String(qualified[qualified.index(after: colon)...])
    }

    func error(_ reason: String) -> XMLParseError { XMLParseError(offset: index, reason: reason) }
}

extension String {
    /// Trims the given characters from both ends (without Foundation's CharacterSet).
    func trimmed(of characters: String) -> String {
        let set = Set(characters.unicodeScalars)
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !set.contains($0) }) else { return "" }
        let last = scalars.lastIndex(where: { !set.contains($0) })!
        return String(scalars[first...last])
    }
}
