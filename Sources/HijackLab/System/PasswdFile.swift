/// /etc/passwd read as a file: no NSS, no nscd, no directory server. The lab's agents and the
/// lab's own audit look accounts up here, since no name lookup of the lab may leave it.
package enum PasswdFile {
    /// One account: `name:password:uid:gid:…`.
    package struct Account: Equatable, Sendable {
        package var name: String
        package var uid: UInt32
        package var gid: UInt32

        package init(name: String, uid: UInt32, gid: UInt32) {
            self.name = name
            self.uid = uid
            self.gid = gid
        }
    }

    package static let path = "/etc/passwd"

    /// Every well-formed line's account, in the file's order; malformed lines are skipped.
    package static func accounts(_ text: String) -> [Account] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 4, !fields[0].isEmpty, let uid = UInt32(fields[2]), let gid = UInt32(fields[3]) else { return nil }
            return Account(name: String(fields[0]), uid: uid, gid: gid)
        }
    }

    /// The first account of that name, as getpwnam would find it in the file.
    package static func account(named name: String, in text: String) -> Account? {
        accounts(text).first { $0.name == name }
    }
}
