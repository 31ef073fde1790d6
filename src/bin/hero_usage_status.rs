//! `hero_usage_status`: see `man 1 hero_usage_status` and [`hero_usage::cmd::status`].

fn main() -> std::process::ExitCode {
    hero_usage::cmd::status::main()
}
