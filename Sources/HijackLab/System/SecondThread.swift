import Glibc
import Synchronization

/// Runs `work` on a thread of its own while the caller runs `body`, and returns both results
/// once both are done: CPU work that splits in two, on hosts that have two cores or more.
/// Where no thread can be made, `work` runs on the caller's thread after `body`.
package func onSecondThread<A: Sendable, B>(_ work: @escaping @Sendable () -> A, while body: () -> B) -> (A, B) {
    let result = SecondThreadResult<A>()
    let entry = SecondThreadEntry { result.value.withLock { $0 = work() } }
    let context = Unmanaged.passRetained(entry).toOpaque()
    var thread = pthread_t()
    let created = pthread_create(&thread, nil, { raw in
        Unmanaged<SecondThreadEntry>.fromOpaque(raw!).takeRetainedValue().run()
        return nil
    }, context)
    guard created == 0 else {
        Unmanaged<SecondThreadEntry>.fromOpaque(context).release()
        let mine = body()
        return (work(), mine)
    }
    let mine = body()
    pthread_join(thread, nil)
    return (result.value.withLock { $0! }, mine)
}

/// What the thread runs: non-generic, so that the C entry point can name it.
private final class SecondThreadEntry: Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

private final class SecondThreadResult<A: Sendable>: Sendable {
    let value = Mutex<A?>(nil)
}
