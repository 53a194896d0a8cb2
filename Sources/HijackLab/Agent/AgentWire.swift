import HijackAudit
import HijackSystem

/// The protocol's bytes: each command, reply and event as one line of compact JSON, written
/// with JSONWriter and read with JSONParser, so that neither side needs Foundation.
/// Keys are written sorted, as everywhere in the lab's JSON.
package enum AgentWire {
    /// A line that is not a message of this protocol.
    package struct Unreadable: Error, Sendable, CustomStringConvertible {
        package var reason: String
        package var description: String { reason }
    }

    // MARK: - Commands

    package static func encode(_ command: AgentCommand) -> [UInt8] {
        JSONWriter.bytes(pretty: false) { out in
            out.object(level: 0) { out in
                switch command {
                case .bind(let socket):
                    writeSocket(socket, listen: nil, op: "bind", to: &out)
                case .open(let socket, let listen):
                    writeSocket(socket, listen: listen, op: "open", to: &out)
                case .listen, .serve, .sync:
                    out.key("op", first: true, level: 1)
                    out.string(command.operation)
                case .close(let wait), .exit(let wait):
                    out.key("op", first: true, level: 1)
                    out.string(command.operation)
                    if let wait {
                        out.key("wait", level: 1)
                        out.number(wait)
                    }
                case .exec(let argv, let input, let timeout):
                    out.key("argv", first: true, level: 1)
                    out.array(argv, level: 1) { out, argument in out.string(argument) }
                    if let input {
                        out.key("input", level: 1)
                        out.string(input)
                    }
                    out.key("op", level: 1)
                    out.string(command.operation)
                    out.key("timeout", level: 1)
                    out.number(timeout)
                case .audit(let port, let options, let ephemeral):
                    // "ephemeral": "all", or the inodes under "seen"; neither for .bound.
                    if ephemeral == .all {
                        out.key("ephemeral", first: true, level: 1)
                        out.string("all")
                    }
                    out.key("op", first: ephemeral != .all, level: 1)
                    out.string(command.operation)
                    if !options {
                        out.key("options", level: 1)
                        out.bool(false)
                    }
                    if let port {
                        out.key("port", level: 1)
                        out.number(port)
                    }
                    if case .seen(let inodes) = ephemeral {
                        out.key("seen", level: 1)
                        out.array(inodes.sorted(), level: 1) { out, inode in out.number(inode) }
                    }
                case .sysctl(let sysctl, let value):
                    out.key("op", first: true, level: 1)
                    out.string(command.operation)
                    out.key("path", level: 1)
                    out.string(sysctl.path)
                    out.key("value", level: 1)
                    out.string(value)
                case .probe(let probe):
                    out.key("closes", first: true, level: 1)
                    out.string(probe.closes.rawValue)
                    out.key("destinations", level: 1)
                    out.array(probe.destinations, level: 1) { out, destination in
                        out.object(level: 2) { out in
                            out.key("address", first: true, level: 3)
                            out.string(destination.address)
                            out.key("count", level: 3)
                            out.number(destination.count)
                        }
                    }
                    out.key("labRanges", level: 1)
                    out.bool(probe.labRanges)
                    out.key("op", level: 1)
                    out.string(command.operation)
                    out.key("port", level: 1)
                    out.number(probe.port)
                    out.key("timeout", level: 1)
                    out.number(probe.timeoutMilliseconds)
                    out.key("transport", level: 1)
                    out.string(probe.transport.rawValue)
                }
            }
        }
    }

    private static func writeSocket(_ socket: SocketRequest, listen: Bool?, op: StaticString, to out: inout JSONWriter) {
        out.key("address", first: true, level: 1)
        out.string(socket.address)
        if let device = socket.device {
            out.key("device", level: 1)
            out.string(device)
        }
        if let listen {
            out.key("listen", level: 1)
            out.bool(listen)
        }
        out.key("op", level: 1)
        out.string(String(describing: op))
        out.key("options", level: 1)
        out.array(socket.options, level: 1) { out, option in out.string(option) }
        out.key("port", level: 1)
        out.number(socket.port)
        out.key("transport", level: 1)
        out.string(socket.transport.rawValue)
    }

    package static func decodeCommand(_ line: [UInt8]) throws(Unreadable) -> AgentCommand {
        let object = try WireObject(line: line)
        switch try object.string("op") {
        case "bind": return .bind(try socket(object))
        case "open": return .open(try socket(object), listen: try object.bool("listen"))
        case "listen": return .listen
        case "serve": return .serve
        case "sync": return .sync
        case "close": return .close(waitMilliseconds: try object.optionalInt("wait"))
        case "exit": return .exit(waitMilliseconds: try object.optionalInt("wait"))
        case "exec":
            return .exec(argv: try object.strings("argv"), input: try object.optionalString("input"), timeoutMilliseconds: try object.int("timeout"))
        case "audit":
            let only = try object.optionalInt("port").map { value throws(Unreadable) in try port(value) }
            let options = try object.optionalBool("options") ?? true
            switch try object.optionalString("ephemeral") {
            case "all"?: return .audit(port: only, options: options, ephemeral: .all)
            case nil: return .audit(port: only, options: options, ephemeral: try object.optionalUInt64s("seen").map { .seen(Set($0)) } ?? .bound)
            case let other?: throw Unreadable(reason: "ephemeral must be \"all\" or absent, not \"\(other)\"")
            }
        case "sysctl":
            let path = try object.string("path")
            guard let sysctl = WritableSysctl(rawValue: path) else {
                throw Unreadable(reason: "sysctl may set only " + WritableSysctl.allCases.map(\.path).joined(separator: ", "))
            }
            return .sysctl(sysctl, value: try object.string("value"))
        case "probe":
            let destinations = try object.objects("destinations").map { destination throws(Unreadable) in
                ProbeRequest.Destination(address: try destination.string("address"), count: try destination.int("count"))
            }
            guard let closes = CloseOrder(rawValue: try object.string("closes")) else { throw Unreadable(reason: "unknown close order") }
            return .probe(ProbeRequest(transport: try transport(object), destinations: destinations, port: try port(try object.int("port")),
                                       closes: closes, timeoutMilliseconds: try object.int("timeout"), labRanges: try object.bool("labRanges")))
        case let other: throw Unreadable(reason: "unknown operation \(other)")
        }
    }

    private static func socket(_ object: WireObject) throws(Unreadable) -> SocketRequest {
        SocketRequest(transport: try transport(object), address: try object.string("address"), port: try port(try object.int("port")),
                      options: try object.strings("options"), device: try object.optionalString("device"))
    }

    private static func transport(_ object: WireObject) throws(Unreadable) -> Transport {
        guard let transport = Transport(rawValue: try object.string("transport")) else { throw Unreadable(reason: "unknown transport") }
        return transport
    }

    private static func port(_ value: Int) throws(Unreadable) -> UInt16 {
        guard let port = UInt16(exactly: value) else { throw Unreadable(reason: "port \(value) is out of range") }
        return port
    }

    // MARK: - Replies and events

    package static func encode(_ message: AgentMessage) -> [UInt8] {
        JSONWriter.bytes(pretty: false) { out in
            out.object(level: 0) { out in
                switch message {
                case .event(.ready(let pid, let uid, let failure)):
                    out.key("event", first: true, level: 1)
                    out.string("ready")
                    if let failure {
                        out.key("failure", level: 1)
                        out.string(failure)
                    }
                    out.key("pid", level: 1)
                    out.number(pid)
                    out.key("uid", level: 1)
                    out.number(uid)
                case .event(.accepted(let peer)), .event(.received(let peer)):
                    out.key("event", first: true, level: 1)
                    if case .event(.accepted) = message { out.string("accepted") } else { out.string("received") }
                    if let peer {
                        out.key("peer", level: 1)
                        out.string(peer)
                    }
                case .reply(.done(let calls)):
                    out.key("calls", first: true, level: 1)
                    out.array(calls, level: 1) { out, call in writeCall(call, to: &out) }
                    out.key("reply", level: 1)
                    out.string("done")
                case .reply(.executed(let call, let output)):
                    out.key("call", first: true, level: 1)
                    writeCall(call, to: &out)
                    if let output {
                        out.key("output", level: 1)
                        out.string(output)
                    }
                    out.key("reply", level: 1)
                    out.string("executed")
                case .reply(.probed(let connections, let resolved)):
                    out.key("connections", first: true, level: 1)
                    out.array(connections, level: 1) { out, connection in writeConnection(connection, to: &out) }
                    out.key("reply", level: 1)
                    out.string("probed")
                    if let resolved {
                        out.key("resolved", level: 1)
                        out.array(resolved, level: 1) { out, address in out.string(address) }
                    }
                case .reply(.audited(let report)):
                    out.key("audit", first: true, level: 1)
                    out.raw(oneLine(AuditJSON.encode(report)))
                    out.key("reply", level: 1)
                    out.string("audited")
                case .reply(.refused(let reason)):
                    out.key("reason", first: true, level: 1)
                    out.string(reason)
                    out.key("reply", level: 1)
                    out.string("refused")
                }
            }
        }
    }

    /// The audit's pretty JSON on one line. A newline in it is always layout (JSON escapes
    /// the ones inside strings), and so are the spaces of indentation that follow it.
    private static func oneLine(_ pretty: [UInt8]) -> [UInt8] {
        var line: [UInt8] = []
        line.reserveCapacity(pretty.count)
        var indenting = false
        for byte in pretty {
            if byte == 0x0a {
                indenting = true
            } else if !(indenting && byte == 0x20) {
                indenting = false
                line.append(byte)
            }
        }
        return line
    }

    private static func writeCall(_ call: SyscallRecord, to out: inout JSONWriter) {
        out.object(level: 2) { out in
            out.key("arguments", first: true, level: 3)
            out.string(call.arguments)
            out.key("call", level: 3)
            out.string(call.call)
            out.key("result", level: 3)
            out.string(call.result.text)
        }
    }

    private static func writeConnection(_ connection: ProbeConnection, to out: inout JSONWriter) {
        out.object(level: 2) { out in
            var first = true
            func key(_ name: StaticString, _ out: inout JSONWriter) {
                out.key(name, first: first, level: 3)
                first = false
            }
            if let error = connection.error { key("error", &out); out.string(error) }
            if let identity = connection.identity { key("identity", &out); out.string(identity) }
            if let local = connection.local { key("local", &out); out.string(local) }
            if let lost = connection.lost { key("lost", &out); out.bool(lost) }
            if let remote = connection.remote { key("remote", &out); out.string(remote) }
            if let tries = connection.tries { key("tries", &out); out.number(tries) }
        }
    }

    package static func decodeMessage(_ line: [UInt8]) throws(Unreadable) -> AgentMessage {
        let object = try WireObject(line: line)
        if let event = try object.optionalString("event") {
            switch event {
            case "ready":
                guard let pid = Int32(exactly: try object.int("pid")), let uid = UInt32(exactly: try object.int("uid")) else {
                    throw Unreadable(reason: "pid or uid out of range")
                }
                return .event(.ready(pid: pid, uid: uid, failure: try object.optionalString("failure")))
            case "accepted": return .event(.accepted(peer: try object.optionalString("peer")))
            case "received": return .event(.received(peer: try object.optionalString("peer")))
            default: throw Unreadable(reason: "unknown event \(event)")
            }
        }
        switch try object.string("reply") {
        case "done": return .reply(.done(calls: try object.objects("calls").map { call throws(Unreadable) in try syscall(call) }))
        case "executed": return .reply(.executed(try syscall(try object.object("call")), output: try object.optionalString("output")))
        case "probed":
            let connections = try object.objects("connections").map { item throws(Unreadable) in
                ProbeConnection(local: try item.optionalString("local"), identity: try item.optionalString("identity"), error: try item.optionalString("error"),
                                remote: try item.optionalString("remote"), lost: try item.optionalBool("lost"), tries: try item.optionalInt("tries"))
            }
            return .reply(.probed(connections: connections, resolved: try object.optionalStrings("resolved")))
        case "audited":
            guard let value = object.object["audit"] else { throw Unreadable(reason: "missing audit") }
            do {
                return .reply(.audited(try AuditReport(from: JSONValueDecoder(value: value))))
            } catch {
                throw Unreadable(reason: "unreadable audit: \(error)")
            }
        case "refused": return .reply(.refused(reason: try object.string("reason")))
        case let other: throw Unreadable(reason: "unknown reply \(other)")
        }
    }

    private static func syscall(_ object: WireObject) throws(Unreadable) -> SyscallRecord {
        SyscallRecord(call: try object.string("call"), arguments: try object.string("arguments"), result: SyscallResult(text: try object.string("result")))
    }
}

/// A JSON object of the wire, whose fields are read with the type they must have.
private struct WireObject {
    let object: JSONObject

    init(_ object: JSONObject) {
        self.object = object
    }

    init(line: [UInt8]) throws(AgentWire.Unreadable) {
        let value: JSONValue
        do throws(JSONParseError) {
            value = try JSONParser.parse(line)
        } catch {
            throw AgentWire.Unreadable(reason: "not JSON: \(error.expected) at column \(error.column)")
        }
        guard case .object(let object) = value else { throw AgentWire.Unreadable(reason: "not a JSON object") }
        self.object = object
    }

    private func missing(_ key: String, _ type: String) -> AgentWire.Unreadable {
        AgentWire.Unreadable(reason: "\(key) must be \(type)")
    }

    func optionalString(_ key: String) throws(AgentWire.Unreadable) -> String? {
        switch object[key] {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw missing(key, "a string")
        }
    }

    func string(_ key: String) throws(AgentWire.Unreadable) -> String {
        guard let text = try optionalString(key) else { throw missing(key, "a string") }
        return text
    }

    func optionalInt(_ key: String) throws(AgentWire.Unreadable) -> Int? {
        switch object[key] {
        case nil, .null?: return nil
        case .number(let number)?:
            guard let value = Int(number.text) else { throw missing(key, "a whole number") }
            return value
        default: throw missing(key, "a whole number")
        }
    }

    func int(_ key: String) throws(AgentWire.Unreadable) -> Int {
        guard let value = try optionalInt(key) else { throw missing(key, "a whole number") }
        return value
    }

    func optionalBool(_ key: String) throws(AgentWire.Unreadable) -> Bool? {
        switch object[key] {
        case nil, .null?: return nil
        case .bool(let flag)?: return flag
        default: throw missing(key, "true or false")
        }
    }

    func bool(_ key: String) throws(AgentWire.Unreadable) -> Bool {
        guard let flag = try optionalBool(key) else { throw missing(key, "true or false") }
        return flag
    }

    func optionalStrings(_ key: String) throws(AgentWire.Unreadable) -> [String]? {
        switch object[key] {
        case nil, .null?: return nil
        case .array(let items)?:
            return try items.map { item throws(AgentWire.Unreadable) in
                guard case .string(let text) = item else { throw missing(key, "an array of strings") }
                return text
            }
        default: throw missing(key, "an array of strings")
        }
    }

    func optionalUInt64s(_ key: String) throws(AgentWire.Unreadable) -> [UInt64]? {
        switch object[key] {
        case nil, .null?: return nil
        case .array(let items)?:
            return try items.map { item throws(AgentWire.Unreadable) in
                guard case .number(let number) = item, let value = UInt64(number.text) else { throw missing(key, "an array of whole numbers") }
                return value
            }
        default: throw missing(key, "an array of whole numbers")
        }
    }

    func strings(_ key: String) throws(AgentWire.Unreadable) -> [String] {
        guard let items = try optionalStrings(key) else { throw missing(key, "an array of strings") }
        return items
    }

    func object(_ key: String) throws(AgentWire.Unreadable) -> WireObject {
        guard case .object(let inner)? = object[key] else { throw missing(key, "an object") }
        return WireObject(inner)
    }

    func objects(_ key: String) throws(AgentWire.Unreadable) -> [WireObject] {
        guard case .array(let items)? = object[key] else { throw missing(key, "an array of objects") }
        return try items.map { item throws(AgentWire.Unreadable) in
            guard case .object(let inner) = item else { throw missing(key, "an array of objects") }
            return WireObject(inner)
        }
    }
}
