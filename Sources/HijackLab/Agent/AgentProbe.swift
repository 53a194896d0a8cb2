import HijackSystem
import Glibc

/// The client role: connections (TCP) or datagrams (UDP), one new socket each, so that each
/// has its own source port as separate clients would.
extension Agent {
    /// Connections in flight at once. Each one still makes its own socket, connect, read and
    /// close, in that order, as a separate client would; they only no longer wait for each
    /// other. The bound keeps a probe of many connections within the descriptors an agent has.
    static let connectionsInFlight = 64

    func probe(_ request: ProbeRequest) -> AgentReply {
        var attempts: [ProbeAttempt] = []
        var resolved: [String]?
        for target in request.destinations {
            // A name comes from the lab's own hosts file alone, in the order a client's
            // getaddrinfo would try its addresses; nothing outside the lab (nscd, DNS, the
            // machine's /etc/hosts) ever sees it.
            let destinations: [SocketAddress]
            if let numeric = SocketAddress(host: target.address, port: request.port) {
                destinations = [numeric]
            } else {
                destinations = LabHosts.lab.addresses(for: target.address, port: request.port)
                guard !destinations.isEmpty else { return .refused(reason: "\(target.address) is not in the lab's hosts file") }
                resolved = destinations.map(\.host)
            }
            // Never send outside the lab, whatever a name resolved to.
            for destination in destinations {
                if let refusal = LabAddressPolicy.refusal(for: destination, labRangesAllowed: request.labRanges) {
                    return .refused(reason: "refusing to probe \(destination.host) (\(target.address)): \(refusal)")
                }
            }
            attempts += (0..<max(0, target.count)).map { ProbeAttempt(destinations: destinations, sequence: $0) }
        }
        var session = ProbeSession(attempts: attempts, transport: request.transport, closes: request.closes,
                                   timeout: Double(request.timeoutMilliseconds) / 1000, window: Self.connectionsInFlight)
        return .probed(connections: session.run(), resolved: resolved)
    }
}

/// One client connection or datagram of a probe, as it goes through its steps.
private struct ProbeAttempt {
    enum Stage {
        case waiting
        /// TCP: the connect is in progress.
        case connecting
        /// TCP: connected; the identity line is being read.
        case readingIdentity
        /// TCP, server-first: the identity is in; the server's FIN (end of stream) is awaited.
        case awaitingEnd
        /// UDP: the datagram is out; its reply is awaited.
        case awaitingReply
        case done
    }

    /// Where a name led, in the order a client tries them; a numeric address is one.
    let destinations: [SocketAddress]
    /// The datagram's number within its destination ("seq N").
    let sequence: Int
    /// The destination being tried.
    var next = 0
    var record = ProbeConnection()
    var socket: Socket?
    var stage = Stage.waiting
    /// The identity line as it arrives: reads return what is queued, never past the deadline.
    var received: [UInt8] = []
    var deadline = Deadline(nanoseconds: 0)
    /// UDP: datagrams sent so far, and when the next one goes out if no answer came first.
    var tries = 0
    var resendAt: Deadline?

    init(destinations: [SocketAddress], sequence: Int) {
        self.destinations = destinations
        self.sequence = sequence
    }

    var isActive: Bool { stage != .waiting && stage != .done }
}

/// Runs a probe's attempts, up to `window` at once, each on its own non-blocking socket,
/// all waited on in one poll(2). Every attempt keeps the steps and errors a lone client
/// would see: connect (ETIMEDOUT at the deadline), the identity line (ECONNRESET if the
/// stream ends first), for server-first the server's FIN (EPROTO if more data comes), then
/// the close; a refused or unreachable address sends a TCP client on to a name's next one.
/// A UDP datagram that gets no answer is sent again on the same connected socket, up to
/// `datagramTries` times spread over the deadline, as a DNS or NTP client does: one datagram
/// dropped under load (a full queue, a link still coming up) is not an outcome. It counts as
/// received only from an answer, as refused only from ECONNREFUSED, and as lost only when
/// every try went unanswered until the deadline.
private struct ProbeSession {
    /// The sends of one UDP datagram, at 0, 1/3 and 2/3 of the deadline.
    static let datagramTries = 3

    var attempts: [ProbeAttempt]
    let transport: Transport
    let closes: CloseOrder
    let timeout: Double
    let window: Int
    /// The longest identity line read; what the server writes is far shorter.
    let lineLimit = 512

    init(attempts: [ProbeAttempt], transport: Transport, closes: CloseOrder, timeout: Double, window: Int) {
        self.attempts = attempts
        self.transport = transport
        self.closes = closes
        self.timeout = timeout
        self.window = max(1, window)
    }

    /// The records, in the order the attempts were given.
    mutating func run() -> [ProbeConnection] {
        var nextToStart = 0
        var active: [Int] = []
        while true {
            while active.count < window, nextToStart < attempts.count {
                start(nextToStart)
                if attempts[nextToStart].isActive { active.append(nextToStart) }
                nextToStart += 1
            }
            guard !active.isEmpty else {
                if nextToStart == attempts.count { break }
                continue
            }
            var watched = active.map { index in
                pollfd(fd: attempts[index].socket?.fd ?? -1, events: Int16(attempts[index].stage == .connecting ? POLLOUT : POLLIN), revents: 0)
            }
            // A resend is always due before its attempt's deadline.
            let soonest = active.map { attempts[$0].resendAt ?? attempts[$0].deadline }.min()!
            do throws(SystemError) {
                _ = try Syscall.poll(&watched, timeoutMilliseconds: soonest.pollTimeout)
                for (position, index) in active.enumerated() {
                    if watched[position].revents != 0 {
                        advance(index)
                    } else if let resendAt = attempts[index].resendAt, resendAt.hasPassed {
                        resend(index)
                    } else if attempts[index].deadline.hasPassed {
                        expire(index)
                    }
                }
            } catch {
                // poll itself failed (out of memory): every attempt still open ends with it.
                for index in active { end(index, error) }
            }
            active.removeAll { !attempts[$0].isActive }
        }
        return attempts.map(\.record)
    }

    /// Opens the socket for the attempt's current destination and sends it on its way.
    private mutating func start(_ index: Int) {
        let destination = attempts[index].destinations[attempts[index].next]
        attempts[index].record = ProbeConnection(remote: destination.host)
        attempts[index].received = []
        attempts[index].deadline = .after(seconds: timeout)
        attempts[index].tries = 0
        attempts[index].resendAt = nil
        do throws(SystemError) {
            let client = try Socket(family: destination.family, transport: transport, nonBlocking: true)
            attempts[index].socket = client
            if transport == .udp {
                // Connected, so an ICMP port unreachable comes back as ECONNREFUSED at once
                // instead of a wait; the lab's servers answer from the address they were sent to.
                try client.connect(to: destination, until: attempts[index].deadline)
                attempts[index].deadline = .after(seconds: timeout)
                attempts[index].stage = .awaitingReply
                try sendDatagram(index)
                attempts[index].record.local = try client.localAddress().description
            } else if try client.startConnect(to: destination) {
                try connected(index)
            } else {
                attempts[index].stage = .connecting
            }
        } catch {
            end(index, error)
        }
    }

    /// One more send of the attempt's datagram, the same bytes on the same socket, so that the
    /// server sees the same client; the next send is due a third of the deadline later.
    private mutating func sendDatagram(_ index: Int) throws(SystemError) {
        guard let client = attempts[index].socket else { return }
        let destination = attempts[index].destinations[attempts[index].next]
        try client.send("seq \(attempts[index].sequence)\n", to: destination)
        attempts[index].tries += 1
        attempts[index].record.tries = attempts[index].tries
        attempts[index].resendAt = attempts[index].tries < Self.datagramTries ? .after(seconds: timeout / Double(Self.datagramTries)) : nil
    }

    /// No answer yet and a resend is due: send again; a send that fails (ECONNREFUSED from
    /// an earlier try's port unreachable) ends the attempt with its error.
    private mutating func resend(_ index: Int) {
        do throws(SystemError) {
            try sendDatagram(index)
        } catch {
            end(index, error)
        }
    }

    private mutating func connected(_ index: Int) throws(SystemError) {
        guard let client = attempts[index].socket else { return }
        attempts[index].record.local = try client.localAddress().description
        if closes == .serverFirst { try client.write("S\n") }
        attempts[index].stage = .readingIdentity
    }

    /// poll reported the attempt's socket: one step further.
    private mutating func advance(_ index: Int) {
        guard let client = attempts[index].socket else { return }
        do throws(SystemError) {
            switch attempts[index].stage {
            case .connecting:
                try client.finishConnect()
                try connected(index)
            case .readingIdentity:
                guard let bytes = try client.readNow(limit: lineLimit - attempts[index].received.count) else { return }
                attempts[index].received += bytes
                let received = attempts[index].received
                let newline = received.firstIndex(of: UInt8(ascii: "\n"))
                // A line ends at its newline, at the end of the stream, or at the limit.
                guard bytes.isEmpty || newline != nil || received.count >= lineLimit else { return }
                let line = received[..<(newline ?? received.endIndex)]
                if line.isEmpty { throw SystemError(call: "read", code: ECONNRESET) }
                attempts[index].record.identity = String(decoding: line, as: UTF8.self)
                if closes == .serverFirst && !bytes.isEmpty {
                    // Server-first: the next line must be empty (the server's FIN, or a bare
                    // newline); what already came after this one is its start.
                    let rest = newline.map { received[($0 + 1)...] } ?? []
                    guard let first = rest.first else {
                        attempts[index].stage = .awaitingEnd
                        return
                    }
                    if first != UInt8(ascii: "\n") { throw SystemError(call: "read", code: EPROTO) }
                }
                try close(index)
            case .awaitingEnd:
                guard let bytes = try client.readNow(limit: 1) else { return }
                // Close only after the server's FIN, so the server is the side that closed first.
                if let first = bytes.first, first != UInt8(ascii: "\n") { throw SystemError(call: "read", code: EPROTO) }
                try close(index)
            case .awaitingReply:
                guard let reply = try client.receiveNow() else { return }
                attempts[index].record.identity = reply.text.split(separator: "\n").first.map(String.init) ?? reply.text
                try close(index)
            case .waiting, .done:
                return
            }
        } catch {
            end(index, error)
        }
    }

    /// The deadline passed with nothing from the socket.
    private mutating func expire(_ index: Int) {
        switch attempts[index].stage {
        case .connecting: end(index, SystemError(call: "connect", code: ETIMEDOUT))
        case .awaitingReply:
            // No reply to any try is a loss, not a failure; a close that fails is still recorded.
            attempts[index].record.lost = true
            do throws(SystemError) {
                try close(index)
            } catch {
                attempts[index].record.error = error.name
            }
        default: end(index, SystemError(call: "read", code: ETIMEDOUT))
        }
    }

    /// The attempt got what it came for: close as the probe says.
    private mutating func close(_ index: Int) throws(SystemError) {
        guard let client = attempts[index].socket else { return }
        if transport == .tcp && closes == .clientReset { try client.set(.linger(seconds: 0)) }
        attempts[index].socket = nil
        attempts[index].stage = .done
        try client.close()
    }

    /// The attempt failed with `error`. Only a refused or unreachable address sends a TCP
    /// client on to the next address of a name.
    private mutating func end(_ index: Int, _ error: SystemError) {
        try? attempts[index].socket?.close()
        attempts[index].socket = nil
        attempts[index].resendAt = nil
        attempts[index].record.error = error.name
        attempts[index].stage = .done
        let more = attempts[index].next + 1 < attempts[index].destinations.count
        if transport == .tcp, more, ProbeConnection.fallbackCodes.contains(error.code) {
            attempts[index].next += 1
            start(index)
        }
    }
}

extension ProbeConnection {
    /// The errors on which a client goes on to a name's next address: refused or
    /// unreachable at once, never a timeout.
    package static let fallbackCodes: [Int32] = [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL, EAFNOSUPPORT]
    /// The same, as a connection records them.
    package static let fallbackErrors: Set<String> = Set(fallbackCodes.map(SystemError.name(of:)))

    /// Nobody answered before the deadline: a UDP datagram on every try, or a TCP connect or
    /// identity line that timed out. Who would have received it is unknown, unlike a refusal.
    package var isUnanswered: Bool { lost == true || error == SystemError.name(of: ETIMEDOUT) }
}
