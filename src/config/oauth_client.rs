//! The OAuth kinds of `[credentials.NAME]`: the client of an
//! authorization server (`token_url`, `client_id`, `client_secret_env`,
//! …), `id_jag`'s client at the enterprise IdP, and the rule every
//! endpoint a client secret goes to follows.

use std::time::Duration;

use toml::Spanned;

use super::LoadMode;
use super::credentials::{
    ACCESS_TOKEN_TYPE, ClientAuth, CredentialKind, ID_TOKEN_TYPE, OAuthClient, optional_template,
    required, session_template,
};
use super::diagnostics::Ctx;
use super::schema::RawCredential;
use crate::secret::Secret;

pub(super) fn oauth_kind(
    ctx: &mut Ctx<'_>,
    name: &str,
    raw: &RawCredential,
    kind: &str,
    off: usize,
) -> Option<CredentialKind> {
    let client = oauth_client(ctx, name, raw, off);
    Some(match kind {
        "client_credentials" => CredentialKind::ClientCredentials(client?),
        "refresh_token" => {
            let from = required(
                ctx,
                name,
                &raw.refresh_token_from,
                "refresh_token_from",
                off,
            )?;
            let path: Vec<String> = from.get_ref().split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                let msg = "refresh_token_from is a dot path into the session, e.g. \"call.metadata.refresh_token\"";
                ctx.err(from.span().start, "config.invalid_credential", msg);
                return None;
            }
            CredentialKind::RefreshToken {
                client: client?,
                from: path,
            }
        }
        "id_jag" => {
            let client = client?;
            let idp = idp_client(ctx, name, raw, off, &client);
            let subject = required(ctx, name, &raw.subject_token, "subject_token", off)?;
            let subject_token = session_template(ctx, subject)?;
            CredentialKind::IdJag {
                idp: idp?,
                client,
                subject_token,
                subject_token_type: raw
                    .subject_token_type
                    .as_ref()
                    .map_or(ID_TOKEN_TYPE.to_string(), |s| s.get_ref().clone()),
            }
        }
        _ => {
            let subject = required(ctx, name, &raw.subject_token, "subject_token", off)?;
            let subject_token = session_template(ctx, subject)?;
            CredentialKind::TokenExchange {
                client: client?,
                subject_token,
                subject_token_type: raw
                    .subject_token_type
                    .as_ref()
                    .map_or(ACCESS_TOKEN_TYPE.to_string(), |s| s.get_ref().clone()),
                requested_token_type: raw
                    .requested_token_type
                    .as_ref()
                    .map(|s| s.get_ref().clone()),
            }
        }
    })
}

fn oauth_client(
    ctx: &mut Ctx<'_>,
    name: &str,
    raw: &RawCredential,
    off: usize,
) -> Option<OAuthClient> {
    let url = required(ctx, name, &raw.token_url, "token_url", off)
        .and_then(|u| endpoint(ctx, u, "token_url"));
    let client_id = required(ctx, name, &raw.client_id, "client_id", off);
    let secret_env = required(ctx, name, &raw.client_secret_env, "client_secret_env", off);
    let client_secret = client_secret(ctx, secret_env);
    let auths = [("basic", ClientAuth::Basic), ("post", ClientAuth::Post)];
    let client_auth = ctx.choice(
        raw.client_auth.as_ref(),
        "client_auth",
        &auths,
        ClientAuth::Basic,
    );
    let scope = optional_template(ctx, &raw.scope);
    let resource = optional_template(ctx, &raw.resource);
    let audience = optional_template(ctx, &raw.audience);
    let revocation_url = match &raw.revocation_url {
        Some(u) => Some(endpoint(ctx, u, "revocation_url")?),
        None => None,
    };
    Some(OAuthClient {
        token_url: url?,
        client_id: client_id?.get_ref().clone(),
        client_secret: client_secret?,
        client_auth,
        scope: scope?,
        resource: resource?,
        audience: audience?,
        timeout: ctx.duration(&raw.timeout, Duration::from_secs(5)),
        default_lifetime: ctx.duration(&raw.default_lifetime, Duration::from_secs(300)),
        revocation_url,
    })
}

/// The secret a `*_secret_env` names; offline, an empty one when it is
/// not set (the templates can still be tried).
fn client_secret(ctx: &mut Ctx<'_>, env: Option<&Spanned<String>>) -> Option<Secret> {
    match env.map(|e| ctx.secret(e)) {
        Some(Some(s)) => Some(s),
        Some(None) if ctx.mode == LoadMode::Offline => Some(Secret::new("")),
        _ => None,
    }
}

/// `id_jag`'s client at the enterprise IdP (`idp_token_url`,
/// `idp_client_id`, `idp_client_secret_env`; `client_secret_basic`),
/// asking with the credential's `audience` (required: the authorization
/// server's issuer), `resource` and `scope`.
fn idp_client(
    ctx: &mut Ctx<'_>,
    name: &str,
    raw: &RawCredential,
    off: usize,
    at_server: &OAuthClient,
) -> Option<OAuthClient> {
    let url = required(ctx, name, &raw.idp_token_url, "idp_token_url", off)
        .and_then(|u| endpoint(ctx, u, "idp_token_url"));
    let client_id = required(ctx, name, &raw.idp_client_id, "idp_client_id", off);
    let env = required(
        ctx,
        name,
        &raw.idp_client_secret_env,
        "idp_client_secret_env",
        off,
    );
    let client_secret = client_secret(ctx, env);
    required(ctx, name, &raw.audience, "audience", off)?;
    Some(OAuthClient {
        token_url: url?,
        client_id: client_id?.get_ref().clone(),
        client_secret: client_secret?,
        client_auth: ClientAuth::Basic,
        scope: at_server.scope.clone(),
        resource: at_server.resource.clone(),
        audience: at_server.audience.clone(),
        timeout: at_server.timeout,
        default_lifetime: at_server.default_lifetime,
        revocation_url: None,
    })
}

/// An authorization server's endpoint (`token_url`, `revocation_url`,
/// named by `field`): `https://`, or `http://` to a loopback host only (a
/// client secret must not cross a network in clear).
fn endpoint(ctx: &mut Ctx<'_>, raw: &Spanned<String>, field: &str) -> Option<http::Uri> {
    let off = raw.span().start;
    let u = match raw.get_ref().parse::<http::Uri>() {
        Ok(u) if u.authority().is_some() => u,
        _ => {
            let msg = format!("{field} `{}` is not an https:// URL", raw.get_ref());
            ctx.err(off, "config.invalid_credential", msg);
            return None;
        }
    };
    if is_secure_endpoint(&u) {
        return Some(u);
    }
    let msg = format!(
        "{field} must be https:// (http:// only to a loopback host): the client secret and tokens would cross the network in clear"
    );
    ctx.err(off, "config.insecure_token_url", msg);
    None
}

/// Whether an authorization server's endpoint keeps a client secret off
/// the network in clear: `https://`, or `http://` to a loopback host.
pub fn is_secure_endpoint(u: &http::Uri) -> bool {
    let host = u.host().unwrap_or_default().trim_matches(['[', ']']);
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match u.scheme_str() {
        Some("https") => true,
        Some("http") => loopback,
        _ => false,
    }
}
