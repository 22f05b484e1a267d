import Spool
import Synchronization

/// Counts a bundle's writes in flight so that closing waits for them, and refuses writes once closing started.
/// Shared by the spool's `BundleWriter` and the decorators that hold state per bundle.
package final class WriteGate: Sendable {
    private struct State {
        var closed = false
        var writesInFlight = 0
        var drained: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())
    private let bundleID: String

    /// A gate for the bundle `bundleID` (named in the error for a write after closing).
    package init(bundleID: String) {
        self.bundleID = bundleID
    }

    /// Runs one write, refused once the gate is closed.
    ///
    /// - Throws: `SpoolError.bundleNotOpen` after `close()`; what `body` throws.
    package func write<T>(_ body: () async throws -> T) async throws -> T {
        try state.withLock { state in
            guard !state.closed else {
                throw SpoolError(
                    .bundleNotOpen, "bundle '\(bundleID)' was closed by this writer; write to a new bundle instead")
            }
            state.writesInFlight += 1
        }
        defer { finishWrite() }
        return try await body()
    }

    /// Refuses new writes and waits for those in flight.
    ///
    /// - Returns: false when the gate was already closed (by an earlier call).
    @discardableResult
    package func close() async -> Bool {
        let (wasOpen, mustWait) = state.withLock { state -> (Bool, Bool) in
            defer { state.closed = true }
            return (!state.closed, state.writesInFlight > 0)
        }
        if mustWait {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if state.writesInFlight == 0 { return true }
                    state.drained.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
        return wasOpen
    }

    private func finishWrite() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.writesInFlight -= 1
            guard state.writesInFlight == 0 else { return [] }
            defer { state.drained.removeAll() }
            return state.drained
        }
        for waiter in waiters { waiter.resume() }
    }
}
