import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Generates bundle ids that sort by creation time and are unique across hosts: 48 bits of milliseconds and 80 random
/// bits in Crockford base32 (the ULID layout), 26 characters. Ids made by one process in the same millisecond
/// increase, so they still sort in creation order.
public enum BundleIDGenerator {
    private static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)
    private static let last = Mutex<(milliseconds: UInt64, random: (high: UInt16, low: UInt64))>(
        (0, (0, 0)))

    /// A new id.
    public static func next() -> String {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        let now = UInt64(time.tv_sec) * 1000 + UInt64(time.tv_nsec) / 1_000_000
        let (milliseconds, random) = last.withLock { last -> (UInt64, (UInt16, UInt64)) in
            if now <= last.milliseconds {
                // Same (or earlier: the wall clock stepped back) millisecond: increment the random part.
                var (high, low) = last.random
                low &+= 1
                if low == 0 { high &+= 1 }
                last.random = (high, low)
                return (last.milliseconds, (high, low))
            }
            var generator = SystemRandomNumberGenerator()
            last = (now, (UInt16.random(in: 0...UInt16.max, using: &generator), generator.next()))
            return (now, last.random)
        }
        // 128 bits: 48 time bits, 16 + 64 random bits; encoded as 26 base32 digits (the top 2 bits are zero).
        var high = milliseconds << 16 | UInt64(random.0)
        var low = random.1
        var digits = [UInt8](repeating: 0, count: 26)
        for index in stride(from: 25, through: 0, by: -1) {
            digits[index] = alphabet[Int(low & 31)]
            low = (low >> 5) | ((high & 31) << 59)
            high >>= 5
        }
        return String(decoding: digits, as: UTF8.self)
    }
}
