//! One integration-test binary: every test runs the real binaries on real
//! temporary directories (see `support::TestEnv`).

mod architecture;
mod audit;
mod audit_tamper;
mod crash_sweep;
mod docs;
mod drops;
mod exit_codes;
mod fleet;
mod forge;
mod fuzz_corpora;
mod man_examples;
mod ops;
mod otoml;
mod output;
mod push;
mod record;
mod scripts;
mod settings;
mod shim;
mod signing;
mod spools;
mod status;
mod support;
mod tls;
