//! Reading the config directory: `headgate.toml` and `routes/*.toml`,
//! validated whole. Every problem is collected (not just the first) and
//! located as `path:line:column`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diagnostics::{Ctx, toml_error};
use super::error::{ConfigError, ConfigErrors};
use super::schema::{RawRoute, RawServer};
use super::{Config, credentials, resolver, route, server, webhook};

/// What the config is loaded for. `check` and `serve` judge it alike: a
/// secret variable that is not set is an error in both, so `check` passing
/// means `serve` starts. Offline tools (`render --route`, fuzzing) need no
/// secrets: for them a missing one is a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// `headgate check`.
    Check,
    /// `headgate serve`.
    Serve,
    /// `headgate render`, [`check_texts`]: templates and settings only.
    Offline,
}

/// Loads and validates `dir` (`headgate.toml` optional, `routes/*.toml`).
pub fn load_dir(dir: &Path, mode: LoadMode) -> Result<Config, ConfigErrors> {
    if !dir.is_dir() {
        return Err(ConfigErrors(vec![ConfigError::file(
            dir,
            "config.not_found",
            "config directory not found; pass --templates DIR or create templates/",
        )]));
    }
    let main_text = std::fs::read_to_string(dir.join("headgate.toml")).unwrap_or_default();
    let routes_dir = dir.join("routes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&routes_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut routes = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(t) => routes.push((file, t)),
            Err(e) => errors.push(ConfigError::file(&file, "config.unreadable", e.to_string())),
        }
    }
    build(dir, &main_text, &routes, mode, errors)
}

/// Validates config given as text (`headgate.toml` and `(name, route
/// file)` pairs) without needing its secrets: for tools and fuzzing.
pub fn check_texts(main: &str, routes: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let dir = Path::new("<memory>");
    let routes: Vec<(PathBuf, String)> = routes
        .iter()
        .map(|(n, t)| (dir.join("routes").join(format!("{n}.toml")), t.to_string()))
        .collect();
    build(dir, main, &routes, LoadMode::Offline, Vec::new())
}

fn build(
    dir: &Path,
    main_text: &str,
    route_files: &[(PathBuf, String)],
    mode: LoadMode,
    mut errors: Vec<ConfigError>,
) -> Result<Config, ConfigErrors> {
    let mut warnings = Vec::new();
    let mut secrets = vec![];
    let main_path = dir.join("headgate.toml");
    let raw: RawServer = match toml::from_str(main_text) {
        Ok(r) => r,
        Err(e) => {
            errors.push(toml_error(&main_path, main_text, &e));
            RawServer::default()
        }
    };
    let mut ctx = Ctx {
        path: &main_path,
        text: main_text,
        errors: &mut errors,
        warnings: &mut warnings,
        mode,
        secrets: &mut secrets,
    };
    let server = server::server_settings(&mut ctx, &raw);
    let env = env_object(&raw);
    let resolver = raw
        .resolver
        .as_ref()
        .and_then(|r| resolver::resolver(&mut ctx, r, server.ttl));
    let credentials = credentials::credentials(&mut ctx, &raw.credentials);
    let mut webhooks = HashMap::new();
    for (name, w) in &raw.webhooks {
        if let Some(hook) = webhook::webhook(&mut ctx, name, w, server.ttl) {
            webhooks.insert(name.clone(), Arc::new(hook));
        }
    }

    let mut routes = HashMap::default();
    if route_files.is_empty() {
        warnings.push(ConfigError::file(
            &dir.join("routes"),
            "config.no_routes",
            "no routes: add routes/<name>.toml",
        ));
    }
    for (file, text) in route_files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.is_empty()
            || name.starts_with('_')
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            errors.push(ConfigError::file(file, "config.invalid_route_name", "route file names must be letters, digits, `-`, `_` or `.`, not starting with `_` (reserved for /_hooks and /_echo)"));
            continue;
        }
        let raw: RawRoute = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                errors.push(toml_error(file, text, &e));
                continue;
            }
        };
        let mut ctx = Ctx {
            path: file,
            text,
            errors: &mut errors,
            warnings: &mut warnings,
            mode,
            secrets: &mut secrets,
        };
        let known = route::Known {
            server: &server,
            has_resolver: resolver.is_some(),
            credentials: &credentials,
        };
        if let Some(r) = route::route(&mut ctx, &name, file, raw, &known) {
            routes.insert(name, Arc::new(r));
        }
    }

    secrets.push(server.admin_token_env.clone());
    errors.extend(secrets_in_env_allow(
        &main_path,
        main_text,
        &raw.env_allow,
        &secrets,
    ));

    if errors.is_empty() {
        Ok(Config {
            dir: dir.to_path_buf(),
            server,
            routes,
            webhooks,
            resolver: resolver.map(Arc::new),
            jwks: jwks(&credentials),
            credentials,
            env: Arc::new(env),
            warnings,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The JWKS of every `jwt` credential: current keys, then previous ones.
fn jwks(credentials: &super::Credentials) -> bytes::Bytes {
    let mut keys = Vec::new();
    for c in credentials.values() {
        if let super::CredentialKind::Jwt(j) = &c.kind {
            keys.extend(j.key.as_ref().map(|k| k.public.clone()));
            keys.extend(j.previous.iter().cloned());
        }
    }
    let set = jsonwebtoken::jwk::JwkSet { keys };
    serde_json::to_vec(&set).unwrap_or_default().into()
}

/// `env_allow` makes a variable readable by every template, and so
/// sendable upstream: one that holds the admin token, a route key, a
/// webhook or client secret, a signing or encryption key is refused, at
/// its place in `headgate.toml`.
fn secrets_in_env_allow<'a>(
    path: &'a Path,
    text: &'a str,
    env_allow: &'a [toml::Spanned<String>],
    secrets: &'a [String],
) -> impl Iterator<Item = ConfigError> + 'a {
    (env_allow.iter()).filter(|n| secrets.contains(n.get_ref())).map(move |name| {
        let msg = format!(
            "`{}` holds a secret headgate reads itself (a token, key or client secret); templates must not read it: remove it from env_allow",
            name.get_ref()
        );
        ConfigError::at(path, text, name.span().start, "config.secret_in_env_allow", msg)
    })
}

fn env_object(raw: &RawServer) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for name in &raw.env_allow {
        if let Ok(v) = std::env::var(name.get_ref()) {
            m.insert(name.get_ref().clone(), serde_json::Value::String(v));
        }
    }
    serde_json::Value::Object(m)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::StoreKind;

    #[test]
    fn redis_store_settings_default_and_override() {
        let c = check_texts("[store]\nkind = \"redis\"\n", &[]).unwrap();
        let StoreKind::Redis(r) = &c.server.store else {
            panic!("not redis")
        };
        assert_eq!(r.url, "redis://127.0.0.1:6379/0");
        assert_eq!(r.prefix, "headgate:");
        assert_eq!(r.cache_ttl, Duration::from_secs(5));
        let c = check_texts(
            "[store]\nkind = \"redis\"\nurl = \"redis://:pw-secret@10.0.0.5:6380/2\"\nprefix = \"hg:\"\ncache_ttl = \"2s\"\nstale_ttl = \"1m\"\ntimeout = \"250ms\"\n",
            &[],
        )
        .unwrap();
        let StoreKind::Redis(r) = &c.server.store else {
            panic!("not redis")
        };
        assert_eq!(
            (r.prefix.as_str(), r.cache_ttl, r.stale_ttl, r.timeout),
            (
                "hg:",
                Duration::from_secs(2),
                Duration::from_secs(60),
                Duration::from_millis(250)
            )
        );
        let shown = format!("{:?}", c.server);
        assert!(!shown.contains("pw-secret"), "{shown}");
        assert!(shown.contains("redis://***@10.0.0.5:6380/2"), "{shown}");
    }

    #[test]
    fn redis_store_errors_point_at_the_value() {
        let e = check_texts(
            "[store]\nkind = \"redis\"\nurl = \"unix:///x\"\ncache_ttl = \"soon\"\ntls_cert_file = \"c.pem\"\n",
            &[],
        )
        .unwrap_err();
        let mut found: Vec<_> = e.0.iter().map(|e| (e.line, e.code)).collect();
        found.sort();
        assert_eq!(
            found,
            [
                (3, "config.invalid_value"),
                (4, "config.invalid_duration"),
                // A client certificate for a store without TLS.
                (5, "config.invalid_value"),
            ]
        );
    }

    /// `core` is retired: "own" is what always happens now (a warning at
    /// its value), anything else asked for hyper's HTTP/1.1 path, which is
    /// gone (an error at its value, so it is not silently ignored).
    #[test]
    fn the_retired_core_setting_warns_or_is_refused() {
        let c = check_texts("workers = 2\ncore = \"own\"\n", &[]).unwrap();
        let w: Vec<_> = (c.warnings.iter())
            .filter(|w| w.code != "config.no_routes")
            .map(|w| (w.line, w.column, w.code))
            .collect();
        assert_eq!(w, [(2, 8, "config.retired")]);
        let e = check_texts("core = \"hyper\"\n", &[]).unwrap_err();
        let found: Vec<_> = e.0.iter().map(|e| (e.line, e.column, e.code)).collect();
        assert_eq!(found, [(1, 8, "config.retired")]);
        assert!(e.0[0].to_string().contains("delete the line"), "{}", e.0[0]);
    }

    /// The route_config fuzz target's find: a duration too large for
    /// `Duration` panicked the loader. Every duration setting, in the main
    /// file and in a route, is now an error at its line instead.
    #[test]
    fn durations_too_long_are_errors_not_panics() {
        let huge = "\"99999999999999999999\"";
        let main = format!(
            "ttl = {huge}\n[timeouts]\nidle = {huge}\n[store]\nkind = \"redis\"\ncache_ttl = \"366d\"\n\
             [resolver]\nurl = \"http://127.0.0.1:1/<< session.id >>\"\nnegative_ttl = {huge}\n\
             [webhooks.vapi]\nsecret_env = \"S\"\ntolerance = {huge}\n"
        );
        let route = format!(
            "upstream = \"http://127.0.0.1:1\"\ninbound_auth = \"none\"\nwait_for_session = {huge}\n"
        );
        let e = check_texts(&main, &[("r", &route)]).unwrap_err();
        let mut found: Vec<_> =
            e.0.iter()
                .map(|e| {
                    (
                        e.path.file_name().unwrap().to_string_lossy().into_owned(),
                        e.line,
                        e.code,
                    )
                })
                .collect();
        found.sort();
        let want = [
            ("headgate.toml", 1),
            ("headgate.toml", 3),
            ("headgate.toml", 6),
            ("headgate.toml", 9),
            ("headgate.toml", 12),
            ("r.toml", 3),
        ]
        .map(|(f, l)| (f.to_string(), l, "config.invalid_duration"));
        assert_eq!(found, want);
    }
}
