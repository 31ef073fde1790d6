//! Which branch a node commits to (DESIGN, "Scale"): the repository's
//! default branch, a branch named in the settings, or a branch of its own
//! when the name holds `{node}` (`usage/{node}`).

use crate::error::{Kind, fail};
use anyhow::Result;

/// The placeholder replaced by the node name.
pub const NODE_PLACEHOLDER: &str = "{node}";

/// The branch setting with `{node}` replaced, checked as a git branch name.
/// `None` when no branch is set (the repository's default branch).
pub fn resolve(setting: Option<&str>, node: &str) -> Result<Option<String>> {
    let Some(setting) = setting.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let branch = setting.replace(NODE_PLACEHOLDER, node);
    check_name(&branch).map_err(|why| {
        fail(
            Kind::Config,
            format!(
                "branch {:?} {why}; set --branch / HERO_USAGE_BRANCH to a valid git branch name such as usage/{NODE_PLACEHOLDER}",
                branch.escape_debug().to_string()
            ),
        )
    })?;
    Ok(Some(branch))
}

/// True when the setting gives every node a branch of its own.
pub fn is_per_node(setting: Option<&str>) -> bool {
    setting.is_some_and(|s| s.contains(NODE_PLACEHOLDER))
}

/// git's rules for a branch name (`git check-ref-format --branch`), kept
/// strict: nothing that could climb out of `refs/heads/` or confuse a shell.
pub fn check_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() || name.len() > 255 {
        return Err("must be 1 to 255 characters");
    }
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return Err("holds a control character, white space or one of ~ ^ : ? * [ \\");
    }
    if name.contains("..") || name.contains("//") || name.contains("@{") || name == "@" {
        return Err("holds `..`, `//` or `@{`, or is `@`");
    }
    if name.starts_with(['/', '-', '.']) || name.ends_with(['/', '.']) {
        return Err("starts with / - or ., or ends with / or .");
    }
    if name
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return Err("has a part that starts with . or ends with .lock");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_fills_the_placeholder() {
        assert_eq!(resolve(None, "n1").unwrap(), None);
        assert_eq!(resolve(Some(""), "n1").unwrap(), None);
        assert_eq!(
            resolve(Some("usage/{node}"), "n-1.a").unwrap().as_deref(),
            Some("usage/n-1.a")
        );
        assert!(is_per_node(Some("usage/{node}")));
        assert!(!is_per_node(Some("main")));
    }

    #[test]
    fn bad_names_are_configuration_errors() {
        for bad in [
            "../main", "a..b", "a b", "a\nb", "a\u{1b}b", "/main", "main/", "a//b", "x.lock", "-x",
            ".x", "a/.b", "a~1", "a:b", "a@{1}", "@",
        ] {
            let e = resolve(Some(bad), "n1").unwrap_err();
            assert_eq!(crate::error::kind_of(&e), Kind::Config, "{bad}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        for good in ["main", "usage/n1", "billing-2026", "a.b/c_d"] {
            assert!(resolve(Some(good), "n1").is_ok(), "{good}");
        }
    }
}
