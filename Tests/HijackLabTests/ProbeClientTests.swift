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
        /// The client port of each connection accepted, in the order accepted: read after `join`.
        private(set) var peerPorts: [UInt16] = []

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
                          let (connection, peer) = try? listener.accept() else { return }
                    if let peer { peerPorts.append(peer.port) }
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

        /// Whether the server's thread ended within 10 s.
        @discardableResult
        func join() -> Bool { done.wait(timeout: .now() + 10) == .success }
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

    @Test("More connections than run at once: each reads its line, in the order asked for, and names its own connection's source port")
    func many() throws {
        let count = Agent.connectionsInFlight * 2 + 3
        let server = try Server(count: count, payload: "server 1 0\n")
        let records = try Self.probe(port: server.port, count: count)
        try #require(server.join())
        #expect(records.count == count)
        #expect(records.allSatisfy { $0.identity == "server 1 0" && $0.error == nil && $0.remote == "127.0.0.1" })
        // Each record's source port is one the server accepted a connection from, as often as
        // it did. Ports need not all differ: the server closes first and holds TIME_WAIT, and
        // the kernel may hand a closed connection's port to a later one (seen: 117 ports for
        // 131 connections with both cores busy), which the server then accepts again.
        let ports = records.compactMap { $0.local.flatMap { $0.split(separator: ":").last }.flatMap { UInt16($0) } }
        #expect(ports.count == count)
        #expect(ports.sorted() == server.peerPorts.sorted())
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
        // Silence is no answer, which the matrix shows as lost (X), never as "nobody" (-).
        let unanswered = records.map(\.isUnanswered)
        #expect(unanswered == [true, true, true])
        // A port nobody listens on refuses at once: that is an answer.
        let placeholder = try Socket(family: AF_INET, transport: .tcp)
        try placeholder.bind(to: SocketAddress(host: "127.0.0.1", port: 0)!)
        let port = try placeholder.localAddress().port
        try placeholder.close()
        let refused = try Self.probe(port: port, count: 2)
        #expect(refused.map(\.error) == ["ECONNREFUSED", "ECONNREFUSED"])
        let refusedUnanswered = refused.map(\.isUnanswered)
        #expect(refusedUnanswered == [false, false])
    }

    /// A UDP server on 127.0.0.1 that, for each client (source address), ignores the first
    /// `ignoring` datagrams and answers every later one, until `clients` were answered or a
    /// bound passes; then counts what is still queued. `datagrams` is what it received per client.
    /// Unchecked: `datagrams` is written by the server's one thread and read only after
    /// `join()`, whose semaphore orders the two.
    final class DatagramServer: @unchecked Sendable {
        let socket: Socket
        let port: UInt16
        private(set) var datagrams: [String: Int] = [:]
        private let done = DispatchSemaphore(value: 0)
        /// The client port of each connection accepted, in the order accepted: read after `join`.
        private(set) var peerPorts: [UInt16] = []

        init(ignoring: Int, clients: Int, seconds: Double) throws {
            socket = try Socket(family: AF_INET, transport: .udp)
            try socket.bind(to: SocketAddress(host: "127.0.0.1", port: 0)!)
            port = try socket.localAddress().port
            DispatchQueue.global().async { [self] in
                defer { done.signal() }
                let deadline = Deadline.after(seconds: seconds)
                var answered = 0
                while answered < clients, let datagram = try? socket.receive(until: deadline), let from = datagram.from {
                    let seen = datagrams[from.description, default: 0] + 1
                    datagrams[from.description] = seen
                    guard seen > ignoring else { continue }
                    try? socket.send("server 1 0\n", to: from)
                    if seen == ignoring + 1 { answered += 1 }
                }
            }
        }

        /// Waits for the server thread, then reads what is still queued (sent after it stopped).
        func join() -> [String: Int] {
            _ = done.wait(timeout: .now() + 30)
            while let datagram = try? socket.receiveNow(), let from = datagram.from { datagrams[from.description, default: 0] += 1 }
            try? socket.close()
            return datagrams
        }
    }

    @Test("UDP to a server that drops each client's first datagram: the resend on the same socket is answered, tries 2, nothing lost")
    func udpResent() throws {
        let server = try DatagramServer(ignoring: 1, clients: 3, seconds: 20)
        let records = try Self.probe(port: server.port, count: 3, transport: .udp)
        let received = server.join()
        #expect(records.map(\.identity) == Array(repeating: "server 1 0", count: 3))
        #expect(records.map(\.tries) == [2, 2, 2])
        #expect(records.allSatisfy { $0.lost == nil && $0.error == nil })
        // Both tries came from the probe's one socket: the server saw each source port twice.
        #expect(Set(received.keys) == Set(records.compactMap(\.local)))
        #expect(received.values.allSatisfy { $0 == 2 })
    }

    @Test("UDP to a bound socket that never answers: every try goes out from the same socket, and the datagram is lost, not refused")
    func udpLost() throws {
        let server = try DatagramServer(ignoring: .max, clients: 1, seconds: 0)
        let records = try Self.probe(port: server.port, count: 2, transport: .udp, timeoutMilliseconds: 600)
        let received = server.join()
        #expect(records.map(\.lost) == [true, true])
        #expect(records.map(\.tries) == [3, 3])
        #expect(records.allSatisfy { $0.error == nil && $0.identity == nil })
        #expect(Set(received.keys) == Set(records.compactMap(\.local)))
        #expect(received.values.allSatisfy { $0 == 3 })
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
        // Refused on the first try or on a resend, never after all three went unanswered.
        #expect(records.allSatisfy { ($0.tries ?? 0) >= 1 && ($0.tries ?? 0) <= 3 })
    }
}
