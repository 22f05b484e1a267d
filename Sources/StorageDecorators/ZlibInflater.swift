import CZlibStream

/// One zlib inflate stream: gzip (header and CRC-32/ISIZE trailer checked by zlib) or raw deflate (zip members).
///
/// Owns the `z_stream`, which must not move while zlib holds it (zlib keeps a pointer back to it), so it lives on the
/// heap and is released in `deinit`. Used by one task at a time: not `Sendable`.
final class ZlibInflater {
    /// What the compressed bytes are.
    enum Format {
        /// RFC 1952 members, as `gzip` writes them.
        case gzip
        /// RFC 1951 deflate data without header or trailer, as zip members hold it.
        case rawDeflate
    }

    /// What one `inflate` call did.
    struct Step {
        /// Input bytes used.
        var consumed: Int
        /// Output bytes written.
        var produced: Int
        /// The end of the (gzip member or deflate) stream was reached.
        var ended: Bool
    }

    private let stream: UnsafeMutablePointer<z_stream>

    /// A new stream.
    ///
    /// - Throws: `ArchiveCorruption` when zlib cannot start (out of memory).
    init(_ format: Format) throws {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let result =
            switch format {
            case .gzip: pipeline_zlib_inflate_init_gzip(stream)
            case .rawDeflate: pipeline_zlib_inflate_init_raw(stream)
            }
        guard result == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            throw ArchiveCorruption(reason: "zlib could not start inflating (error \(result))")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Inflates as much of `input` into `output` as either allows.
    ///
    /// - Throws: `ArchiveCorruption` with zlib's reason when the data is not valid.
    func inflate(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> Step {
        // zlib counts in 32 bits; a larger buffer is simply taken in several calls.
        let inputCount = min(input.count, Int(UInt32.max))
        let outputCount = min(output.count, Int(UInt32.max))
        stream.pointee.next_in = UnsafeMutablePointer(
            mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.pointee.avail_in = UInt32(inputCount)
        stream.pointee.next_out = output.baseAddress?.assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_out = UInt32(outputCount)
        let result = CZlibStream.inflate(stream, Z_NO_FLUSH)
        let step = Step(
            consumed: inputCount - Int(stream.pointee.avail_in),
            produced: outputCount - Int(stream.pointee.avail_out), ended: result == Z_STREAM_END)
        // Never keep pointers into the caller's buffers past this call.
        stream.pointee.next_in = nil
        stream.pointee.next_out = nil
        switch result {
        case Z_OK, Z_STREAM_END, Z_BUF_ERROR:
            // Z_BUF_ERROR only says no progress was possible with what was given: more input or more room decides.
            return step
        case Z_NEED_DICT:
            throw ArchiveCorruption(reason: "the deflate data needs a preset dictionary")
        case Z_MEM_ERROR:
            throw ArchiveCorruption(reason: "zlib ran out of memory")
        default:
            let message = stream.pointee.msg.map { String(cString: $0) } ?? "error \(result)"
            throw ArchiveCorruption(reason: message)
        }
    }

    /// Starts over for the next gzip member of a multi-member stream.
    func reset() {
        inflateReset(stream)
    }

    /// Updates a CRC-32 (the zip and gzip checksum) with `bytes`.
    static func crc32(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var value = UInt(crc)
        var rest = bytes
        while !rest.isEmpty {
            let count = min(rest.count, Int(UInt32.max))
            value = CZlibStream.crc32(value, rest.baseAddress!.assumingMemoryBound(to: Bytef.self), UInt32(count))
            rest = UnsafeRawBufferPointer(rebasing: rest[count...])
        }
        return UInt32(truncatingIfNeeded: value)
    }
}
