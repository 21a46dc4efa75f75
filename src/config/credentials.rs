//! `[credentials.NAME]`: credentials headgate obtains itself
//! (docs/credentials.md): an OAuth 2.0 client (client credentials, the caller's
//! refresh token, token exchange) or a JWT it signs per session.
//!
//! Everything that can be wrong is found here, at load: the kind's fields,
//! an `https://` token URL (loopback excepted), the client secret, the
//! signing key (parsed, its public JWK derived, one test signature made).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use toml::Spanned;

use super::diagnostics::Ctx;
pub use super::oauth_client::is_secure_endpoint;
use super::oauth_client::oauth_kind;
use super::schema::RawCredential;
use super::signing_key::{previous_key, signing_key};
pub use crate::credentials::key::SigningKey;
use crate::secret::Secret;
use crate::template::HeaderTemplate;

/// The template root credentials are read from: `credentials.NAME.access_token`.
pub const ROOT: &str = "credentials";

/// RFC 8693's default `subject_token_type`.
pub(super) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// `id_jag`'s default `subject_token_type`: the caller's OpenID Connect
/// ID token.
pub(super) const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// Every kind, as written in config.
const KINDS: [&str; 5] = [
    "client_credentials",
    "refresh_token",
    "token_exchange",
    "id_jag",
    "jwt",
];

/// One declared credential.
#[derive(Debug)]
pub struct Credential {
    /// `NAME` of `[credentials.NAME]`.
    pub name: String,
    /// What it is and how it is obtained.
    pub kind: CredentialKind,
    /// Renew this long before the token runs out.
    pub refresh_before: Duration,
    /// Digest of the declaration: tokens cached under one declaration are
    /// not used under a changed one after a reload.
    pub fingerprint: u64,
    /// `prefetch`: obtained in the background as soon as a session is
    /// stored, so the call's first tool call finds it cached.
    pub prefetch: bool,
    /// `revoke_on_end`: access tokens obtained for a session are revoked
    /// (RFC 7009) when the session ends. Only the session kinds that an
    /// authorization server issues (refresh_token, token_exchange, id_jag).
    pub revoke_on_end: bool,
}

/// How a credential is obtained.
#[derive(Debug)]
pub enum CredentialKind {
    /// RFC 6749 §4.4: one token per rendered scope/resource/audience.
    ClientCredentials(OAuthClient),
    /// RFC 6749 §6: the caller's refresh token, read from the session at
    /// `from` (a dot path) and written back there when it rotates.
    RefreshToken {
        /// The client.
        client: OAuthClient,
        /// `refresh_token_from`, split at dots.
        from: Vec<String>,
    },
    /// RFC 8693: one token per subject token.
    TokenExchange {
        /// The client.
        client: OAuthClient,
        /// `subject_token`, rendered against the session.
        subject_token: HeaderTemplate,
        /// `subject_token_type`.
        subject_token_type: String,
        /// `requested_token_type`, also checked against the response's
        /// `issued_token_type`.
        requested_token_type: Option<String>,
    },
    /// RFC 7519: a JWT signed here, per session and claims.
    Jwt(JwtIssuer),
    /// Enterprise-managed authorization (the MCP extension "ID-JAG"): an
    /// RFC 8693 exchange of the caller's identity token at the enterprise
    /// IdP for an Identity Assertion JWT, then an RFC 7523 jwt-bearer
    /// grant with it at the MCP server's authorization server. One token
    /// per subject token.
    IdJag {
        /// The enterprise IdP's client (`idp_token_url`, `idp_client_id`,
        /// `idp_client_secret_env`), with `audience` (the authorization
        /// server's issuer), `resource` and `scope`.
        idp: OAuthClient,
        /// The authorization server's client, with `resource` and `scope`.
        client: OAuthClient,
        /// `subject_token`, rendered against the session.
        subject_token: HeaderTemplate,
        /// `subject_token_type` (default `…:id_token`).
        subject_token_type: String,
    },
}

impl CredentialKind {
    /// The kind as written in config.
    pub fn name(&self) -> &'static str {
        match self {
            CredentialKind::ClientCredentials(_) => "client_credentials",
            CredentialKind::RefreshToken { .. } => "refresh_token",
            CredentialKind::TokenExchange { .. } => "token_exchange",
            CredentialKind::IdJag { .. } => "id_jag",
            CredentialKind::Jwt(_) => "jwt",
        }
    }
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic (RFC 6749 §2.3.1).
    Basic,
    /// `client_secret_post`: in the form body.
    Post,
}

/// An OAuth 2.0 client of one authorization server.
#[derive(Debug)]
pub struct OAuthClient {
    /// The token endpoint.
    pub token_url: http::Uri,
    /// `client_id`.
    pub client_id: String,
    /// The client secret (empty only offline).
    pub client_secret: Secret,
    /// Basic or post.
    pub client_auth: ClientAuth,
    /// `scope`, rendered against the session.
    pub scope: Option<HeaderTemplate>,
    /// RFC 8707 `resource`, rendered against the session.
    pub resource: Option<HeaderTemplate>,
    /// `audience`, rendered against the session.
    pub audience: Option<HeaderTemplate>,
    /// Deadline of one token request.
    pub timeout: Duration,
    /// The lifetime assumed when a response has no `expires_in`.
    pub default_lifetime: Duration,
    /// `revocation_url` (RFC 7009); unset, the authorization server's
    /// metadata names it (RFC 8414 `revocation_endpoint`).
    pub revocation_url: Option<http::Uri>,
}

/// A JWT headgate signs.
#[derive(Debug)]
pub struct JwtIssuer {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// The signing key; `None` only offline (`render`, `check_texts`).
    pub key: Option<SigningKey>,
    /// Published too, during a rotation.
    pub previous: Vec<Jwk>,
    /// `exp − iat`.
    pub ttl: Duration,
    /// More claims, rendered against the session.
    pub claims: Vec<(String, HeaderTemplate)>,
}

/// Every `[credentials.NAME]`, by name.
pub type Credentials = BTreeMap<String, Arc<Credential>>;

/// The kinds that are an OAuth 2.0 client of an authorization server.
const OAUTH: &[&str] = &[
    "client_credentials",
    "refresh_token",
    "token_exchange",
    "id_jag",
];

/// The kinds that exchange a subject token.
const EXCHANGES: &[&str] = &["token_exchange", "id_jag"];

/// Builds every `[credentials.NAME]`.
pub(super) fn credentials(
    ctx: &mut Ctx<'_>,
    raw: &BTreeMap<String, Spanned<RawCredential>>,
) -> Credentials {
    let mut out = Credentials::new();
    for (name, r) in raw {
        if let Some(c) = credential(ctx, name, r) {
            out.insert(name.clone(), Arc::new(c));
        }
    }
    out
}

fn credential(ctx: &mut Ctx<'_>, name: &str, raw: &Spanned<RawCredential>) -> Option<Credential> {
    let off = raw.span().start;
    let fingerprint = crate::shards::fnv1a(ctx.text[raw.span()].as_bytes());
    let raw = raw.get_ref();
    let Some(kind) = &raw.kind else {
        let msg = format!(
            "[credentials.{name}] needs `kind`: one of {}",
            KINDS.join(", ")
        );
        ctx.err(off, "config.invalid_credential", msg);
        return None;
    };
    let kind_name = *KINDS.iter().find(|k| *k == kind.get_ref()).or_else(|| {
        let msg = format!(
            "kind `{}` is not one of {}",
            kind.get_ref(),
            KINDS.join(", ")
        );
        ctx.err(kind.span().start, "config.invalid_value", msg);
        None
    })?;
    check_fields(ctx, name, raw, kind_name, off);
    let before = ctx.errors.len();
    let kind = match kind_name {
        "jwt" => CredentialKind::Jwt(jwt(ctx, name, raw, off)?),
        _ => oauth_kind(ctx, name, raw, kind_name, off)?,
    };
    let refresh_before = ctx.duration(&raw.refresh_before, Duration::from_secs(30));
    let revoke_on_end = revoke_on_end(ctx, name, raw, kind_name);
    (ctx.errors.len() == before).then(|| Credential {
        name: name.to_string(),
        kind,
        refresh_before,
        fingerprint,
        prefetch: raw.prefetch.as_ref().is_some_and(|p| *p.get_ref()),
        revoke_on_end,
    })
}

/// `revoke_on_end`, where it can mean something: a token an authorization
/// server issued for one session. A JWT headgate signs has no server to
/// revoke it at, and a client-credentials token is not the session's.
fn revoke_on_end(ctx: &mut Ctx<'_>, name: &str, raw: &RawCredential, kind: &str) -> bool {
    let on = raw.revoke_on_end.as_ref().filter(|r| *r.get_ref());
    if let (None, Some(url)) = (on, &raw.revocation_url) {
        let msg = format!(
            "[credentials.{name}]: `revocation_url` is used only with revoke_on_end = true; set it or remove the URL"
        );
        ctx.err(url.span().start, "config.invalid_credential", msg);
    }
    let Some(on) = on else { return false };
    let why = match kind {
        "jwt" => {
            "a JWT headgate signs has no authorization server to revoke it at; shorten its `ttl` instead"
        }
        "client_credentials" => {
            "a client_credentials token is not obtained for one session; revoke_on_end applies to refresh_token and token_exchange"
        }
        _ => return true,
    };
    let msg = format!("[credentials.{name}]: {why}");
    ctx.err(on.span().start, "config.invalid_credential", msg);
    false
}

/// A field set that the kind does not take is an error at the field.
fn check_fields(ctx: &mut Ctx<'_>, name: &str, raw: &RawCredential, kind: &str, off: usize) {
    let at = |f: &Option<Spanned<String>>| f.as_ref().map(|s| s.span().start);
    // Each field, where it is written (if it is), and the kinds that take it.
    let fields: [(&str, Option<usize>, &[&str]); 23] = [
        ("token_url", at(&raw.token_url), OAUTH),
        ("client_id", at(&raw.client_id), OAUTH),
        ("client_secret_env", at(&raw.client_secret_env), OAUTH),
        ("client_auth", at(&raw.client_auth), OAUTH),
        ("scope", at(&raw.scope), OAUTH),
        ("resource", at(&raw.resource), OAUTH),
        ("default_lifetime", at(&raw.default_lifetime), OAUTH),
        ("timeout", at(&raw.timeout), OAUTH),
        ("revocation_url", at(&raw.revocation_url), OAUTH),
        (
            "refresh_token_from",
            at(&raw.refresh_token_from),
            &["refresh_token"],
        ),
        ("subject_token", at(&raw.subject_token), EXCHANGES),
        ("subject_token_type", at(&raw.subject_token_type), EXCHANGES),
        ("idp_token_url", at(&raw.idp_token_url), &["id_jag"]),
        ("idp_client_id", at(&raw.idp_client_id), &["id_jag"]),
        (
            "idp_client_secret_env",
            at(&raw.idp_client_secret_env),
            &["id_jag"],
        ),
        (
            "requested_token_type",
            at(&raw.requested_token_type),
            &["token_exchange"],
        ),
        ("issuer", at(&raw.issuer), &["jwt"]),
        ("signing_key_file", at(&raw.signing_key_file), &["jwt"]),
        ("signing_key_env", at(&raw.signing_key_env), &["jwt"]),
        ("key_id", at(&raw.key_id), &["jwt"]),
        (
            "previous_keys",
            raw.previous_keys.first().map(|s| s.span().start),
            &["jwt"],
        ),
        ("ttl", at(&raw.ttl), &["jwt"]),
        ("claims", (!raw.claims.is_empty()).then_some(off), &["jwt"]),
    ];
    for (field, at, kinds) in fields {
        let Some(at) = at else { continue };
        if !kinds.contains(&kind) {
            let msg = format!(
                "[credentials.{name}]: `{field}` does not apply to kind = \"{kind}\"; remove it"
            );
            ctx.err(at, "config.invalid_credential", msg);
        }
    }
}

/// A required string field, or an error naming it.
pub(super) fn required<'r>(
    ctx: &mut Ctx<'_>,
    name: &str,
    field: &'r Option<Spanned<String>>,
    what: &str,
    off: usize,
) -> Option<&'r Spanned<String>> {
    if field.is_none() {
        let msg = format!("[credentials.{name}] needs `{what}`");
        ctx.err(off, "config.invalid_credential", msg);
    }
    field.as_ref()
}

/// An optional template field; `Some(None)` when absent, `None` on error.
pub(super) fn optional_template(
    ctx: &mut Ctx<'_>,
    raw: &Option<Spanned<String>>,
) -> Option<Option<HeaderTemplate>> {
    match raw {
        None => Some(None),
        Some(s) => session_template(ctx, s).map(Some),
    }
}

/// A template rendered against the session: it may not read credentials
/// (one credential is never obtained to obtain another).
pub(super) fn session_template(ctx: &mut Ctx<'_>, raw: &Spanned<String>) -> Option<HeaderTemplate> {
    let t = ctx.template(raw.get_ref(), raw.span().start)?;
    if let Some((_, span)) = t.keys_under(ROOT).next() {
        let msg = "a credential's own templates cannot read `credentials`";
        ctx.template_err(raw.span().start, span, "config.invalid_credential", msg);
        return None;
    }
    Some(t)
}

fn jwt(ctx: &mut Ctx<'_>, name: &str, raw: &RawCredential, off: usize) -> Option<JwtIssuer> {
    let issuer = required(ctx, name, &raw.issuer, "issuer", off);
    let audience = required(ctx, name, &raw.audience, "audience", off);
    let key = signing_key(ctx, name, raw, off);
    let previous: Vec<Jwk> = (raw.previous_keys.iter())
        .filter_map(|p| previous_key(ctx, p))
        .collect();
    let mut claims = Vec::new();
    for (claim, v) in &raw.claims {
        if ["iss", "aud", "iat", "nbf", "exp", "jti"].contains(&claim.as_str()) {
            let msg = format!(
                "claim `{claim}` is set by headgate; remove it from [credentials.{name}.claims]"
            );
            ctx.err(v.span().start, "config.invalid_credential", msg);
            continue;
        }
        if let Some(t) = session_template(ctx, v) {
            claims.push((claim.clone(), t));
        }
    }
    let ttl = ctx.duration(&raw.ttl, Duration::from_secs(300));
    Some(JwtIssuer {
        issuer: issuer?.get_ref().clone(),
        audience: audience?.get_ref().clone(),
        key: key?,
        previous,
        ttl,
        claims,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::check_texts;

    fn errors(main: &str, route: &str) -> Vec<(String, usize, usize, &'static str)> {
        let routes = [("r", route)];
        let e = check_texts(main, &routes)
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        e.iter()
            .map(|e| {
                let file = e.path.file_name().map(|f| f.to_string_lossy().into_owned());
                (file.unwrap_or_default(), e.line, e.column, e.code)
            })
            .collect()
    }

    const OK_ROUTE: &str = "upstream = \"http://127.0.0.1:9\"\ninbound_auth = \"none\"\n";

    #[test]
    fn each_problem_is_found_where_it_is_written() {
        let main = "[credentials.a]\nkind = \"client_credentials\"\ntoken_url = \"https://a.test/t\"\nclient_id = \"c\"\nclient_secret_env = \"A\"\nissuer = \"x\"\n\
                    [credentials.b]\nkind = \"oauth\"\n\
                    [credentials.c]\nkind = \"jwt\"\nissuer = \"i\"\naudience = \"a\"\nsigning_key_env = \"K\"\n[credentials.c.claims]\nexp = \"1\"\nsub = \"<< credentials.a.access_token >>\"\n";
        let route = format!(
            "{OK_ROUTE}[headers]\nx = \"<< credentials.zz.access_token >>\"\ny = \"<< credentials | size >>\"\n"
        );
        let mut found = errors(main, &route);
        found.sort();
        let want = [
            ("headgate.toml", 6, 10, "config.invalid_credential"), // issuer on client_credentials
            ("headgate.toml", 8, 8, "config.invalid_value"),       // kind = "oauth"
            ("headgate.toml", 15, 7, "config.invalid_credential"), // exp is headgate's
            ("headgate.toml", 16, 11, "config.invalid_credential"), // a credential reading credentials
            ("r.toml", 4, 9, "config.unknown_credential"),          // not declared
            ("r.toml", 5, 9, "config.unknown_credential"),          // not credentials.NAME
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(f, l, c, code)| (f.to_string(), *l, *c, *code))
            .collect();
        assert_eq!(found, want);
    }

    /// `revoke_on_end` only where a server issued the token for one
    /// session; `revocation_url` only with it, and never in clear.
    #[test]
    fn revoke_on_end_is_refused_where_it_cannot_mean_anything() {
        let oauth =
            "token_url = \"https://a.test/t\"\nclient_id = \"c\"\nclient_secret_env = \"A\"\n";
        let main = format!(
            "[credentials.a]\nkind = \"client_credentials\"\n{oauth}revoke_on_end = true\n\
             [credentials.b]\nkind = \"jwt\"\nissuer = \"i\"\naudience = \"a\"\nsigning_key_env = \"K\"\nrevoke_on_end = true\n\
             [credentials.c]\nkind = \"refresh_token\"\n{oauth}refresh_token_from = \"x.y\"\nrevocation_url = \"https://a.test/r\"\n\
             [credentials.d]\nkind = \"refresh_token\"\n{oauth}refresh_token_from = \"x.y\"\nrevoke_on_end = true\nrevocation_url = \"http://a.test/r\"\n\
             [credentials.e]\nkind = \"token_exchange\"\n{oauth}subject_token = \"<< call.t >>\"\nrevoke_on_end = true\nprefetch = true\n"
        );
        let mut found = errors(&main, OK_ROUTE);
        found.sort();
        let want = [
            ("headgate.toml", 6, 17, "config.invalid_credential"), // client_credentials
            ("headgate.toml", 12, 17, "config.invalid_credential"), // jwt
            ("headgate.toml", 19, 18, "config.invalid_credential"), // URL without revoke_on_end
            ("headgate.toml", 27, 18, "config.insecure_token_url"), // http:// off loopback
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(f, l, c, code)| (f.to_string(), *l, *c, *code))
            .collect();
        assert_eq!(found, want);
    }

    /// `Debug` of the whole config (what a panic or a `{:?}` would print)
    /// never shows a client secret.
    #[test]
    fn debug_never_shows_a_client_secret() {
        let main = "[credentials.a]\nkind = \"client_credentials\"\ntoken_url = \"https://a.test/t\"\nclient_id = \"c\"\nclient_secret_env = \"HG_TEST_CLIENT_SECRET\"\n";
        let cfg = check_texts(main, &[("r", OK_ROUTE)]).unwrap_or_else(|e| panic!("{e}"));
        let secret = std::env::var("HG_TEST_CLIENT_SECRET").unwrap_or_default();
        assert!(!secret.is_empty(), ".cargo/config.toml sets it");
        let shown = format!("{cfg:?}");
        assert!(
            shown.contains("client_id") && !shown.contains(&secret),
            "{shown}"
        );
    }

    #[test]
    fn a_route_lists_the_credentials_its_templates_read() {
        let main = "[credentials.a]\nkind = \"client_credentials\"\ntoken_url = \"http://127.0.0.1:1/t\"\nclient_id = \"c\"\nclient_secret_env = \"A\"\n\
                    [credentials.b]\nkind = \"client_credentials\"\ntoken_url = \"http://localhost:1/t\"\nclient_id = \"c\"\nclient_secret_env = \"A\"\n";
        let route = format!(
            "{OK_ROUTE}[headers]\nx = \"<< credentials.a.access_token >>\"\ny = \"<% if credentials.a.token_type %>1<% endif %>\"\n"
        );
        let cfg = check_texts(main, &[("r", &route)]).unwrap_or_else(|e| panic!("{e}"));
        let used: Vec<_> = (cfg.routes["r"].credentials.iter())
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(used, ["a"], "b is declared but not read; a is listed once");
        assert!(
            cfg.routes["r"].reads_body(),
            "its body is kept to send again after a 401"
        );
    }
}
