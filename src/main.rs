//! `headgate`: see `headgate --help` and the README.
fn main() -> std::process::ExitCode {
    headgate::cli::run()
}
