import HijackSystem
import Glibc

/// The client role: connections (TCP) or datagrams (UDP), one new socket each, so that each
/// has its own source port as separate clients would.
extension Agent {
    func probe(_ request: ProbeRequest) -> AgentReply {
        var connections: [ProbeConnection] = []
        var resolved: [String]?
        let timeout = Double(request.timeoutMilliseconds) / 1000
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
            for sequence in 0..<max(0, target.count) {
                if request.transport == .udp {
                    connections.append(Self.datagram(sequence, to: destinations[0], timeout: timeout))
                } else {
                    connections.append(Self.connection(to: destinations, closes: request.closes, timeout: timeout))
                }
            }
        }
        return .probed(connections: connections, resolved: resolved)
    }

    /// One TCP connection: the first destination that accepts it, in order, as clients do.
    private static func connection(to destinations: [SocketAddress], closes: CloseOrder, timeout: Double) -> ProbeConnection {
        var record = ProbeConnection()
        for destination in destinations {
            record = ProbeConnection(remote: destination.host)
            do throws(SystemError) {
                let client = try Socket(family: destination.family, transport: .tcp)
                let deadline = Deadline.after(seconds: timeout)
                try client.connect(to: destination, until: deadline)
                record.local = try client.localAddress().description
                if closes == .serverFirst { try client.write("S\n") }
                let line = try client.readLine(until: deadline)
                if line.isEmpty { throw SystemError(call: "read", code: ECONNRESET) }
                record.identity = line
                // Close only after the server's FIN, so the server is the side that closed first.
                if closes == .serverFirst, try !client.readLine(until: deadline).isEmpty { throw SystemError(call: "read", code: EPROTO) }
                if closes == .clientReset { try client.set(.linger(seconds: 0)) }
                try client.close()
                return record
            } catch {
                record.error = error.name
                // Only a refused or unreachable address sends a client on to the next one.
                guard ProbeConnection.fallbackCodes.contains(error.code) else { return record }
            }
        }
        return record
    }

    /// One datagram from a fresh socket; the reply names the receiver. No reply is a loss.
    /// The socket is connected, so an ICMP port unreachable comes back as ECONNREFUSED at
    /// once instead of a wait; the lab's servers answer from the address they were sent to.
    private static func datagram(_ sequence: Int, to destination: SocketAddress, timeout: Double) -> ProbeConnection {
        var record = ProbeConnection(remote: destination.host)
        do throws(SystemError) {
            let client = try Socket(family: destination.family, transport: .udp)
            try client.connect(to: destination, until: .after(seconds: timeout))
            try client.send("seq \(sequence)\n", to: destination)
            record.local = try client.localAddress().description
            if let reply = try client.receive(until: .after(seconds: timeout)) {
                record.identity = reply.text.split(separator: "\n").first.map(String.init) ?? reply.text
            } else {
                record.lost = true
            }
            try client.close()
        } catch {
            record.error = error.name
        }
        return record
    }
}

extension ProbeConnection {
    /// The errors on which a client goes on to a name's next address: refused or
    /// unreachable at once, never a timeout.
    package static let fallbackCodes: [Int32] = [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL, EAFNOSUPPORT]
    /// The same, as a connection records them.
    package static let fallbackErrors: Set<String> = Set(fallbackCodes.map(SystemError.name(of:)))
}
