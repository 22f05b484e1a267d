import Foundation
import Hashing
import Synchronization

/// The SHA-256s and CRC32Cs of the parts a multipart upload still has to send, computed two equal parts at a time
/// (``PayloadReader/digestRanges(path:offsets:_:length:)``), right before the first of the two is sent.
///
/// Parts are paired in the order they will be sent: the first with the second, the third with the fourth, … (a part
/// of another length — the last — goes alone). Whichever task of a pair asks first reads and hashes both; the other
/// takes its digest when it asks, or waits for it if the pair is still being hashed.
final class PartDigests: Sendable {
    private typealias Digest = PayloadReader.Digest

    private enum Entry {
        /// Being hashed by the partner's task; these wait for it.
        case hashing([CheckedContinuation<Digest, any Error>])
        /// Hashed by the partner's task, not asked for yet.
        case ready(Result<Digest, any Error>)
    }

    private let path: String
    private let partners: [Int: PartPlan]
    private let entries = Mutex<[Int: Entry]>([:])

    /// - Parameters:
    ///   - path: The payload file.
    ///   - parts: The parts still to send, in the order they will be sent.
    init(path: String, parts: [PartPlan]) {
        self.path = path
        var partners: [Int: PartPlan] = [:]
        var index = 0
        while index + 1 < parts.count {
            let (one, two) = (parts[index], parts[index + 1])
            if one.length == two.length {
                partners[one.number] = two
                partners[two.number] = one
                index += 2
            } else {
                index += 1
            }
        }
        self.partners = partners
    }

    /// The part's digest: hashed now (with its partner's), or taken from the partner's task.
    ///
    /// - Throws: `PayloadError` from reading the file (its partner gets the same error).
    func digest(of part: PartPlan) async throws -> PayloadReader.Digest {
        enum Next {
            case take(Result<Digest, any Error>)
            case wait
            case hash(partner: PartPlan?)
        }
        let next = entries.withLock { entries -> Next in
            switch entries[part.number] {
            case .ready(let result)?:
                entries[part.number] = nil
                return .take(result)
            case .hashing?:
                return .wait
            case nil:
                guard let partner = partners[part.number], entries[partner.number] == nil else {
                    return .hash(partner: nil)
                }
                entries[partner.number] = .hashing([])
                return .hash(partner: partner)
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
        case .hash(nil):
            return try await PayloadReader.digestRange(path: path, offset: part.offset, length: part.length)
        case .hash(let partner?):
            let results: (Result<Digest, any Error>, Result<Digest, any Error>)
            do {
                let (mine, theirs) = try await PayloadReader.digestRanges(
                    path: path, offsets: part.offset, partner.offset, length: part.length)
                results = (.success(mine), .success(theirs))
            } catch {
                results = (.failure(error), .failure(error))
            }
            let waiting = entries.withLock { entries -> [CheckedContinuation<Digest, any Error>] in
                guard case .hashing(let waiting)? = entries[partner.number], !waiting.isEmpty else {
                    entries[partner.number] = .ready(results.1)
                    return []
                }
                entries[partner.number] = nil
                return waiting
            }
            for continuation in waiting { continuation.resume(with: results.1) }
            return try results.0.get()
        }
    }
}
