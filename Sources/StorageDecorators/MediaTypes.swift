/// Media types guessed from file names, for zip members and decompressed gzip resources (which arrive with no
/// Content-Type of their own), and the types that are compressed already.
enum MediaTypes {
    /// The fallback for unknown extensions.
    static let unknown = "application/octet-stream"

    /// The media type for a file name's extension (case-insensitive), or `application/octet-stream`.
    static func guess(fromName name: String) -> String {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return unknown }
        let fileExtension = name[name.index(after: dot)...].lowercased()
        return byExtension[fileExtension] ?? unknown
    }

    /// The type and subtype of a Content-Type value, lowercased, without parameters.
    static func essence(_ contentType: String) -> String {
        let end = contentType.firstIndex(of: ";") ?? contentType.endIndex
        return contentType[..<end].trimmingCharactersInSpaces().lowercased()
    }

    /// Types whose bytes deflate would not shrink: stored as they are in `bundle.zip`.
    static func isCompressed(_ contentType: String) -> Bool {
        let type = essence(contentType)
        if type.hasPrefix("video/") || (type.hasPrefix("audio/") && type != "audio/wav") { return true }
        return alreadyCompressed.contains(type)
    }

    static let gzipTypes: Set<String> = ["application/gzip", "application/x-gzip"]
    static let zipTypes: Set<String> = ["application/zip", "application/x-zip-compressed", "application/x-zip"]
    /// Types that say nothing about the content: zip's magic bytes are trusted only under these.
    static let genericTypes: Set<String> = ["application/octet-stream", "binary/octet-stream", "application/binary"]

    private static let alreadyCompressed: Set<String> = [
        "application/gzip", "application/x-gzip", "application/zip", "application/x-zip-compressed",
        "application/x-bzip2", "application/x-xz", "application/zstd", "application/x-7z-compressed",
        "application/vnd.rar", "image/jpeg", "image/png", "image/gif", "image/webp", "image/avif", "image/heic",
        "font/woff", "font/woff2",
    ]

    private static let byExtension: [String: String] = [
        "json": "application/json", "jsonl": "application/x-ndjson", "ndjson": "application/x-ndjson",
        "geojson": "application/geo+json", "xml": "application/xml", "html": "text/html", "htm": "text/html",
        "xhtml": "application/xhtml+xml", "txt": "text/plain", "text": "text/plain", "log": "text/plain",
        "md": "text/markdown", "csv": "text/csv", "tsv": "text/tab-separated-values", "css": "text/css",
        "js": "text/javascript", "mjs": "text/javascript", "yaml": "application/yaml", "yml": "application/yaml",
        "toml": "application/toml", "rss": "application/rss+xml", "atom": "application/atom+xml",
        "pdf": "application/pdf", "rtf": "application/rtf", "wasm": "application/wasm", "svg": "image/svg+xml",
        "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp",
        "avif": "image/avif", "bmp": "image/bmp", "ico": "image/vnd.microsoft.icon", "tif": "image/tiff",
        "tiff": "image/tiff", "mp3": "audio/mpeg", "wav": "audio/wav", "ogg": "audio/ogg", "mp4": "video/mp4",
        "webm": "video/webm", "zip": "application/zip", "gz": "application/gzip", "tgz": "application/gzip",
        "tar": "application/x-tar", "bz2": "application/x-bzip2", "xz": "application/x-xz",
        "zst": "application/zstd", "7z": "application/x-7z-compressed", "parquet": "application/vnd.apache.parquet",
        "avro": "application/avro", "woff": "font/woff", "woff2": "font/woff2", "ttf": "font/ttf",
        "otf": "font/otf", "doc": "application/msword",
        "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls": "application/vnd.ms-excel", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ics": "text/calendar", "eml": "message/rfc822", "sql": "application/sql", "bin": "application/octet-stream",
    ]
}

extension Substring {
    fileprivate func trimmingCharactersInSpaces() -> Substring {
        var text = self
        while text.first == " " || text.first == "\t" { text = text.dropFirst() }
        while text.last == " " || text.last == "\t" { text = text.dropLast() }
        return text
    }
}
