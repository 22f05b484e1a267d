import Spool

/// What `UnzipResourcesDecorator` expands and the limits that guard against zip bombs. A plain value, so that a
/// configuration loader can fill it from a file or the environment.
public struct UnzipOptions: Sendable, Hashable, Codable {
    /// Store gzip resources decompressed (`.gz` dropped from the name). Default true.
    public var expandGzip: Bool
    /// Store zip resources as one resource per member (`{url}/{member}`). Default true.
    public var expandZip: Bool
    /// Also recognise archives by their first bytes: gzip always (`1f 8b 08`), zip (`PK\3\4`) only when the
    /// content type says nothing (`application/octet-stream`), so that `.docx`, `.jar` or `.epub` files, which are
    /// zips too, stay whole. Default true.
    public var detectByContent: Bool
    /// The most bytes one archive may expand to (a gzip stream, or all members of a zip together). Default 8 GiB.
    public var maxExpandedBytes: Int64
    /// The highest expanded-to-compressed ratio accepted (per gzip stream, per zip member), once more than
    /// `ratioCheckMinimumBytes` came out. Text compresses 5–20 times, very repetitive logs up to about 100; deflate
    /// cannot go past about 1,030. Default 200.
    public var maxCompressionRatio: Int
    /// Below this expanded size the ratio is not checked (small files of zeros are not bombs). Default 16 MiB.
    public var ratioCheckMinimumBytes: Int64
    /// The most entries a zip may have (directories included). Default 10,000.
    public var maxMembers: Int

    /// The defaults: expand both formats, detect by content, 8 GiB, ratio 200 past 16 MiB, 10,000 members.
    public init(
        expandGzip: Bool = true, expandZip: Bool = true, detectByContent: Bool = true,
        maxExpandedBytes: Int64 = 8 << 30, maxCompressionRatio: Int = 200, ratioCheckMinimumBytes: Int64 = 16 << 20,
        maxMembers: Int = 10_000
    ) {
        self.expandGzip = expandGzip
        self.expandZip = expandZip
        self.detectByContent = detectByContent
        self.maxExpandedBytes = maxExpandedBytes
        self.maxCompressionRatio = maxCompressionRatio
        self.ratioCheckMinimumBytes = ratioCheckMinimumBytes
        self.maxMembers = maxMembers
    }

    /// Checks that every limit is positive (`ratioCheckMinimumBytes` may be 0).
    ///
    /// - Throws: `SpoolError.invalidConfiguration` naming the option.
    public func validate() throws {
        func check(_ option: String, _ value: Int64, atLeast minimum: Int64 = 1) throws {
            guard value < minimum else { return }
            throw SpoolError(
                .invalidConfiguration, "UnzipOptions.\(option) is \(value); it must be at least \(minimum)")
        }
        try check("maxExpandedBytes", maxExpandedBytes)
        try check("maxCompressionRatio", Int64(maxCompressionRatio))
        try check("ratioCheckMinimumBytes", ratioCheckMinimumBytes, atLeast: 0)
        try check("maxMembers", Int64(maxMembers))
    }
}
