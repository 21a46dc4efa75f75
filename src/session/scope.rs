//! The render-time roots of one call (docs/templates.md "Template language"): the
//! session's own variables, `session.id`, `request.*`, `env.*` and
//! `credentials.*`. The
//! proxy, the resolver and `headgate render --route` all render through
//! this one scope, so a template reads the same everywhere.

use std::cell::OnceCell;

use serde_json::{Map, Value, json};

use crate::mcp::McpView;
use crate::net::head::{Head, visible};
use crate::template::{Scope, Vars};

/// See the module docs. `session` and `request` are built on first read,
/// so a render whose templates read neither (the usual case) allocates
/// nothing for them.
pub struct CallScope<'a> {
    key: &'a str,
    env: &'a Value,
    vars: Option<&'a Vars>,
    request: Option<(&'a dyn Head, &'a str, Option<&'a McpView>)>,
    credentials: Option<&'a Value>,
    session_root: OnceCell<Value>,
    request_root: OnceCell<Value>,
}

impl<'a> CallScope<'a> {
    /// The roots every render has: `session.id` and the allowed `env`.
    pub fn new(key: &'a str, env: &'a Value) -> Self {
        Self {
            key,
            env,
            vars: None,
            request: None,
            credentials: None,
            session_root: OnceCell::new(),
            request_root: OnceCell::new(),
        }
    }

    /// Adds the session's variables.
    pub fn with_vars(mut self, vars: &'a Vars) -> Self {
        self.vars = Some(vars);
        self
    }

    /// Adds `request.*`: the request head, the path after the route and,
    /// on MCP routes, `request.mcp`.
    pub fn with_request(
        mut self,
        head: &'a dyn Head,
        rest: &'a str,
        mcp: Option<&'a McpView>,
    ) -> Self {
        self.request = Some((head, rest, mcp));
        self
    }

    /// Adds `credentials.NAME.*`: the tokens obtained for this request.
    pub fn with_credentials(mut self, credentials: Option<&'a Value>) -> Self {
        self.credentials = credentials;
        self
    }
}

impl Scope for CallScope<'_> {
    fn root(&self, name: &str) -> Option<&Value> {
        match name {
            "session" => Some(self.session_root.get_or_init(|| json!({ "id": self.key }))),
            "request" => {
                let (head, rest, mcp) = self.request?;
                Some(
                    self.request_root
                        .get_or_init(|| request_object(head, rest, mcp)),
                )
            }
            "env" => Some(self.env),
            "credentials" => self.credentials,
            _ => self.vars?.root(name),
        }
    }
}

fn request_object(head: &dyn Head, rest: &str, mcp: Option<&McpView>) -> Value {
    let mut headers = Map::new();
    head.each_header(&mut |k, v| {
        if let Some(s) = visible(v) {
            headers
                .entry(k.to_ascii_lowercase())
                .or_insert_with(|| Value::String(s.to_string()));
        }
    });
    let mut query = Map::new();
    for (k, v) in query_pairs(head.query()) {
        query
            .entry(form_decode(k))
            .or_insert_with(|| Value::String(form_decode(v)));
    }
    let mut req =
        json!({ "method": head.method(), "path": rest, "query": query, "headers": headers });
    if let Some(m) = mcp {
        req["mcp"] = m.to_json();
    }
    req
}

/// The `name=value` pairs of a query string, undecoded.
pub fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// Decodes a query or path component: `+` is a space, then percent-decoding
/// (invalid UTF-8 is replaced).
pub fn form_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}
