#!/usr/bin/env python3
"""In-process reference for `hijack-lab matrix`: the same kernel work, without agents.

    unshare --net python3 scripts/matrix-reference.py [--addresses 0.0.0.0,127.0.0.1] [--options LIST] [--cells FILE]
    unshare --net python3 scripts/matrix-reference.py --cases ALL.json [--cells FILE]

It does what `hijack-lab matrix --transport tcp --addresses ... --users same` asks of the
kernel, case by case and in the same order (Sources/HijackLab/Matrix/MatrixModel.swift and
MatrixRunner.swift), from one thread of one process, so that scripts/bench can compare the
lab's cost per case with the cost of the socket work itself:

- the same namespaces: a lab host (the namespace this runs in, lo up) and an external peer,
  joined by the veth lab0/peer0 with 198.51.100.1/24, 2001:db8::1/64 and .2 / ::2 (nodad),
  made with `ip` as LabNetwork.swift makes them;
- every case of first options x second options x first address x second address (grid order),
  then one baseline per options x address with the first socket alone; cases on ports from
  10000 + index, baselines from 40000 + index, as the lab's netns topology gives them;
- per socket: socket, IPV6_V6ONLY for [::]v6only, SO_REUSEADDR / SO_REUSEPORT, bind, listen;
- probes to 127.0.0.1 and ::1 from the lab host and to the lab interface from the peer: one
  connection each when one socket serves, 16 when both do; every connection is a new socket
  that connects, reads the receiver's identity line written on accept, and closes with a RST
  (SO_LINGER 0); then every accepted connection and both sockets are closed.

--cases runs instead the matrix cases that `hijack-lab all --json` lists under "glance" (the
"At a glance" table's cases, then its baselines), each on the port the lab gave it: TCP and
UDP (a UDP socket binds and answers each datagram with its identity; each probe is one
datagram from a fresh connected socket), the second socket made and bound as uid 65534 where
the case's second user is "other" (the socket keeps the uid it was made with), and a case
whose first is a service of several sockets (its "service" addresses, the per-address rows)
binds each of them after the first, with the first's options, before the second. scripts/bench
measures `all` against this beside its floor of namespaces and process starts.

What the agents add on top (processes, JSON over pipes, the identity cross-check) is what
the comparison measures. It refuses to run in its caller's namespace: it brings lo up and
makes a veth, which belong in a private namespace only. The peer namespace is held by a
file descriptor alone, so it vanishes with this process whatever way it ends.

Prints one line: cases, baselines, setup and total milliseconds. --cells FILE writes each
case's grid cell (as MATRIX.md shows it), one per line, so a caller can compare outcomes.
"""
import argparse, ctypes, json, os, select, socket, subprocess, sys, time

CLONE_NEWNET = 0x40000000
LAB_HOST_V4, LAB_PEER_V4 = "198.51.100.1", "198.51.100.2"
LAB_HOST_V6, LAB_PEER_V6 = "2001:db8::1", "2001:db8::2"
# label -> (host, v6only), as MatrixEndpoint.standard
ENDPOINTS = {
    "0.0.0.0": ("0.0.0.0", False), "127.0.0.1": ("127.0.0.1", False), "[::]": ("::", False),
    "[::]v6only": ("::", True), "::1": ("::1", False), "::ffff:127.0.0.1": ("::ffff:127.0.0.1", False),
    "lab-interface": (LAB_HOST_V4, False), "lab-interface6": (LAB_HOST_V6, False),
}
# name -> option names, as MatrixOptions
OPTIONS = {"none": [], "SO_REUSEADDR": ["SO_REUSEADDR"], "SO_REUSEPORT": ["SO_REUSEPORT"], "both": ["SO_REUSEADDR", "SO_REUSEPORT"]}
SOCKOPT = {"SO_REUSEADDR": (socket.SOL_SOCKET, socket.SO_REUSEADDR), "SO_REUSEPORT": (socket.SOL_SOCKET, socket.SO_REUSEPORT),
           "IPV6_V6ONLY": (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)}
CONNECT_TIMEOUT = 1.0  # the matrix's connectTimeout
LINGER_RESET = (1).to_bytes(4, sys.byteorder) + (0).to_bytes(4, sys.byteorder)  # struct linger {1, 0}

libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def ip(batch):
    """One `ip -batch -` in the calling thread's namespace, as the lab runs one per namespace."""
    subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True)


def make_lab():
    """The lab's two namespaces; returns (host fd, peer fd). This process stays in the host."""
    # `unshare --net python3 ...` execs this in a namespace of its own; its parent stays outside.
    if os.readlink("/proc/self/ns/net") == os.readlink(f"/proc/{os.getppid()}/ns/net"):
        raise SystemExit("matrix-reference: run it in a private network namespace (unshare --net python3 ...), never in its caller's")
    host = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    peer = os.open("/proc/self/ns/net", os.O_RDONLY)  # inherited by `ip`, which moves peer0 there by this path
    setns(host)
    ip(f"link set lo up\n"
       f"link add lab0 type veth peer name peer0 netns /proc/{os.getpid()}/fd/{peer}\n"
       f"addr add {LAB_HOST_V4}/24 dev lab0\naddr add {LAB_HOST_V6}/64 dev lab0 nodad\nlink set lab0 up\n")
    setns(peer)
    try:
        ip(f"link set lo up\naddr add {LAB_PEER_V4}/24 dev peer0\naddr add {LAB_PEER_V6}/64 dev peer0 nodad\nlink set peer0 up\n")
    finally:
        setns(host)
    # As MatrixWorker does in the lab host (WritableSysctl): port-unreachable replies are not
    # rate-limited, on either family, so a datagram to nobody comes back refused at once
    # instead of being lost; ICMPv6's per-peer interval would otherwise hold each UDP probe
    # to 2001:db8::1 for its whole timeout.
    for path in ("ipv4/icmp_ratemask", "ipv4/icmp_ratelimit", "ipv6/icmp/ratemask", "ipv6/icmp/ratelimit"):
        with open(f"/proc/sys/net/{path}", "w") as f:
            f.write("0\n")
    return host, peer


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def open_socket(endpoint, options, port, transport="tcp", other=False):
    """socket, options, bind, listen (TCP): (socket or None, bound, serving). `other` makes
    and binds it as uid 65534, as the lab's second agent for another user runs."""
    host, v6only = ENDPOINTS[endpoint]
    if other:
        os.seteuid(65534)
    try:
        s = socket.socket(family(host), socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM)
        try:
            for name in (["IPV6_V6ONLY"] if v6only else []) + OPTIONS[options]:
                level, option = SOCKOPT[name]
                s.setsockopt(level, option, 1)
            s.bind((host, port))
        except OSError:
            return s, False, False
        if transport == "tcp":
            try:
                s.listen(128)
            except OSError:
                return s, True, False
    finally:
        if other:
            os.seteuid(0)
    s.setblocking(False)
    return s, True, True


def connect(client, address, port, listeners, identities, accepted):
    """One probe connection: which listener received it (index), or None (refused, timed out)."""
    client.settimeout(CONNECT_TIMEOUT)
    try:
        client.connect((address, port))
        client.getsockname()
    except OSError:
        client.close()
        return None
    # The handshake is done in the kernel; the listener it is queued on becomes readable.
    ready, _, _ = select.select([l for l in listeners if l is not None], [], [], CONNECT_TIMEOUT)
    receiver = None
    for listener in ready:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            continue
        receiver = listeners.index(listener)
        connection.sendall(identities[receiver])
        accepted.append(connection)
        break
    line = b""
    try:
        while not line.endswith(b"\n"):
            chunk = client.recv(256)
            if not chunk:
                break
            line += chunk
    except OSError:
        receiver = None
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    client.close()
    return receiver


def datagram(client, address, port, listeners, identities, sequence):
    """One probe datagram from a connected socket: which listener answered it (index), or None
    (refused: the port-unreachable comes back to the client as an error)."""
    client.settimeout(CONNECT_TIMEOUT)
    try:
        client.connect((address, port))
        client.send(f"seq {sequence}\n".encode())
        client.getsockname()
    except OSError:
        client.close()
        return None
    live = [l for l in listeners if l is not None]
    ready, _, _ = select.select(live + [client], [], [], CONNECT_TIMEOUT)
    receiver = None
    for listener in ready:
        if listener is client:
            continue
        try:
            _, sender = listener.recvfrom(2048)
        except BlockingIOError:
            continue
        receiver = listeners.index(listener)
        listener.sendto(identities[receiver], sender)
        break
    try:
        client.recv(256)
    except OSError:
        receiver = None
    client.close()
    return receiver


def run_case(first, first_options, second, second_options, port, peer, host, transport="tcp", second_other=False, service=()):
    """One case; returns its cell as MatrixCaseOutcome.cell renders it. `service` names the
    first's other addresses (MatrixCase.service): one socket each, with the first's options,
    bound in order after it as MatrixRunner binds them, the rest not tried once one fails;
    whichever of them receives, the first received."""
    firsts, first_serves = [], True
    for name in [first, *service]:
        one, bound, serves = open_socket(name, first_options, port, transport)
        firsts.append(one)
        if not (bound and serves):
            first_serves = False
            break
    identities = [f"first {os.getpid()} {os.geteuid()}\n".encode()] * len(firsts) + [f"second {os.getpid()} {os.geteuid()}\n".encode()]
    two, second_bound, second_serves = (None, False, False) if second is None else open_socket(second, second_options, port, transport, second_other)
    accepted = []
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    try:
        if not first_serves:
            return "F"
        if second is not None and not second_bound:
            return "B"
        if second is not None and not second_serves:
            return "L"
        both = second is not None
        count = 16 if both else 1
        listeners = firsts + [two if both else None]
        cell = ""
        for address, from_peer in (("127.0.0.1", False), ("::1", False), (LAB_HOST_V4, True), (LAB_HOST_V6, True)):
            # A socket belongs to the namespace it was made in: the peer's clients are made there.
            if from_peer:
                setns(peer)
            try:
                clients = [socket.socket(family(address), kind) for _ in range(count)]
            finally:
                if from_peer:
                    setns(host)
            if transport == "tcp":
                got = [connect(c, address, port, listeners, identities, accepted) for c in clients]
            else:
                got = [datagram(c, address, port, listeners, identities, n) for n, c in enumerate(clients)]
            # A listener's index, as the first (0) or the second (1).
            got = [None if index is None else 0 if index < len(firsts) else 1 for index in got]
            cell += {(True, True): "S", (False, True): "A", (True, False): "V", (False, False): "-"}[(0 in got, 1 in got)]
        return cell
    finally:
        for connection in accepted:
            connection.close()
        for s in firsts + [two]:
            if s is not None:
                s.close()


def listed_cases(path):
    """The "glance" cases and baselines of an `all --json` file, as run_case's arguments."""
    with open(path) as f:
        document = json.load(f)
    glance = document.get("glance")
    if not glance:
        raise SystemExit(f"matrix-reference: {path} has no \"glance\" section (write it with `hijack-lab all --json FILE`)")
    runs = []
    for outcome in glance["cases"] + glance["baselines"]:
        case = outcome["matrixCase"]
        if "port" not in outcome:
            raise SystemExit(f"matrix-reference: {path}: a case without a port (not run by the lab?): {case}")
        if case.get("firstDevice"):
            raise SystemExit(f"matrix-reference: {path}: a case whose first socket is bound to a device ({case['firstDevice']}); the reference binds no device")
        second = case.get("second")
        runs.append((case["first"]["label"], case["firstOptions"], second["label"] if second else None, case["secondOptions"],
                     outcome["port"], case["transport"], case.get("secondUser") == "other", [s["label"] for s in case.get("service") or []]))
    return len(glance["cases"]), len(glance["baselines"]), runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", default="0.0.0.0,127.0.0.1")
    parser.add_argument("--options", default="none,SO_REUSEADDR,SO_REUSEPORT,both")
    parser.add_argument("--cells", help="write each case's cell, one per line, cases then baselines")
    parser.add_argument("--cases", help="run the glance cases of this `hijack-lab all --json` file instead")
    arguments = parser.parse_args()
    addresses = arguments.addresses.split(",")
    options = arguments.options.split(",")
    for name in addresses:
        if name not in ENDPOINTS:
            parser.error(f"--addresses: {name!r} is not one of {', '.join(ENDPOINTS)}")
    for name in options:
        if name not in OPTIONS:
            parser.error(f"--options: {name!r} is not one of {', '.join(OPTIONS)}")

    if arguments.cases:
        case_count, baseline_count, runs = listed_cases(arguments.cases)
    else:
        # MatrixFilter.cases: first options, second options, first address, second address.
        cases = [(a, oa, b, ob) for oa in options for ob in options for a in addresses for b in addresses]
        baselines = [(a, o, None, "none") for o in options for a in addresses]
        case_count, baseline_count = len(cases), len(baselines)
        runs = [(a, oa, b, ob, 10_000 + index, "tcp", False, []) for index, (a, oa, b, ob) in enumerate(cases)]
        runs += [(a, oa, b, ob, 40_000 + index, "tcp", False, []) for index, (a, oa, b, ob) in enumerate(baselines)]
    for first, _, second, _, _, _, _, service in runs:
        for name in [first, *service] + ([second] if second else []):
            if name not in ENDPOINTS:
                raise SystemExit(f"matrix-reference: address {name!r} is not one of {', '.join(ENDPOINTS)}")
    started = time.perf_counter()
    host, peer = make_lab()
    set_up = time.perf_counter()
    cells = [run_case(a, oa, b, ob, port, peer, host, transport, other, service) for a, oa, b, ob, port, transport, other, service in runs]
    finished = time.perf_counter()
    if arguments.cells:
        with open(arguments.cells, "w") as f:
            f.write("".join(cell + "\n" for cell in cells))
    print(f"cases {case_count} baselines {baseline_count} setup_ms {(set_up - started) * 1000:.2f} total_ms {(finished - started) * 1000:.2f}")


if __name__ == "__main__":
    main()
