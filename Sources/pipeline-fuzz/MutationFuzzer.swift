import CommandLineSupport

/// A deterministic mutation fuzzer, for machines where libFuzzer is not at hand and for the test suite: the same seed
/// and run count give the same inputs, so a crash is reproduced by running again (`--show-input N` prints input N).
///
/// Each run takes an input from the pool (the target's seeds, plus every input that ended in a way not seen before),
/// applies one to eight mutations — bit flips, byte changes, insertions and deletions, a dictionary token, a splice
/// with another input, a duplicated range, a cut — and, one run in fifty, a deep nesting of a fragment (parsers
/// that recurse). No coverage feedback: the outcome labels stand in for it.
struct MutationFuzzer {
    let target: FuzzTarget
    private var random: SplitMix64
    private var pool: [[UInt8]]
    private let dictionary: [[UInt8]]
    /// The largest input made.
    static let maximumInputBytes = 1 << 20

    init(target: FuzzTarget, seed: UInt64) {
        self.target = target
        random = SplitMix64(seed: seed)
        pool = target.seeds
        dictionary = target.dictionary
    }

    /// What a run of the fuzzer saw.
    struct Summary {
        var runs = 0
        var outcomes: [String: Int] = [:]
        var largestInput = 0
        var poolSize = 0
    }

    /// Runs `count` inputs through the target (calling `before` with each input's number and bytes first).
    mutating func run(count: Int, scratchFile: String, before: (Int, [UInt8]) -> Void = { _, _ in }) -> Summary {
        var summary = Summary()
        for index in 0..<count {
            let input = next()
            before(index, input)
            let outcome = target.run(input, scratchFile: scratchFile)
            if summary.outcomes[outcome] == nil && pool.count < 256 { pool.append(input) }
            summary.outcomes[outcome, default: 0] += 1
            summary.runs += 1
            summary.largestInput = max(summary.largestInput, input.count)
        }
        summary.poolSize = pool.count
        return summary
    }

    /// The next input.
    mutating func next() -> [UInt8] {
        var input = pool[pick(pool.count)]
        if pick(50) == 0 { return nested(input) }
        for _ in 0...pick(8) { mutate(&input) }
        if input.count > Self.maximumInputBytes { input.removeSubrange(Self.maximumInputBytes...) }
        return input
    }

    private mutating func pick(_ bound: Int) -> Int { Int(random.next() % UInt64(max(1, bound))) }

    private mutating func mutate(_ input: inout [UInt8]) {
        let position = pick(input.count + 1)
        switch pick(9) {
        case 0 where !input.isEmpty:
            input[min(position, input.count - 1)] ^= UInt8(1 << pick(8))
        case 1 where !input.isEmpty:
            input[min(position, input.count - 1)] = UInt8(truncatingIfNeeded: random.next())
        case 2:
            input.insert(UInt8(truncatingIfNeeded: random.next()), at: position)
        case 3 where !input.isEmpty:
            let end = min(input.count, position + 1 + pick(16))
            input.removeSubrange(min(position, input.count - 1)..<end)
        case 4, 5:
            input.insert(contentsOf: dictionary[pick(dictionary.count)], at: position)
        case 6:
            let other = pool[pick(pool.count)]
            let start = pick(other.count + 1)
            input.insert(contentsOf: other[start..<min(other.count, start + pick(256))], at: position)
        case 7 where !input.isEmpty:
            let start = min(position, input.count - 1)
            let piece = input[start..<min(input.count, start + 1 + pick(64))]
            input.insert(contentsOf: Array(repeating: Array(piece), count: 1 + pick(32)).flatMap { $0 }, at: start)
        default:
            input.removeSubrange(position...)
        }
    }

    /// A fragment nested thousands deep (`<a><a>…`, `[[[…`, `{"a":{"a":…`): stack depth is what parsers die of.
    private mutating func nested(_ base: [UInt8]) -> [UInt8] {
        let depth = 1_000 << pick(6)
        let (open, close): (String, String)
        switch target {
        case .xml: (open, close) = ("<a>", "</a>")
        case .configFile: (open, close) = pick(2) == 0 ? ("[", "]") : ("{\"s3\":", "}")
        case .configEnvironment: (open, close) = ("\u{1}(", ")")
        case .profile: (open, close) = ("[profile a]\ns3 =\n  ", "\n")
        }
        let closing = pick(4) == 0 ? 0 : depth  // sometimes never closed
        return Array(String(repeating: open, count: depth).utf8) + base.prefix(64)
            + Array(String(repeating: close, count: closing).utf8)
    }
}
