import HijackSystem
import CHijackLab
import Glibc

extension Agent {
    /// Enters the namespace, then gives up every privilege the agent's role does not need,
    /// all before any socket exists. Both act on the calling thread, and this one thread
    /// does all of the agent's socket work.
    func takePlace() -> String? {
        do throws(SystemError) {
            if netns == "new" {
                try check("unshare(CLONE_NEWNET)", hl_unshare_net())
            } else if let netns {
                let fd = try Syscall.open(netns, O_RDONLY)
                defer { try? Syscall.close(fd) }
                try check("setns(\(netns))", hl_setns_net(fd))
            }
            let keep = AgentPrivileges(netns: netns, hostClient: hostClient, bindService: bindService)
            try Capabilities.limitBoundingSet(to: keep.bounding)
            if let account {
                // After the bounding set, which needs CAP_SETPCAP; setuid from root clears
                // the permitted and effective sets itself.
                try check("setgroups(0)", setgroups(0, nil))
                try check("setgid(\(account.gid))", setgid(account.gid))
                try check("setuid(\(account.uid))", setuid(account.uid))
                if geteuid() != account.uid || getegid() != account.gid || getuid() != account.uid || getgid() != account.gid {
                    return "still uid \(geteuid()) gid \(getegid()) after dropping privileges to \(account.name)"
                }
            }
            try Capabilities.limit(effective: keep.effective, permitted: keep.permitted)
            try check("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", hl_cap_ambient_clear_all())
            // Root hands capabilities to what it execs through the bounding set; any other uid
            // (a runner given CAP_SYS_ADMIN and CAP_NET_ADMIN as ambient capabilities) only
            // through the ambient set, so there the tool's capability goes back in alone.
            if geteuid() != 0 { try Capabilities.handOn(keep.bounding) }
            // Also where there was nothing to drop: no setuid program or file capability this
            // agent might exec can raise it afterwards.
            try check("prctl(PR_SET_NO_NEW_PRIVS)", hl_set_no_new_privs())
            let held = try Capabilities.current()
            if held.permitted & ~keep.permitted != 0 || held.effective & ~keep.effective != 0 {
                return "still holds capabilities \(String(held.permitted, radix: 16)) after dropping privileges"
            }
        } catch {
            return error.description
        }
        return nil
    }

}

/// A set-up call that returns -1 with errno on failure, as a thrown error naming it. None of
/// them blocks, so none is interrupted: no retry.
private func check(_ call: @autoclosure () -> String, _ result: Int32) throws(SystemError) {
    try Syscall.nothingOrErrno(call(), retryingOnInterrupt: false) { result }
}

/// Linux capability numbers (<linux/capability.h>) that an agent may keep.
package enum Capability: Int32, CaseIterable {
    case dacReadSearch = 2
    case setpcap = 8
    case netBindService = 10
    case netAdmin = 12
    case sysPtrace = 19

    package var mask: UInt64 { 1 << UInt64(rawValue) }
}

/// The capabilities an agent keeps once its namespace is set up, by what it is for; as
/// masks, bit n for capability n. Anything not named here is gone before its first socket.
package struct AgentPrivileges: Equatable {
    /// What the agent itself still uses.
    package var effective: UInt64 = 0
    /// `effective`, and what it only hands on to a tool it execs.
    package var permitted: UInt64 = 0
    /// The most that any program it execs may have.
    package var bounding: UInt64 = 0

    /// A socket agent keeps nothing: it binds ports from 10000 up (no CAP_NET_BIND_SERVICE),
    /// its reuse, V6ONLY and linger options need none, and SO_BINDTODEVICE on a socket not yet
    /// bound to a device is unprivileged since Linux 5.7. Entering its namespace came first.
    package init(netns: String?, hostClient: Bool, bindService: Bool = false) {
        if bindService {
            // A socket agent of a privileged-port scenario binds a port below
            // ip_unprivileged_port_start; it uses nothing else.
            effective |= Capability.netBindService.mask
            permitted |= Capability.netBindService.mask
        }
        if netns == "new" {
            // A client that made its namespace execs `ip -batch` there, to bring up lo and the
            // veth: CAP_NET_ADMIN in that child. As uid 0 under NO_NEW_PRIVS, execve gives the
            // tool the bounding set intersected with this agent's permitted set, so it stays in
            // both; the agent itself never uses it, so it is not effective here.
            permitted |= Capability.netAdmin.mask
            bounding |= Capability.netAdmin.mask
        }
        if hostClient {
            // The audit finds each socket's processes through /proc/PID/fd of every process:
            // listing another user's needs CAP_DAC_READ_SEARCH, and reading its links passes a
            // ptrace access check that a process of another uid, or one with capabilities this
            // agent lacks (the runner), fails without CAP_SYS_PTRACE. Writing the ICMP rate
            // sysctls of the lab's own namespace needs none: they are root's files, mode 0644.
            let audit = Capability.dacReadSearch.mask | Capability.sysPtrace.mask
            effective |= audit
            permitted |= audit
        }
    }
}

/// Raw capget/capset and the bounding set (no libcap), each call checked.
package enum Capabilities {
    package static func current() throws(SystemError) -> (effective: UInt64, permitted: UInt64) {
        var effective: UInt64 = 0, permitted: UInt64 = 0, inheritable: UInt64 = 0
        try check("capget", hl_capget(&effective, &permitted, &inheritable))
        return (effective, permitted)
    }

    /// Removes from the bounding set every capability outside `keep`, so that no program the
    /// agent execs, as uid 0 or through file capabilities, can come back with one. Dropping
    /// takes CAP_SETPCAP; a process without it (not root) has nothing the bounding set could
    /// hand out, since under NO_NEW_PRIVS an exec never gets more than the permitted set.
    package static func limitBoundingSet(to keep: UInt64) throws(SystemError) {
        guard try current().permitted & Capability.setpcap.mask != 0 else { return }
        var capability: Int32 = 0
        while true {
            let held = hl_capbset_read(capability)
            // The kernel answers EINVAL past its last capability.
            if held == -1 && errno == EINVAL && capability > 0 { return }
            try check("prctl(PR_CAPBSET_READ, \(capability))", held)
            if held == 1 && (capability >= 64 || keep & (1 << UInt64(capability)) == 0) {
                try check("prctl(PR_CAPBSET_DROP, \(capability))", hl_capbset_drop(capability))
            }
            capability += 1
        }
    }

    /// Puts those of `capabilities` still permitted into the inheritable and ambient sets,
    /// so that a program exec'd by a uid other than 0 gets them.
    package static func handOn(_ capabilities: UInt64) throws(SystemError) {
        var effective: UInt64 = 0, permitted: UInt64 = 0, inheritable: UInt64 = 0
        try check("capget", hl_capget(&effective, &permitted, &inheritable))
        let given = capabilities & permitted
        guard given != 0 else { return }
        try check("capset", hl_capset(effective, permitted, inheritable | given))
        for capability in Capability.allCases where given & capability.mask != 0 {
            try check("prctl(PR_CAP_AMBIENT_RAISE, \(capability.rawValue))", hl_cap_ambient_raise(capability.rawValue))
        }
    }

    /// Keeps only the given capabilities of those held, and none inheritable. capset can
    /// only lower a set, so what is not held now stays absent.
    package static func limit(effective: UInt64, permitted: UInt64) throws(SystemError) {
        let held = try current().permitted
        try check("capset", hl_capset(effective & permitted & held, permitted & held, 0))
    }
}
