//! `hero_usage_shim`: see `man 1 hero_usage_shim` and [`hero_usage::cmd::shim`].

fn main() -> std::process::ExitCode {
    hero_usage::cmd::shim::main()
}
