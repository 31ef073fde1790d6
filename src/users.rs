//! Who this process runs as, and the names of users and groups, from the
//! system's databases (no libc call; systemd and messages take names).

use std::os::unix::fs::MetadataExt;

/// The user and group ids of this process (the owner of `/proc/self`).
pub fn current_ids() -> (u32, u32) {
    std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((u32::MAX, u32::MAX))
}

/// The name with id `id` in a `name:x:id:...` database file
/// (`/etc/passwd`, `/etc/group`).
pub fn name_of(db: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(db).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == id).then(|| name.to_string())
    })
}

/// A user's name, or its number when the database does not know it.
pub fn user_name(uid: u32) -> String {
    name_of("/etc/passwd", uid).unwrap_or_else(|| uid.to_string())
}
