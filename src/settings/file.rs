//! The config file: TOML whose keys are the setting names in snake_case.
//! Unknown keys are an error so that typos are caught; relative paths name
//! files beside the config file.

use crate::error::{Kind, fail};
use anyhow::Result;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Largest config file read (the example, comments and all, is 3 KiB).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The config file's keys.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    pub spool: Option<PathBuf>,
    pub node: Option<String>,
    pub forgejo_url: Option<String>,
    pub token_file: Option<PathBuf>,
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub admin_secret_file: Option<PathBuf>,
    pub listen: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub insecure_http: Option<bool>,
    pub signing_key_file: Option<PathBuf>,
}

impl ConfigFile {
    /// The path settings, by key: the ones resolved against the file's
    /// directory and refused when empty.
    fn paths_mut(&mut self) -> [(&'static str, &mut Option<PathBuf>); 5] {
        [
            ("spool", &mut self.spool),
            ("token_file", &mut self.token_file),
            ("admin_secret_file", &mut self.admin_secret_file),
            ("ca_file", &mut self.ca_file),
            ("signing_key_file", &mut self.signing_key_file),
        ]
    }

    /// Load the file at `path` (the one [`ConfigFile::locate`] found).
    pub(crate) fn load(path: &Path) -> Result<ConfigFile> {
        let text = read_small_text(path, MAX_CONFIG_BYTES).map_err(|why| {
            fail(
                Kind::Config,
                format!("cannot read config file {}: {why}", path.display()),
            )
        })?;
        ConfigFile::parse(&text, path)
    }

    /// The settings in `text`, the file at `path` (which names it in errors
    /// and against whose directory relative paths are resolved).
    pub(crate) fn parse(text: &str, path: &Path) -> Result<ConfigFile> {
        let mut file: ConfigFile = toml::from_str(text).map_err(|e| {
            fail(
                Kind::Config,
                format!("config file {}: {}", path.display(), e.message()),
            )
        })?;
        file.refuse_empty_paths(path)?;
        file.expand_home(path)?;
        file.resolve_relative(path.parent().unwrap_or(Path::new("/")));
        Ok(file)
    }

    /// The path settings as they are now.
    pub(crate) fn paths(&self) -> [(&'static str, Option<&Path>); 5] {
        [
            ("spool", self.spool.as_deref()),
            ("token_file", self.token_file.as_deref()),
            ("admin_secret_file", self.admin_secret_file.as_deref()),
            ("ca_file", self.ca_file.as_deref()),
            ("signing_key_file", self.signing_key_file.as_deref()),
        ]
    }

    /// An empty path in the file is a mistake, never "unset" (a line that
    /// is not wanted is removed or commented): `spool = ""` would otherwise
    /// be read as a spool in no directory at all.
    fn refuse_empty_paths(&mut self, path: &Path) -> Result<()> {
        match self
            .paths_mut()
            .into_iter()
            .find(|(_, p)| p.as_ref().is_some_and(|p| p.as_os_str().is_empty()))
        {
            Some((key, _)) => Err(fail(
                Kind::Config,
                format!(
                    "config file {}: {key} is empty; give a path, or remove the line to use the default",
                    path.display()
                ),
            )),
            None => Ok(()),
        }
    }

    /// A leading `~/` means the home directory, as in a shell (a scheduler
    /// runs no shell to expand it). `~user/` is not expanded: refused with
    /// the fix, never taken as a folder named `~user`.
    fn expand_home(&mut self, path: &Path) -> Result<()> {
        let home = home();
        for (key, p) in self.paths_mut() {
            let Some(p) = p else { continue };
            let Some(text) = p.to_str().filter(|t| t.starts_with('~')) else {
                continue;
            };
            let expanded = match (text.strip_prefix("~/"), &home) {
                (Some(rest), Some(h)) => h.join(rest),
                _ => {
                    return Err(fail(
                        Kind::Config,
                        format!(
                            "config file {}: {key} = {text:?}: only a leading ~/ is expanded \
                             (to $HOME{}); write the full path",
                            path.display(),
                            if home.is_none() {
                                ", which is not set"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
            };
            *p = expanded;
        }
        Ok(())
    }

    /// Paths in a config file name files beside it, not in whatever
    /// directory a scheduler happens to start in: resolve relative ones
    /// against the config file's own directory.
    fn resolve_relative(&mut self, dir: &Path) {
        for (_, p) in self.paths_mut() {
            if let Some(p) = p
                && p.is_relative()
            {
                *p = dir.join(&*p);
            }
        }
    }

    /// The config file in force: the one named, or the default path when it
    /// exists, or none.
    pub(crate) fn locate(named: Option<&Path>) -> Option<PathBuf> {
        match named {
            // Absolute, so that its directory (which relative paths in it
            // are resolved against) and a printed schedule do not depend on
            // the current directory.
            Some(p) => Some(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())),
            None => default_path().filter(|p| p.exists()),
        }
    }
}

/// `$HOME/hero/cfg/hero_usage.toml`.
fn default_path() -> Option<PathBuf> {
    home().map(|h| h.join("hero/cfg/hero_usage.toml"))
}

/// `$HOME`, when set and not empty.
pub(crate) fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

pub(crate) use crate::fsx::read_small_text;
