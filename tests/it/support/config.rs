//! Config directories for a test, and the secrets the tests use.

use std::path::Path;

/// Writes a config directory: `headgate.toml` and `routes/<name>.toml`.
pub fn write_config(dir: &Path, main: &str, routes: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join("routes")).unwrap();
    std::fs::write(dir.join("headgate.toml"), main).unwrap();
    for (name, text) in routes {
        std::fs::write(dir.join("routes").join(format!("{name}.toml")), text).unwrap();
    }
}

/// A route file body for `upstream`, keyed on X-Call-Id, with a route key.
pub fn route(upstream: &str, extra: &str) -> String {
    format!(
        "upstream = \"{upstream}\"\ninbound_auth = {{ header = \"x-headgate-key\", secret_env = \"HG_TEST_ROUTE_KEY\" }}\n{extra}\n"
    )
}

/// Secrets the tests use; `.cargo/config.toml` puts them in the test
/// environment (no `set_var` at run time).
pub const ROUTE_KEY: &str = "route-key-0123456789";
pub const ADMIN_TOKEN: &str = "admin-token-abcdef";
pub const WEBHOOK_SECRET: &str = "whsec-test-secret";
pub const RETELL_KEY: &str = "key_retell_test";
pub const API_KEY: &str = "api-key-for-resolver";

/// Copies the shipped examples into `dir`: `headgate.platforms.toml` as
/// `headgate.toml` and every example route into `routes/`. The route
/// names, sorted.
pub fn shipped_examples(dir: &Path) -> Vec<String> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/examples");
    std::fs::create_dir_all(dir.join("routes")).unwrap();
    std::fs::copy(
        examples.join("headgate.platforms.toml"),
        dir.join("headgate.toml"),
    )
    .unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let p = entry.unwrap().path();
        let file = p.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(name) = file
            .strip_suffix(".toml")
            .filter(|n| !n.starts_with("headgate."))
        {
            std::fs::copy(&p, dir.join("routes").join(&file)).unwrap();
            names.push(name.to_string());
        }
    }
    names.sort();
    names
}
