import Foundation

/// The JSON form of string maps stored in the index: keys sorted, so the same metadata always gives the same bytes.
enum MetadataJSON {
    static func encode(_ metadata: [String: String]) -> String {
        if metadata.isEmpty { return "{}" }
        var output = "{"
        for (index, key) in metadata.keys.sorted().enumerated() {
            if index > 0 { output += "," }
            appendString(key, to: &output)
            output += ":"
            appendString(metadata[key]!, to: &output)
        }
        return output + "}"
    }

    static func decode(_ text: String) -> [String: String] {
        if text == "{}" || text.isEmpty { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            return [:]
        }
        var result: [String: String] = [:]
        for (key, value) in object { result[key] = value as? String ?? "\(value)" }
        return result
    }

    static func appendString(_ text: String, to output: inout String) {
        output += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                output += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: output.unicodeScalars.append(scalar)
            }
        }
        output += "\""
    }
}
