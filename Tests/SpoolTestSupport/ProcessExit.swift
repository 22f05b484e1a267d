import Foundation

extension Process {
    /// Starts the program and waits for its end without holding a thread.
    ///
    /// `waitUntilExit()` blocks its thread, and on Linux the thread pool Swift's tasks run on is as wide as the
    /// machine has cores: two tests waiting that way on two cores stop every other test in the process — timers,
    /// lease renewals and time limits included.
    public func runToExit() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            terminationHandler = { _ in continuation.resume() }
            do {
                try run()
            } catch {
                terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
    }

    /// Waits for the end of a program already started, without holding a thread.
    public func exited() async {
        while isRunning { try? await Task.sleep(for: .milliseconds(10)) }
    }
}
