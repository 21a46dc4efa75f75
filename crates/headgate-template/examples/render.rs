//! The template library on its own: compile a header template once, render
//! it from a call's variables. Depends on `headgate-template` alone (no
//! async runtime, no HTTP stack, no store).
//!
//! ```sh
//! cargo run -p headgate-template --example render
//! cargo run -p headgate-template --example render -- 'Bearer << call.metadata.token >>' '{"call":{"metadata":{"token":"tok-9"}}}'
//! ```

use headgate_template::HeaderTemplate;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(value) => {
            println!("{value}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The rendered value of the template and variables given (or the
/// defaults), or what went wrong, said as the library says it.
fn run() -> Result<String, String> {
    let mut args = std::env::args().skip(1);
    let source = args
        .next()
        .unwrap_or("Bearer << call.metadata.token >>".into());
    let vars = args
        .next()
        .unwrap_or(r#"{"call":{"metadata":{"token":"tok-123"}}}"#.into());
    let template = HeaderTemplate::compile(&source).map_err(|e| e.display_with_source())?;
    let vars: serde_json::Value = serde_json::from_str(&vars).map_err(|e| e.to_string())?;
    // `render` checks the value as a header value would be (no control
    // characters, bounded size) and returns an `http::HeaderValue`.
    let value = template.render(&vars).map_err(|e| e.to_string())?;
    value.to_str().map(str::to_owned).map_err(|e| e.to_string())
}
