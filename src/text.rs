//! Text as it is shown to an operator: messages on one line, control
//! characters and non-UTF-8 names escaped, words quoted for a shell. A leaf:
//! it imports nothing of ours.

/// A message on one line (some parsers' messages span several), so that
/// every stderr line starts with `<binary>:` and scripts can grep it; any
/// other control character (an ESC in a file name) is escaped, never sent
/// raw to a terminal.
pub(crate) fn one_line(message: &str) -> String {
    escape_controls(&message.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `s` with every control character written as `\n`, `\t`, `\u{1b}`...
/// (Rust's escapes), everything else as it is.
pub(crate) fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A file name as it can be shown in a message: UTF-8 as it is with control
/// characters escaped, any byte that is not UTF-8 as `\xNN`.
pub(crate) fn escape_name(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in name.as_bytes().utf8_chunks() {
        out.push_str(&escape_controls(chunk.valid()));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A word that needs no quoting anywhere (shell, systemd, cron).
pub(crate) fn is_plain(w: &str) -> bool {
    !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@".contains(c))
}

/// One word quoted for a POSIX shell.
pub(crate) fn shell_word(w: &str) -> String {
    if is_plain(w) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn names_and_messages_print_without_raw_control_bytes() {
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9\n\x1b[31m.toml");
        assert_eq!(escape_name(name), "caf\\xe9\\n\\u{1b}[31m.toml");
        assert_eq!(one_line("a\nb \x1b[2J c"), "a b \\u{1b}[2J c");
        assert_eq!(escape_controls("plain é"), "plain é");
    }
}
