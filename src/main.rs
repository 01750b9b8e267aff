//! `factory`: the console by default, headless subcommands for scripts and CI.

mod cli;
mod tui;

fn main() -> std::process::ExitCode {
    cli::main()
}
