import Foundation
import Hashing
import Synchronization

/// The SHA-256s and CRC32Cs of the parts a multipart upload still has to send, computed up to four equal parts at a
/// time (``PayloadReader/digestRanges(path:offsets:length:)``), right before the first of them is sent.
///
/// Parts are grouped in the order they will be sent: the first four, the next four, … (a part of another length —
/// the last — starts a group of its own). Whichever task of a group asks first reads and hashes them all; the others
/// take their digests when they ask, or wait for them while the group is still being hashed.
final class PartDigests: Sendable {
    private typealias Digest = PayloadReader.Digest

    private enum Entry {
        /// Being hashed by another task of its group; these wait for it.
        case hashing([CheckedContinuation<Digest, any Error>])
        /// Hashed by another task of its group, not asked for yet.
        case ready(Result<Digest, any Error>)
    }

    private let path: String
    /// Each part's group, in sending order (the part itself included).
    private let groups: [Int: [PartPlan]]
    private let entries = Mutex<[Int: Entry]>([:])

    /// - Parameters:
    ///   - path: The payload file.
    ///   - parts: The parts still to send, in the order they will be sent.
    init(path: String, parts: [PartPlan]) {
        self.path = path
        var groups: [Int: [PartPlan]] = [:]
        var group: [PartPlan] = []
        func close() {
            for part in group { groups[part.number] = group }
            group = []
        }
        for part in parts {
            if group.count == SHA256MultiHasher.maximumCount || group.first.map({ $0.length != part.length }) == true {
                close()
            }
            group.append(part)
        }
        close()
        self.groups = groups
    }

    /// The part's digest: hashed now (with the rest of its group), or taken from the task that hashed its group.
    ///
    /// - Throws: `PayloadError` from reading the file (every part of the group gets the same error).
    func digest(of part: PartPlan) async throws -> PayloadReader.Digest {
        enum Next {
            case take(Result<Digest, any Error>)
            case wait
            case hash([PartPlan])
        }
        let next = entries.withLock { entries -> Next in
            switch entries[part.number] {
            case .ready(let result)?:
                entries[part.number] = nil
                return .take(result)
            case .hashing?:
                return .wait
            case nil:
                // The others of the group not yet asked for or hashed: this task hashes them with its own.
                let others = (groups[part.number] ?? [part]).filter {
                    $0.number != part.number && entries[$0.number] == nil
                }
                for other in others { entries[other.number] = .hashing([]) }
                return .hash([part] + others)
            }
        }
        switch next {
        case .take(let result):
            return try result.get()
        case .wait:
            return try await withCheckedThrowingContinuation { continuation in
                let ready = entries.withLock { entries -> Result<Digest, any Error>? in
                    switch entries[part.number] {
                    case .hashing(let waiting)?:
                        entries[part.number] = .hashing(waiting + [continuation])
                        return nil
                    case .ready(let result)?:
                        entries[part.number] = nil
                        return result
                    case nil:
                        return .failure(CancellationError())  // not reached: only this part's own task takes it
                    }
                }
                if let ready { continuation.resume(with: ready) }
            }
        case .hash(let group):
            let results: [Result<Digest, any Error>]
            do {
                if group.count == 1 {
                    results = [
                        .success(
                            try await PayloadReader.digestRange(path: path, offset: part.offset, length: part.length))
                    ]
                } else {
                    results = try await PayloadReader.digestRanges(
                        path: path, offsets: group.map(\.offset), length: part.length
                    ).map { .success($0) }
                }
            } catch {
                results = Array(repeating: .failure(error), count: group.count)
            }
            for (other, result) in zip(group.dropFirst(), results.dropFirst()) {
                let waiting = entries.withLock { entries -> [CheckedContinuation<Digest, any Error>] in
                    guard case .hashing(let waiting)? = entries[other.number], !waiting.isEmpty else {
                        entries[other.number] = .ready(result)
                        return []
                    }
                    entries[other.number] = nil
                    return waiting
                }
                for continuation in waiting { continuation.resume(with: result) }
            }
            return try results[0].get()
        }
    }
}
