//! One integration-test binary: every test runs the real binaries on real
//! temporary directories (see `support::TestEnv`).

mod record;
mod support;
