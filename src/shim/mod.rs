//! `hero_usage_shim`: a minimal HTTP shim on loopback that turns requests
//! into the library calls the binaries make (man 1 hero_usage_shim). The
//! server is [`server`] (connections) and [`http`] (the protocol); the
//! admin secret is [`auth`]; the routes are [`routes`]; records are group
//! committed by [`commit`]. See `man 1 hero_usage_shim`.

pub mod auth;
pub mod commit;
pub mod http;
pub mod routes;
pub mod server;

use crate::console::err_line;
use crate::error::{Kind, fail};
use crate::settings::{Resolver, SecretSource};
use crate::spool::Spool;
use anyhow::Result;
use std::sync::Arc;

pub const BINARY: &str = "hero_usage_shim";

/// Run the shim until SIGTERM or SIGINT.
/// The forge settings are resolved at each push-now, so that the shim runs
/// without a forge configured.
pub fn run(settings: &Resolver) -> Result<()> {
    let common = settings.common()?;
    let shim = settings.shim()?;
    let (addr, secret) = (shim.addr, shim.admin_secret);
    if let SecretSource::File(p) = &secret
        && let Some(w) = crate::settings::exposed_secret_warning(p, "admin secret")
    {
        let _ = err_line(&format!("{BINARY}: warning: {w}"));
    }
    let spool = Spool::open(&common.spool)?;
    spool.bind_node(&common.node)?;
    let server = server::Server::bind(addr, BINARY, http::Limits::from_env()).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::AddrInUse {
            Kind::TempFail
        } else {
            Kind::Config
        };
        fail(kind, format!("cannot listen on {addr}: {e}"))
    })?;
    let local = server.local_addr()?;
    let stopper = server.stopper();
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
    let commits = commit::Commits::start(spool.clone(), routes::record_answer)?;
    let app = routes::App {
        spool,
        commits,
        node: common.node.clone(),
        secret,
        settings: settings.clone(),
    };
    // A reader that went away (EPIPE) ends nothing: the shim serves.
    crate::console::out(&format!("listening on http://{local}\n"))?;
    server.serve(Arc::new(app))?;
    signal_handle.close();
    let _ = err_line(&format!("{BINARY}: stopped"));
    Ok(())
}
