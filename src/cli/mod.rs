//! The `headgate` command line (README "Quick start", `headgate --help`).

use std::path::PathBuf;
use std::process::ExitCode;

mod explain;
mod probe;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::config::{self, LoadMode};
use crate::proxy::{self, ServeOptions};
use crate::template::HeaderTemplate;

/// Per-session header injection proxy for voice-AI tool and MCP calls.
#[derive(Debug, Parser)]
#[command(
    name = "headgate",
    version,
    about,
    after_help = "Examples:\n  headgate serve                                   # templates/, in-memory sessions\n  headgate check templates/                        # validate config and templates\n  headgate render --template 'Bearer << call.metadata.token >>' --vars call.json\n  headgate render --route crm --vars call.json --redact"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy; logs `listening on …` when ready.
    ///
    /// Logs go to standard output, one event per line: `RUST_LOG` sets the
    /// level (default `info`), `HEADGATE_LOG_FORMAT=json` writes JSON. Each
    /// request writes an access line (`request`: route, status, code, sent,
    /// ms, session hash, trace id); a route's `access_log` can turn it off
    /// or write it as JSON or text.
    Serve {
        /// Config directory.
        #[arg(long, default_value = "templates")]
        templates: PathBuf,
        /// Public listener (overrides `listen`).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Admin listener (overrides `admin_listen`).
        #[arg(long)]
        admin_listen: Option<std::net::SocketAddr>,
        /// Do not watch the directory for changes (SIGHUP still reloads).
        #[arg(long)]
        no_watch: bool,
    },
    /// Validate the config directory and compile every template.
    Check {
        /// Config directory.
        #[arg(default_value = "templates")]
        dir: PathBuf,
        /// Print the effective settings of this route (presets applied).
        #[arg(long, value_name = "ROUTE")]
        explain: Option<String>,
    },
    /// Render a template (or every header of a route) from a JSON file.
    Render {
        /// The template text.
        #[arg(long, conflicts_with = "route", required_unless_present = "route")]
        template: Option<String>,
        /// A route whose headers to render.
        #[arg(long)]
        route: Option<String>,
        /// Variables (a JSON object); `-` reads standard input.
        #[arg(long)]
        vars: Option<PathBuf>,
        /// Config directory (with --route).
        #[arg(long, default_value = "templates")]
        templates: PathBuf,
        /// The `session.id` to render with.
        #[arg(long, default_value = "cli-session")]
        session_id: String,
        /// Mask rendered values (with --route).
        #[arg(long)]
        redact: bool,
        /// Obtain the route's credentials from their authorization servers
        /// (or sign its JWTs) instead of showing `<credentials.NAME>`;
        /// needs the credentials' secrets in the environment. Refresh-token
        /// credentials are never spent here.
        #[arg(long, requires = "route")]
        fetch_credentials: bool,
    },
    /// Exit 0 if a running headgate's admin listener answers `GET
    /// /healthz` with 200 (a container's HEALTHCHECK).
    Probe {
        /// The admin listener.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: std::net::SocketAddr,
        /// The path to ask (`/readyz` for readiness).
        #[arg(long, default_value = "/healthz")]
        path: String,
    },
}

/// Runs the CLI; the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            templates,
            listen,
            admin_listen,
            no_watch,
        } => serve(ServeOptions {
            templates,
            listen,
            admin_listen,
            watch: !no_watch,
        }),
        Command::Check { dir, explain } => check(&dir, explain.as_deref()),
        Command::Probe { admin, path } => probe::probe(admin, &path),
        Command::Render {
            template,
            route,
            vars,
            templates,
            session_id,
            redact,
            fetch_credentials,
        } => {
            let vars = match read_vars(vars.as_ref()) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match (template, route) {
                (Some(t), _) => render_template(&t, &vars),
                (None, Some(r)) => render_route(
                    &RenderRoute {
                        dir: &templates,
                        name: &r,
                        session_id: &session_id,
                        redacted: redact,
                        fetch: fetch_credentials,
                    },
                    vars,
                ),
                (None, None) => ExitCode::from(2),
            }
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("HEADGATE_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    // Colour only for a person at a terminal; logs piped to a file or a
    // collector stay plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_target(false);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn serve(opts: ServeOptions) -> ExitCode {
    init_logging();
    let _ = crate::net::limits::raise_fd_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(proxy::serve(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(proxy::ServeError::Config(errs)) => {
            for e in &errs.0 {
                tracing::error!(code = e.code, "{e}");
                eprintln!("{}", e.display_with_source());
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn check(dir: &std::path::Path, explain: Option<&str>) -> ExitCode {
    match config::load_dir(dir, LoadMode::Check) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                println!("warning: {}", w.display_with_source());
            }
            if let Some(name) = explain {
                let Some(r) = cfg.route(name) else {
                    eprintln!("error: no route `{name}` in {}", dir.display());
                    return ExitCode::FAILURE;
                };
                println!("route {name} ({})", r.file.display());
                print!("{}", explain::route(&cfg, r));
            }
            println!(
                "ok: {} route(s), {} webhook(s), {} warning(s)",
                cfg.routes.len(),
                cfg.webhooks.len(),
                cfg.warnings.len()
            );
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("{}", e.display_with_source());
            }
            eprintln!("{} error(s)", errs.0.len());
            ExitCode::FAILURE
        }
    }
}

fn read_vars(path: Option<&PathBuf>) -> Result<Value, String> {
    let text = match path {
        None => return Ok(json!({})),
        Some(p) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| format!("reading standard input: {e}"))?;
            s
        }
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("vars are not JSON: {e}"))?;
    if !v.is_object() {
        return Err("vars must be a JSON object".into());
    }
    Ok(v)
}

fn render_template(src: &str, vars: &Value) -> ExitCode {
    match HeaderTemplate::compile(src).and_then(|t| t.render(vars)) {
        Ok(v) => {
            println!("{}", String::from_utf8_lossy(v.as_bytes()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", e.display_with_source());
            ExitCode::FAILURE
        }
    }
}

/// What `render --route` was asked for.
struct RenderRoute<'a> {
    dir: &'a std::path::Path,
    name: &'a str,
    session_id: &'a str,
    redacted: bool,
    fetch: bool,
}

/// `render --route`: the route's headers rendered exactly as the proxy
/// renders them (the same scope, the same `on_error` rules). A `request`
/// object in the variables (`method`, `path`, `query`, `headers`) stands
/// for the incoming request; by default it is a bare `POST`. Credentials
/// show as `<credentials.NAME>` unless `--fetch-credentials`.
fn render_route(opts: &RenderRoute<'_>, mut vars: Value) -> ExitCode {
    let mode = if opts.fetch {
        LoadMode::Check
    } else {
        LoadMode::Offline
    };
    let cfg = match config::load_dir(opts.dir, mode) {
        Ok(c) => c,
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("{}", e.display_with_source());
            }
            return ExitCode::FAILURE;
        }
    };
    let Some(route) = cfg.route(opts.name) else {
        eprintln!("error: no route `{}` in {}", opts.name, opts.dir.display());
        return ExitCode::FAILURE;
    };
    let (parts, rest, mcp) =
        match sample_request(vars.as_object_mut().and_then(|m| m.remove("request"))) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
    let session = match vars {
        Value::Object(m) => crate::template::Vars::from_map(m),
        _ => crate::template::Vars::default(),
    };
    let credentials = match opts.fetch {
        true => match fetch_credentials(route, &cfg, opts.session_id, &session) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {}: {e}", e.code());
                return ExitCode::FAILURE;
            }
        },
        false => credential_placeholders(&route.credentials),
    };
    let mut failed = false;
    let req = proxy::RequestView {
        head: &parts,
        rest: &rest,
        mcp: mcp.as_ref(),
        credentials: Some(&credentials),
    };
    let rendered = proxy::render_rules(
        route,
        &cfg.env,
        req,
        opts.session_id,
        &session,
        |rule, e| {
            failed = true;
            eprintln!("{}: {}", rule.name, e.display_with_source());
        },
    );
    for (name, v) in rendered.as_deref().unwrap_or_default() {
        let s = String::from_utf8_lossy(v.as_bytes());
        let shown = if opts.redacted {
            crate::template::redact(&s)
        } else {
            s.into_owned()
        };
        println!("{name}: {shown}");
    }
    if failed || rendered.is_err() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `<credentials.NAME>` where each credential's token would be.
fn credential_placeholders(credentials: &[std::sync::Arc<config::Credential>]) -> Value {
    let mut all = serde_json::Map::new();
    for c in credentials {
        let shown = json!({
            "access_token": format!("<credentials.{}>", c.name),
            "token_type": format!("<credentials.{}.token_type>", c.name),
        });
        all.insert(c.name.clone(), shown);
    }
    Value::Object(all)
}

/// The route's credentials, obtained as `serve` would (but never by
/// spending a refresh token: there is no session store to write a rotated
/// one back to).
fn fetch_credentials(
    route: &config::Route,
    cfg: &config::Config,
    session_id: &str,
    vars: &crate::template::Vars,
) -> Result<Value, crate::credentials::CredentialError> {
    use crate::credentials::{CredentialError, CredentialsRuntime, ForSession, Lookup};
    let failed = |why: String| CredentialError::Unavailable {
        name: String::new(),
        reason: why,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(e.to_string()))?;
    rt.block_on(async {
        let client =
            crate::net::client::build(cfg.server.timeouts.connect, &cfg.server.extra_roots)
                .map_err(|e| failed(e.to_string()))?;
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let runtime = CredentialsRuntime::new(client, None, metrics);
        let scope = crate::session::scope::CallScope::new(session_id, &cfg.env).with_vars(vars);
        let mut all = serde_json::Map::new();
        for c in &route.credentials {
            if matches!(c.kind, config::CredentialKind::RefreshToken { .. }) {
                eprintln!("note: `{}` is a refresh_token credential: not obtained here, since spending the caller's refresh token would spend the live session's", c.name);
                if let Value::Object(m) = credential_placeholders(std::slice::from_ref(c)) {
                    all.extend(m);
                }
                continue;
            }
            let session = ForSession {
                id: session_id,
                scope: &scope,
            };
            let token = match runtime.lookup(c, session)? {
                Lookup::Hit(t) => t,
                Lookup::Miss(p) => runtime.obtain(c, session_id, p).await?,
            };
            if let Value::Object(m) = token.scoped() {
                all.extend(m.clone());
            }
        }
        Ok(Value::Object(all))
    })
}

/// The request `render --route` renders for: `request` from the variables
/// file (`{"method", "path", "query": {…}, "headers": {…}, "mcp": {…}}`),
/// else `POST`.
fn sample_request(
    req: Option<Value>,
) -> Result<(http::request::Parts, String, Option<crate::mcp::McpView>), String> {
    let req = req.unwrap_or_else(|| json!({}));
    let text = |k: &str| req.get(k).and_then(Value::as_str);
    let method = text("method").unwrap_or("POST");
    let rest = text("path").unwrap_or("").to_string();
    let query: Vec<String> = req
        .get("query")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some(format!("{}={}", enc(k), enc(v.as_str()?))))
        .collect();
    let uri = match query.is_empty() {
        true => "/".to_string(),
        false => format!("/?{}", query.join("&")),
    };
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in req
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        b = b.header(k.as_str(), v.as_str().unwrap_or_default());
    }
    let (parts, ()) = b
        .body(())
        .map_err(|e| format!("the `request` object in --vars is not a request: {e}"))?
        .into_parts();
    let mcp = req.get("mcp").filter(|m| m.is_object()).map(|m| {
        let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        crate::mcp::McpView {
            calls: vec![crate::mcp::Call {
                method: text("method").unwrap_or_default(),
                tool: text("tool"),
                uri: text("uri"),
            }],
            id: None,
            unreadable: false,
        }
    });
    Ok((parts, rest, mcp))
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
