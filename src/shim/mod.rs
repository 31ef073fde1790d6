//! `hero_usage_shim`: a minimal HTTP shim on loopback that turns requests
//! into the library calls the binaries make (DESIGN.md, "HTTP shim"). The
//! server itself is [`http`]; the admin secret is [`auth`]; the routes are
//! [`routes`]. See `man 1 hero_usage_shim`.

pub mod auth;
pub mod http;
pub mod routes;

use crate::config::{Common, DEFAULT_LISTEN, ForgeArgs, SpoolArgs};
use crate::console::err_line;
use crate::error::{Kind, fail};
use crate::spool::Spool;
use anyhow::Result;
use auth::SecretSource;
use clap::Args;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

pub const BINARY: &str = "hero_usage_shim";

/// The shim's own flags.
#[derive(Args, Debug, Clone, Default)]
pub struct ShimArgs {
    /// Address to listen on, HOST:PORT (port 0 picks a free port) [default: 127.0.0.1:9920]
    #[arg(long, value_name = "ADDR", env = "HERO_USAGE_LISTEN")]
    pub listen: Option<String>,
    /// Allow a listen address that is not loopback
    #[arg(long)]
    pub allow_remote: bool,
    /// File holding the admin secret (or set HERO_ONBOARDING_ADMIN_SECRET_FILE / HERO_ONBOARDING_ADMIN_SECRET)
    #[arg(long, value_name = "FILE")]
    pub admin_secret_file: Option<PathBuf>,
}

/// The address to bind: `listen` resolved; every address it names must be
/// loopback unless `allow_remote`.
pub fn listen_addr(listen: &str, allow_remote: bool) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| {
            fail(
                Kind::Config,
                format!("listen address `{listen}` is not HOST:PORT ({e}); e.g. 127.0.0.1:9920"),
            )
        })?
        .collect();
    let Some(first) = addrs.first().copied() else {
        return Err(fail(
            Kind::Config,
            format!("listen address `{listen}` names no address"),
        ));
    };
    if !allow_remote && addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(fail(
            Kind::Config,
            format!(
                "listen address `{listen}` is not loopback; the shim binds loopback only \
                 unless --allow-remote is given"
            ),
        ));
    }
    Ok(first)
}

/// Run the shim until SIGTERM or SIGINT; returns the exit code (0).
pub fn run(spool_args: &SpoolArgs, forge: &ForgeArgs, args: &ShimArgs) -> Result<i32> {
    let common = Common::resolve(spool_args)?;
    let listen = crate::config::given(&args.listen)
        .or_else(|| common.file.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let addr = listen_addr(&listen, args.allow_remote)?;
    let secret = SecretSource::resolve(args.admin_secret_file.as_deref(), &common.file)?;
    if let SecretSource::File(p) = &secret
        && let Some(w) = crate::config::exposed_secret_warning(p, "admin secret")
    {
        let _ = err_line(&format!("{BINARY}: warning: {w}"));
    }
    let spool = Spool::open(&common.spool)?;
    spool.bind_node(&common.node)?;
    let server = http::Server::bind(addr, BINARY, http::Limits::from_env()).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::AddrInUse {
            Kind::TempFail
        } else {
            Kind::Config
        };
        fail(kind, format!("cannot listen on {addr}: {e}"))
    })?;
    let local = server.local_addr()?;
    let stopper = server.stopper()?;
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| fail(Kind::Internal, format!("cannot handle signals: {e}")))?;
    let signal_handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let _ = err_line(&format!(
                    "{BINARY}: signal {sig}: finishing requests in flight, then exiting"
                ));
                stopper.stop();
            }
        })?;
    let app = routes::App {
        spool,
        node: common.node.clone(),
        secret,
        forge: forge.clone(),
        config: common.file.clone(),
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{local}")?;
        out.flush()?;
    }
    server.serve(Arc::new(app))?;
    signal_handle.close();
    let _ = err_line(&format!("{BINARY}: stopped"));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_unless_allowed() {
        assert!(listen_addr("127.0.0.1:0", false).is_ok());
        assert!(listen_addr("[::1]:0", false).is_ok());
        assert!(listen_addr("0.0.0.0:0", false).is_err());
        assert!(listen_addr("0.0.0.0:0", true).is_ok());
        assert!(listen_addr("nonsense", false).is_err());
    }
}
