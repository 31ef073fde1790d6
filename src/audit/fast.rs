//! A reader for files already in canonical form, the common case by far:
//! it reads the fixed record shape line by line, many times faster than a
//! TOML parser. It is only a shortcut: its result counts only when
//! rendering it canonically gives back the very same bytes (then the
//! general parser, `otoml::parse_batch`, would read the same records);
//! anything else goes to the general parser.

use crate::otoml::PREFIX;
use crate::record::{UsageRecord, UtcSecond};

/// The records of a file in canonical shape, or `None` to take the general path.
pub fn parse_canonical(text: &str) -> Option<Vec<UsageRecord>> {
    let mut rest = text.strip_prefix(PREFIX)?;
    let mut out = Vec::new();
    loop {
        rest = rest.strip_prefix("[[records]]\n")?;
        let (amount, r) = line(rest, "amount_cents = ")?;
        let (description, r) = string_line(r, "description = ")?;
        let (idempotency_key, r) = string_line(r, "idempotency_key = ")?;
        let (node_id, r) = string_line(r, "node_id = ")?;
        let (occurred_at, r) = string_line(r, "occurred_at = ")?;
        let (resource_kind, r) = string_line(r, "resource_kind = ")?;
        let (user_sid, r) = string_line(r, "user_sid = ")?;
        out.push(UsageRecord {
            amount_cents: digits(amount)?,
            description,
            idempotency_key,
            node_id,
            occurred_at: UtcSecond::parse_exact(&occurred_at)?,
            resource_kind,
            user_sid,
        });
        if r.is_empty() {
            return Some(out);
        }
        rest = r.strip_prefix('\n')?;
    }
}

/// `<key>value\n`: the value and what follows the line.
fn line<'a>(text: &'a str, key: &str) -> Option<(&'a str, &'a str)> {
    let (l, rest) = text.strip_prefix(key)?.split_once('\n')?;
    Some((l, rest))
}

fn digits(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn string_line<'a>(text: &'a str, key: &str) -> Option<(String, &'a str)> {
    let (value, rest) = line(text, key)?;
    Some((unquote(value)?, rest))
}

/// A basic string with the escapes the canonical writer uses.
fn unquote(v: &str) -> Option<String> {
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains(['\\', '"']) {
        return Some(inner.to_string());
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return None,
            '\\' => match chars.next()? {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    if hex.len() != 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return None;
                    }
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otoml::{parse_batch, render_batch};

    fn rec(key: &str, description: &str) -> UsageRecord {
        UsageRecord {
            amount_cents: 250,
            description: description.into(),
            idempotency_key: key.into(),
            node_id: "n1".into(),
            occurred_at: UtcSecond::parse("2026-11-26 16:00:00").unwrap(),
            resource_kind: "cpu".into(),
            user_sid: "0a1b".into(),
        }
    }

    #[test]
    fn reads_what_the_writer_writes_as_the_general_parser_does() {
        let records = vec![rec("a", "quote \" and backslash \\ and é"), rec("b", "")];
        let text = render_batch(&records);
        let fast = parse_canonical(&text).unwrap();
        assert_eq!(fast, parse_batch(&text).unwrap());
        assert_eq!(render_batch(&fast), text);
    }

    #[test]
    fn unquotes_every_escape_the_writer_uses() {
        assert_eq!(
            unquote(r#""q\" b\\ t\t r\r u\u0007 é""#).as_deref(),
            Some("q\" b\\ t\t r\r u\u{7} é")
        );
        assert_eq!(unquote(r#""bad\n""#), None);
        assert_eq!(unquote(r#""bad\u00""#), None);
    }

    #[test]
    fn anything_else_takes_the_general_path() {
        let text = render_batch(&[rec("a", "x")]);
        for other in [
            text.replace("O:\n", ""),
            text.replace(" = ", "="),
            text.replace("250", "+250"),
            text.replace("\"x\"", "'x'"),
            text.replace("\"x\"", "\"\\x\""),
            format!("{text}# comment\n"),
        ] {
            assert!(parse_canonical(&other).is_none(), "{other}");
        }
        // Shape right but not canonical (leading zero): the render check catches it.
        let zero = text.replace("250", "0250");
        assert_ne!(render_batch(&parse_canonical(&zero).unwrap()), zero);
    }
}
