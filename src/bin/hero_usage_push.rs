//! `hero_usage_push`: see `man 1 hero_usage_push` and [`hero_usage::cmd::push`].

fn main() -> std::process::ExitCode {
    hero_usage::cmd::push::main()
}
