import Glibc
import Testing
@testable import HijackLab
@testable import HijackSystem
@testable import HijackAudit
@testable import HijackAgent
@testable import HijackCLI

@Suite("Sockets layer on real sockets")
struct SocketTests {
    @Test("A second bind on a listening port fails with the errno's name, EADDRINUSE")
    func realAddressInUse() throws {
        let first = try Socket(family: AF_INET, transport: .tcp)
        try first.bind(to: SocketAddress(host: "127.0.0.1", port: 0)!)
        try first.listen()
        let port = try first.localAddress().port
        let second = try Socket(family: AF_INET, transport: .tcp)
        let error = #expect(throws: SystemError.self) { try second.bind(to: SocketAddress(host: "127.0.0.1", port: port)!) }
        #expect(error?.call == "bind")
        #expect(error?.name == "EADDRINUSE")
        #expect(error?.description.hasPrefix("bind: EADDRINUSE") == true)
    }

    @Test("SO_REUSEPORT on both sockets lets the same user bind 127.0.0.1 under 0.0.0.0")
    func reusePortOverlap() throws {
        let victim = try Socket(family: AF_INET, transport: .tcp)
        try victim.set(.reusePort)
        try victim.bind(to: SocketAddress(host: "0.0.0.0", port: 0)!)
        try victim.listen()
        let port = try victim.localAddress().port
        let attacker = try Socket(family: AF_INET, transport: .tcp)
        try attacker.set(.reusePort)
        try attacker.bind(to: SocketAddress(host: "127.0.0.1", port: port)!)
        try attacker.listen()
        #expect(try attacker.localAddress() == SocketAddress(host: "127.0.0.1", port: port))
    }

    @Test("connect to a port nobody listens on fails with ECONNREFUSED")
    func connectRefused() throws {
        let placeholder = try Socket(family: AF_INET, transport: .tcp)
        try placeholder.bind(to: SocketAddress(host: "127.0.0.1", port: 0)!)
        let port = try placeholder.localAddress().port  // bound, never listening: refused
        let client = try Socket(family: AF_INET, transport: .tcp)
        let error = #expect(throws: SystemError.self) { try client.connect(to: SocketAddress(host: "127.0.0.1", port: port)!, until: .after(seconds: 2)) }
        #expect(error?.name == "ECONNREFUSED")
    }

    @Test("SO_BINDTODEVICE to a missing interface fails with ENODEV")
    func missingDevice() throws {
        let socket = try Socket(family: AF_INET, transport: .tcp)
        let error = #expect(throws: SystemError.self) { try socket.set(.bindToDevice("nosuchdev0")) }
        #expect(error?.call == "setsockopt")
        #expect(error?.name == "ENODEV")
    }

    @Test("Options are read back from the kernel as set")
    func optionsReachTheKernel() throws {
        let socket = try Socket(family: AF_INET6, transport: .tcp)
        for option in [SocketOption.reuseAddress, .reusePort, .ipv6Only] { try socket.set(option) }
        func read(_ level: Int32, _ name: Int32) -> Int32 {
            var value: Int32 = -1
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(socket.fd, level, name, &value, &length)
            return value
        }
        #expect(read(SOL_SOCKET, SO_REUSEADDR) == 1)
        #expect(read(SOL_SOCKET, SO_REUSEPORT) == 1)
        #expect(read(Int32(IPPROTO_IPV6), IPV6_V6ONLY) == 1)
    }

    @Test("Addresses parse and print", arguments: [
        ("127.0.0.1", "127.0.0.1:8080", AF_INET),
        ("0.0.0.0", "0.0.0.0:8080", AF_INET),
        ("::1", "[::1]:8080", AF_INET6),
        ("[::]", "[::]:8080", AF_INET6),
        ("::ffff:127.0.0.1", "[::ffff:127.0.0.1]:8080", AF_INET6),
        ("2001:0db8:0::1", "[2001:db8::1]:8080", AF_INET6),
    ])
    func addresses(input: String, printed: String, family: Int32) throws {
        let address = try #require(SocketAddress(host: input, port: 8080))
        #expect(address.description == printed)
        #expect(address.family == family)
        #expect(address.port == 8080)
    }

    @Test("Names and malformed text are not addresses", arguments: ["localhost", "999.1.1.1", "1.2.3", "::g", ""])
    func notAddresses(input: String) {
        #expect(SocketAddress(host: input, port: 1) == nil)
    }

    @Test("errno names round-trip")
    func errnoNames() {
        #expect(SystemError.name(of: EADDRINUSE) == "EADDRINUSE")
        #expect(SystemError.name(of: EACCES) == "EACCES")
        #expect(SystemError.code(named: "ECONNREFUSED") == ECONNREFUSED)
        #expect(SystemError.code(named: "EWHATEVER") == nil)
    }

    @Test("A deadline bounds a wait for data that never comes")
    func boundedRead() throws {
        let listener = try Socket(family: AF_INET, transport: .tcp)
        try listener.bind(to: SocketAddress(host: "127.0.0.1", port: 0)!)
        try listener.listen()
        let client = try Socket(family: AF_INET, transport: .tcp)
        try client.connect(to: listener.localAddress(), until: .after(seconds: 2))
        // The listener never accepts or writes, so the read must end at its deadline.
        let error = #expect(throws: SystemError.self) { try client.readLine(until: .after(seconds: 0.05)) }
        #expect(error?.name == "ETIMEDOUT")
    }
}
