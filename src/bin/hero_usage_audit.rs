//! `hero_usage_audit`: see `man 1 hero_usage_audit` and [`hero_usage::cmd::audit`].

fn main() -> std::process::ExitCode {
    hero_usage::cmd::audit::main()
}
