import Spool
import Testing

// Assertions shared by the test targets that exercise the spool.

/// Runs `body`, expecting a `SpoolError` with `code` whose message contains every fragment.
@discardableResult
public func expectSpoolError(
    _ code: SpoolError.Code, mentioning fragments: [String] = [],
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void
) async -> SpoolError? {
    do {
        try await body()
        Issue.record("expected SpoolError \(code), but nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as SpoolError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(
                error.message.contains(fragment),
                "message \(error.message.debugDescription) lacks \(fragment.debugDescription)",
                sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("expected SpoolError \(code), got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
