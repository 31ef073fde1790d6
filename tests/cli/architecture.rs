//! The arrows between the library's modules point down (faces → use cases
//! → spool, forge → model → ground): this test reads every `crate::` and
//! `super::` path of every module under `src/` (`use` lines and paths in
//! code alike; comments, strings and `#[cfg(test)]` modules aside) and
//! fails on an arrow the layout forbids, naming the file, the line and the
//! import.
//!
//! A module of the one test binary rather than a `tests/architecture.rs` of
//! its own: it needs nothing of the others, and one more test binary is one
//! more link on every `cargo test`.
//!
//! `HERO_USAGE_ARCH_SRC=DIR` checks another tree's `src/` (an old commit's,
//! `git archive COMMIT src | tar -x -C DIR`) instead of this one's.

use crate::support::repo_root;
use std::path::{Path, PathBuf};

/// The forbidden arrows: from a module of the first group to one of the
/// second, with the rule's name. `*` is every module of ours; `library` is
/// every module but the faces (`cmd`, `cli`).
const FORBIDDEN: &[(&[&str], &[&str], &str)] = &[
    (GROUND, &["*"], "ground imports nothing of ours"),
    (
        MODEL,
        &["spool", "forgejo"],
        "the model knows no spool and no forge",
    ),
    (&["spool"], &["forgejo"], "the spool knows no forge"),
    (
        &["forgejo"],
        &["spool", "settings", "config"],
        "the forge client knows no spool and no settings",
    ),
    (&["library"], FACES, "the library never imports the faces"),
    (
        &["status"],
        &["push", "forgejo"],
        "status reads the spool, never the push or the forge",
    ),
    (
        &["audit"],
        &["spool"],
        "the audit reads the repository, never a spool",
    ),
];

// `config` is the settings' name before `settings/` (c5c63dd).

/// Modules that import nothing of ours.
const GROUND: &[&str] = &["error", "text", "secret", "failpoint", "fsx", "users"];
/// Pure data and its rules.
const MODEL: &[&str] = &["record", "otoml", "layout", "trailer"];
/// The binaries' faces: command line, printing, exit codes.
const FACES: &[&str] = &["cmd", "cli"];

/// Arrows that break a rule today, each named with the work that removes
/// it: the list shrinks, never grows.
const ALLOWED: &[(&str, &str)] = &[];

/// One `crate::` (or `super::`-resolved) path in a module.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    /// The file, relative to the source root.
    file: String,
    line: usize,
    /// The importing module's top-level module (`push` for `push/drain.rs`).
    from: String,
    /// The imported top-level module.
    to: String,
    /// The source line, for the message.
    text: String,
}

#[test]
fn the_arrows_point_down() {
    let root = match std::env::var_os("HERO_USAGE_ARCH_SRC") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join("src"),
    };
    let imports = imports_under(&root);
    assert!(
        imports.iter().any(|i| i.from == "push" && i.to == "spool"),
        "no imports read from {}: the reader is broken",
        root.display()
    );
    let broken: Vec<String> = imports
        .iter()
        .filter_map(|i| Some((i, forbidden(&i.from, &i.to)?)))
        .filter(|(i, _)| !ALLOWED.contains(&(i.from.as_str(), i.to.as_str())))
        .map(|(i, why)| {
            format!(
                "{}:{}: {} ({} → {}: {why})",
                i.file, i.line, i.text, i.from, i.to
            )
        })
        .collect();
    assert!(
        broken.is_empty(),
        "{} forbidden arrow(s) in {}:\n{}",
        broken.len(),
        root.display(),
        broken.join("\n")
    );
    let stale: Vec<_> = ALLOWED
        .iter()
        .filter(|(from, to)| !imports.iter().any(|i| &i.from == from && &i.to == to))
        .collect();
    assert!(
        stale.is_empty(),
        "allowed arrows no longer there: {stale:?}"
    );
}

#[test]
fn the_modules_form_no_circle() {
    let root = match std::env::var_os("HERO_USAGE_ARCH_SRC") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join("src"),
    };
    let imports = imports_under(&root);
    if let Some(circle) = circle(&imports) {
        panic!(
            "a circle between modules in {}:\n{}",
            root.display(),
            circle.join("\n")
        );
    }
}

/// A circle of top-level modules, one import per arrow (`file:line: text`),
/// if there is one.
fn circle(imports: &[Import]) -> Option<Vec<String>> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut edges: BTreeMap<&str, BTreeMap<&str, &Import>> = BTreeMap::new();
    for i in imports {
        edges.entry(&i.from).or_default().entry(&i.to).or_insert(i);
    }
    // Depth first; a module met again on the current path closes a circle.
    fn visit<'a>(
        m: &'a str,
        edges: &BTreeMap<&'a str, BTreeMap<&'a str, &'a Import>>,
        path: &mut Vec<&'a Import>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if done.contains(m) {
            return None;
        }
        for (to, i) in edges.get(m).into_iter().flatten() {
            if let Some(k) = path.iter().position(|p| p.from == *to) {
                let mut arrows: Vec<&Import> = path[k..].to_vec();
                arrows.push(i);
                return Some(
                    arrows
                        .iter()
                        .map(|a| {
                            format!("{} → {}: {}:{}: {}", a.from, a.to, a.file, a.line, a.text)
                        })
                        .collect(),
                );
            }
            path.push(i);
            let found = visit(to, edges, path, done);
            path.pop();
            if found.is_some() {
                return found;
            }
        }
        done.insert(m);
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|m| visit(m, &edges, &mut Vec::new(), &mut done))
}

#[test]
fn the_reader_finds_every_kind_of_path_and_the_rules_refuse_them() {
    let found = |file: &str, code: &str| -> Vec<(String, String)> {
        imports_of(file, code)
            .into_iter()
            .map(|i| (i.from, i.to))
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        found("error.rs", "use crate::cli::err_line;"),
        [pair("error", "cli")]
    );
    assert_eq!(
        found(
            "status.rs",
            "use crate::{push::{self, Outcome}, spool::Spool};"
        ),
        [pair("status", "push"), pair("status", "spool")]
    );
    // Paths in code count; paths in comments, strings and test modules do not.
    assert_eq!(
        found(
            "settings/file.rs",
            "// crate::spool\nlet s = \"crate::spool\";\nlet c = '\"';\nlet w = crate::schedule::shell_word(x);\n\
             #[cfg(test)]\nmod tests {\n    use crate::push::run;\n}\n"
        ),
        [pair("settings", "schedule")]
    );
    // `super::` from a top-level module's file is the crate root.
    assert_eq!(
        found("status.rs", "use super::push::run;"),
        [pair("status", "push")]
    );
    assert_eq!(found("push/drain/send.rs", "use super::super::Log;"), []);
    assert_eq!(
        found("push/drain/send.rs", "use super::super::super::forgejo::X;"),
        [pair("push", "forgejo")]
    );
    for (from, to) in [
        ("error", "cli"),
        ("record", "spool"),
        ("spool", "forgejo"),
        ("forgejo", "settings"),
        ("shim", "cmd"),
        ("status", "push"),
        ("audit", "spool"),
    ] {
        assert!(forbidden(from, to).is_some(), "{from} → {to}");
    }
    for (from, to) in [
        ("push", "spool"),
        ("cmd", "cli"),
        ("record", "error"),
        ("error", "error"),
    ] {
        assert!(forbidden(from, to).is_none(), "{from} → {to}");
    }
    let mut graph = imports_of("a.rs", "use crate::b::X;");
    graph.extend(imports_of("b/mod.rs", "use crate::c::Y;"));
    assert_eq!(circle(&graph), None);
    graph.extend(imports_of("c.rs", "fn f() { crate::a::g() }"));
    let found = circle(&graph).expect("a → b → c → a");
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[2].starts_with("c → a: c.rs:1:"), "{found:?}");
}

/// Why the arrow `from` → `to` is forbidden, if it is.
fn forbidden(from: &str, to: &str) -> Option<&'static str> {
    if from == to {
        return None;
    }
    let is = |group: &[&str], m: &str| {
        group
            .iter()
            .any(|g| *g == m || *g == "*" || (*g == "library" && !FACES.contains(&m)))
    };
    FORBIDDEN
        .iter()
        .find(|(froms, tos, _)| is(froms, from) && is(tos, to))
        .map(|(_, _, why)| *why)
}

/// Every import of every `.rs` file below `root` (the crate root and the
/// binaries aside: `lib.rs` declares the modules, `bin/` is other crates).
fn imports_under(root: &Path) -> Vec<Import> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(root).ok()?.to_str()?.to_string();
            if rel == "lib.rs" || rel.starts_with("bin/") {
                return None;
            }
            let code = std::fs::read_to_string(p).expect("read a source file");
            Some(imports_of(&rel, &code))
        })
        .flatten()
        .collect()
}

/// The module path of a file: `push/drain/send.rs` is `push::drain::send`,
/// `spool/mod.rs` is `spool`.
fn module_path(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The imports of one file's code.
fn imports_of(file: &str, source: &str) -> Vec<Import> {
    let module = module_path(file);
    let from = module[0].clone();
    let code = without_tests(&code_only(source));
    let lines: Vec<&str> = source.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some((at, len, base)) = next_path(&code, i, &module) {
        i = at + len;
        let line = code[..at].matches('\n').count() + 1;
        let targets = match base {
            // Below the crate root: the next name (or each name of a group)
            // is a top-level module.
            Some(0) => names_at(&code[i..]),
            // Inside a top-level module: that module itself.
            Some(_) => vec![from.clone()],
            None => continue,
        };
        for to in targets {
            if to != from {
                out.push(Import {
                    file: file.to_string(),
                    line,
                    from: from.clone(),
                    to,
                    text: lines.get(line - 1).unwrap_or(&"").trim().to_string(),
                });
            }
        }
    }
    out
}

/// The next `crate::` or `super::…` path from byte `i`: where it starts, how
/// long its prefix is, and the depth of the module it names (0: the crate
/// root; `None`: not a path, e.g. `my_crate::`).
fn next_path(code: &str, mut i: usize, module: &[String]) -> Option<(usize, usize, Option<usize>)> {
    let bytes = code.as_bytes();
    loop {
        let at = i + code[i..].find(['c', 's'])?;
        let word_start = at == 0 || !is_ident(bytes[at - 1]);
        if word_start && code[at..].starts_with("crate::") {
            return Some((at, "crate::".len(), Some(0)));
        }
        if word_start && code[at..].starts_with("super::") {
            let mut len = 0;
            let mut ups = 0;
            while code[at + len..].starts_with("super::") {
                len += "super::".len();
                ups += 1;
            }
            // A file's own module is `module`; `super` is its parent.
            let depth = module.len().saturating_sub(ups);
            return Some((at, len, Some(depth)));
        }
        i = at + 1;
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The module names a path continues with: `spool::Spool` is `spool`,
/// `{push::{self, X}, spool::Spool}` is `push` and `spool`.
fn names_at(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut names = Vec::new();
        let mut depth = 0;
        let mut start = true;
        for (k, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => start = true,
                c if start && depth == 0 && (c.is_alphabetic() || c == '_') => {
                    names.extend(names_at(&group[k..]));
                    start = false;
                }
                _ => {}
            }
        }
        return names;
    }
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty() || name == "self" {
        return vec![];
    }
    vec![name]
}

/// `source` with comments, string and char literals blanked (newlines
/// kept, so that line numbers still hold).
fn code_only(source: &str) -> String {
    let s: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < s.len() && s[i] != '\n' {
                blank(&mut out, s[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < s.len() {
                if s[i] == '/' && s.get(i + 1) == Some(&'*') {
                    depth += 1;
                    blank(&mut out, s[i]);
                    i += 1;
                } else if s[i] == '*' && s.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    blank(&mut out, s[i]);
                    i += 1;
                    if depth == 0 {
                        blank(&mut out, s[i]);
                        i += 1;
                        break;
                    }
                }
                blank(&mut out, s[i]);
                i += 1;
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !is_ident(s[i - 1] as u8))
        {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while s.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if s.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= s.len() {
                    break;
                }
                if s[j] == '"' && (0..hashes).all(|h| s.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &s[i..j.min(s.len())] {
                blank(&mut out, ch);
            }
            i = j;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < s.len() && s[i] != '"' {
                if s[i] == '\\' {
                    blank(&mut out, s[i]);
                    i += 1;
                }
                if i < s.len() {
                    blank(&mut out, s[i]);
                    i += 1;
                }
            }
            if i < s.len() {
                blank(&mut out, s[i]);
                i += 1;
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '\'', '"'), not a lifetime ('a).
            let len = if next == Some('\\') {
                (i + 2..s.len().min(i + 12))
                    .find(|&k| s[k] == '\'')
                    .map(|k| k + 1 - i)
            } else if s.get(i + 2) == Some(&'\'') {
                Some(3)
            } else {
                None
            };
            match len {
                Some(n) => {
                    for &ch in &s[i..i + n] {
                        blank(&mut out, ch);
                    }
                    i += n;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `code` with every `#[cfg(test)]` module blanked: tests may use what the
/// module itself must not.
fn without_tests(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(k) = out[from..].find("#[cfg(test)]") {
        let at = from + k;
        let after = at + "#[cfg(test)]".len();
        let rest = out[after..].trim_start();
        if !(rest.starts_with("mod ")
            || rest.starts_with("pub mod ")
            || rest.starts_with("pub(crate) mod "))
        {
            from = after;
            continue;
        }
        let Some(open) = out[after..].find(['{', ';']).map(|o| after + o) else {
            break;
        };
        let mut end = open + 1;
        if out.as_bytes()[open] == b'{' {
            let mut depth = 0;
            for (k, b) in out[open..].bytes().enumerate() {
                match b {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + k + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
        let blanked: String = out[at..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(at..end, &blanked);
        from = at + blanked.len();
    }
    out
}
