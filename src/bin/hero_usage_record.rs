//! `hero_usage_record`: see `man 1 hero_usage_record` and [`hero_usage::cmd::record`].

fn main() -> std::process::ExitCode {
    hero_usage::cmd::record::main()
}
