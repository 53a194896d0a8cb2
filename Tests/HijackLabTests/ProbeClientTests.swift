import Dispatch
import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAgent

/// The agent's client role against servers this test writes by hand on 127.0.0.1 (port 0, so
/// the kernel picks a free one): the records a probe's connections come back with, when they
/// run at once, for each way a server can answer or fail to.
@Suite("Probe clients on real sockets")
struct ProbeClientTests {
    /// A TCP server on 127.0.0.1 that accepts `count` connections, in another thread; for each,
    /// reads the client's "S\n" first when `readFirst`, then writes `payload` and closes, or
    /// keeps it open (`payload` nil) until the client goes. `join` waits for it, bounded.
    final class Server: @unchecked Sendable {
        let listener: Socket
        let port: UInt16
        private let done = DispatchSemaphore(value: 0)

        init(count: Int, payload: String?, readFirst: Bool = false) throws {
            listener = try Socket(family: AF_INET, transport: .tcp)
            try listener.bind(to: SocketAddress(host: "127.0.0.1", port: 0)!)
            try listener.listen()
            port = try listener.localAddress().port
            DispatchQueue.global().async { [self] in
                defer { done.signal() }
                var held: [Socket] = []
                let deadline = Deadline.after(seconds: 10)
                for _ in 0..<count {
                    guard (try? waitFor(listener.fd, events: Int16(POLLIN), until: deadline)) == true,
                          let (connection, _) = try? listener.accept() else { return }
                    if readFirst { _ = try? connection.readLine(until: deadline) }
                    if let payload {
                        try? connection.write(payload)
                        try? connection.close()
                    } else {
                        held.append(connection)
                    }
                }
                for connection in held { _ = try? waitFor(connection.fd, events: Int16(POLLIN), until: deadline) }
            }
        }

        func join() { _ = done.wait(timeout: .now() + 10) }
    }

    static func probe(port: UInt16, count: Int, closes: CloseOrder = .clientFirst, transport: Transport = .tcp,
                      timeoutMilliseconds: Int = 2000) throws -> [ProbeConnection] {
        let agent = try AgentClient(executable: TestLab.agentExecutable, id: "client", timeout: 10)
        defer { agent.finish() }
        try agent.awaitReady()
        let request = ProbeRequest(transport: transport, destinations: [.init(address: "127.0.0.1", count: count)], port: port,
                                   closes: closes, timeoutMilliseconds: timeoutMilliseconds, labRanges: false)
        return try agent.probe(request).connections
    }

    @Test("More connections than run at once: each reads its line, in the order asked for, from its own source port")
    func many() throws {
        let count = Agent.connectionsInFlight * 2 + 3
        let server = try Server(count: count, payload: "server 1 0\n")
        defer { server.join() }
        let records = try Self.probe(port: server.port, count: count)
        #expect(records.count == count)
        #expect(records.allSatisfy { $0.identity == "server 1 0" && $0.error == nil && $0.remote == "127.0.0.1" })
        #expect(Set(records.compactMap(\.local)).count == count)
    }

    @Test("An empty line, or a stream that ends first, is ECONNRESET", arguments: ["\n", ""])
    func emptyLine(payload: String) throws {
        let server = try Server(count: 3, payload: payload)
        defer { server.join() }
        let records = try Self.probe(port: server.port, count: 3)
        #expect(records.map(\.error) == Array(repeating: "ECONNRESET", count: 3))
        #expect(records.allSatisfy { $0.identity == nil })
    }

    @Test("Server-first: the line after the identity must be empty; anything else in it is EPROTO",
          arguments: [("server 1 0\n", nil), ("server 1 0\n\n", nil), ("server 1 0\nmore\n", "EPROTO")] as [(String, String?)])
    func serverFirst(payload: String, error: String?) throws {
        let server = try Server(count: 2, payload: payload, readFirst: true)
        defer { server.join() }
        let records = try Self.probe(port: server.port, count: 2, closes: .serverFirst)
        #expect(records.map(\.error) == [error, error])
        #expect(records.allSatisfy { $0.identity == "server 1 0" })
    }

    @Test("A server that never answers: every connection ends with ETIMEDOUT at its deadline")
    func silent() throws {
        let server = try Server(count: 3, payload: nil)
        defer { server.join() }
        let records = try Self.probe(port: server.port, count: 3, timeoutMilliseconds: 200)
        #expect(records.map(\.error) == Array(repeating: "ETIMEDOUT", count: 3))
    }

    @Test("UDP to a port nobody binds: each datagram comes back ECONNREFUSED, none is counted lost")
    func udpRefused() throws {
        let placeholder = try Socket(family: AF_INET, transport: .udp)
        try placeholder.bind(to: SocketAddress(host: "127.0.0.1", port: 0)!)
        let port = try placeholder.localAddress().port
        try placeholder.close()
        let records = try Self.probe(port: port, count: 4, transport: .udp)
        #expect(records.map(\.error) == Array(repeating: "ECONNREFUSED", count: 4))
        #expect(records.allSatisfy { $0.lost == nil })
    }
}
