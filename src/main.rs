//! `headgate`: see `headgate --help` and the README.
fn main() -> std::process::ExitCode {
    headgate::internals::cli::run()
}
