//! One integration-test binary: every test runs the real binaries on real
//! temporary directories (see `support::TestEnv`).

mod docs;
mod forge;
mod ops;
mod otoml;
mod push;
mod record;
mod shim;
mod status;
mod support;
