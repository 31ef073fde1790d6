//! Which branch a node commits to (man 7 hero_usage, SCALING): the repository's
//! default branch, a branch named in the settings, or a branch of its own
//! when the name holds `{node}` (`usage/{node}`).

use crate::error::{Kind, fail};
use crate::spool::Spool;
use anyhow::Result;

/// The placeholder replaced by the node name.
pub const NODE_PLACEHOLDER: &str = "{node}";

/// `state/branches`: the branches this spool's pushes committed to, one a
/// line (man 5 hero_usage_spool).
const BRANCHES_FILE: &str = "branches";

/// The branches this spool's pushes committed to (`state/branches`). A
/// commit whose reply was lost can only be found on its own branch: after
/// the branch setting (or the default branch) changed, the records still
/// pending may be on one of these, and must not be committed to the new
/// branch again (the aggregator reads both).
pub fn remembered(spool: &Spool) -> Result<Vec<String>> {
    let path = spool.root().join("state").join(BRANCHES_FILE);
    let text = spool
        .read_state(BRANCHES_FILE)
        .map_err(|e| {
            fail(
                Kind::CantCreate,
                format!("cannot read {}: {e}", path.display()),
            )
        })?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Remember exactly `branches`, durably (before the first commit to one
/// not remembered yet; only the current one once a run left nothing
/// pending).
pub fn remember(spool: &Spool, branches: &[&str]) -> Result<()> {
    let text: String = branches.iter().map(|b| format!("{b}\n")).collect();
    spool.write_state(BRANCHES_FILE, text.as_bytes())?;
    crate::fsx::sync_dir(&spool.root().join("state")).map_err(|e| {
        fail(
            Kind::CantCreate,
            format!("cannot sync the spool's state/: {e}"),
        )
    })
}

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
                "branch `{}` {why}; set --branch / HERO_USAGE_BRANCH to a valid git branch name such as usage/{NODE_PLACEHOLDER}",
                crate::text::escape_controls(&branch)
            ),
        )
    })?;
    Ok(Some(branch))
}

/// True when the setting gives every node a branch of its own.
pub fn is_per_node(setting: Option<&str>) -> bool {
    setting.is_some_and(|s| s.contains(NODE_PLACEHOLDER))
}

/// git's rules for a branch name (the settings' own check, which the
/// resolved name must pass too), and no leading `-` (an option to git).
fn check_name(name: &str) -> std::result::Result<(), String> {
    crate::settings::check_branch(name)?;
    if name.starts_with('-') {
        return Err("starts with `-`".into());
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
