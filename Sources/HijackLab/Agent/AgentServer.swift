import HijackSystem
import Glibc

/// The server role: one lab socket, bound, listening and served as the runner says.
extension Agent {
    func bind(_ request: SocketRequest) -> AgentReply {
        guard socket == nil else { return .refused(reason: "this agent already has a socket") }
        guard let address = SocketAddress(host: request.address, port: request.port) else {
            return .refused(reason: "bind needs a numeric address and a port")
        }
        var options: [SocketOption] = []
        for name in request.options {
            guard let option = SocketOption(name: name) else { return .refused(reason: "unknown option \(name)") }
            options.append(option)
        }
        if let device = request.device { options.append(.bindToDevice(device)) }
        transport = request.transport
        var calls: [SyscallRecord] = []
        let family = address.family == AF_INET ? "AF_INET" : "AF_INET6"
        let kind = transport == .tcp ? "SOCK_STREAM" : "SOCK_DGRAM"
        do throws(SystemError) {
            let created = try Socket(family: address.family, transport: transport)
            calls.append(SyscallRecord(call: "socket", arguments: "\(family), \(kind)", result: .ok))
            socket = created
            for option in options {
                let arguments = "\(option.name), \(option.valueDescription)"
                do throws(SystemError) {
                    try created.set(option)
                    calls.append(SyscallRecord(call: "setsockopt", arguments: arguments, result: .ok))
                } catch {
                    calls.append(SyscallRecord(call: "setsockopt", arguments: arguments, result: SyscallResult(error)))
                    throw error
                }
            }
            do throws(SystemError) {
                try created.bind(to: address)
                calls.append(SyscallRecord(call: "bind", arguments: address.description, result: .ok))
            } catch {
                calls.append(SyscallRecord(call: "bind", arguments: address.description, result: SyscallResult(error)))
            }
        } catch where error.call == "socket" {
            calls.append(SyscallRecord(call: "socket", arguments: "\(family), \(kind)", result: SyscallResult(error)))
        } catch {
            // A failed setsockopt is already recorded; bind was not attempted.
        }
        return .done(calls: calls)
    }

    func listen() -> AgentReply {
        guard let socket else { return .refused(reason: "listen before a socket exists") }
        do throws(SystemError) {
            try socket.listen()
            return .done(calls: [SyscallRecord(call: "listen", arguments: "128", result: .ok)])
        } catch {
            return .done(calls: [SyscallRecord(call: "listen", arguments: "128", result: SyscallResult(error))])
        }
    }

    func serve() -> AgentReply {
        guard let socket else { return .refused(reason: "serve before a socket exists") }
        // Non-blocking, so one readiness report lets us drain every queued connection.
        do throws(SystemError) {
            try Syscall.setNonBlocking(socket.fd)
        } catch {
            return .refused(reason: "could not serve: \(error)")
        }
        serving = true
        return .done(calls: [])
    }

    /// bind, then listen (TCP) and serve where each step before succeeded: the calls of all.
    func open(_ request: SocketRequest, listen wantsListen: Bool) -> AgentReply {
        let bound = bind(request)
        guard case .done(var calls) = bound, wantsListen, let last = calls.last, last.call == "bind", last.result == .ok else { return bound }
        if transport == .tcp {
            let listening = listen()
            calls += listening.calls
            guard listening.calls.last?.result == .ok else { return .done(calls: calls) }
        }
        let served = serve()
        if case .refused = served { return served }
        return .done(calls: calls)
    }

    func acceptPending() {
        guard let socket else { return }
        let line = identity.description + "\n"
        while true {
            let accepted: (connection: Socket, peer: SocketAddress?)
            do throws(SystemError) {
                accepted = try socket.accept()
            } catch {
                return
            }
            // The event goes out before the identity, so by the time a client has read the
            // identity, the runner can already find this acceptance in the pipe.
            emit(.event(.accepted(peer: accepted.peer?.description)))
            try? accepted.connection.write(line)
            connections.append(accepted.connection)
        }
    }

    /// UDP "serving": answer each datagram with this agent's identity, after reporting it.
    func answerDatagrams() {
        guard let socket else { return }
        let line = identity.description + "\n"
        while let datagram = try? socket.receiveNow() {
            emit(.event(.received(peer: datagram.from?.description)))
            if let sender = datagram.from { try? socket.send(line, to: sender) }
        }
    }

    /// A served connection ends when the client says "S" (the server is to close first, so
    /// TIME_WAIT lands here), or when the client's FIN arrives (it closed first).
    func servedConnectionEnded(_ fd: Int32) -> Bool {
        var scratch = [UInt8](repeating: 0, count: 256)
        do throws(SystemError) {
            let count = try Syscall.read(fd, into: &scratch)
            return count == 0 || scratch[..<count].contains(UInt8(ascii: "S"))
        } catch {
            return true
        }
    }

    @discardableResult
    func closeAll(waiting milliseconds: Int? = nil) -> [SyscallRecord] {
        // A client that has its identity closes at once; waiting for its FIN here keeps a
        // client-first connection from turning server-first just because the server exits.
        let deadline = Deadline.after(seconds: Double(milliseconds ?? 2000) / 1000)
        for connection in connections {
            while (try? waitFor(connection.fd, events: Int16(POLLIN), until: deadline)) == true {
                if servedConnectionEnded(connection.fd) { break }
            }
            // A lingering close returns once the client has acknowledged this side's FIN
            // (LAST_ACK or FIN_WAIT1 is over), within a second: until then the connection
            // still holds the port, and a restart that binds right after this agent exits
            // would race the kernel's last step of the close (seen as EADDRINUSE under load in
            // a client-first restart). Server-side TIME_WAIT, which a scenario may be there
            // to show, comes after and is not waited for.
            try? connection.set(.linger(seconds: 1))
            try? connection.close()
        }
        connections.removeAll()
        serving = false
        guard let socket else { return [] }
        self.socket = nil
        do throws(SystemError) {
            try socket.close()
            return [SyscallRecord(call: "close", arguments: "", result: .ok)]
        } catch {
            return [SyscallRecord(call: "close", arguments: "", result: SyscallResult(error))]
        }
    }
}
