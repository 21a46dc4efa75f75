//! What obtaining one credential for one session needs, rendered from the
//! session: the key its token is cached under and the request (or the
//! claims) that gets one on a miss.

use super::ForSession;
use super::error::CredentialError;
use crate::config::credentials::{Credential, CredentialKind, JwtIssuer, OAuthClient};
use crate::template::{HeaderTemplate, Scope};

/// What one obtain needs, rendered from the session: the cache key and
/// how to get a token on a miss.
pub(super) enum Plan {
    /// Token request form parameters.
    Form(Vec<(&'static str, String)>),
    /// A refresh-token grant: the extra parameters (scope, resource, …);
    /// the refresh token itself is read from the store under its lock.
    Refresh(Vec<(&'static str, String)>),
    /// A JWT with these claims.
    Mint(Vec<(String, String)>),
    /// `id_jag`: the exchange at the enterprise IdP, then the jwt-bearer
    /// grant's parameters (its `assertion` is the IdP's answer).
    IdJag {
        exchange: Vec<(&'static str, String)>,
        bearer: Vec<(&'static str, String)>,
    },
}

/// RFC 8693's grant type.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The token type of an Identity Assertion JWT.
pub(super) const ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";

/// Which cached token a request needs: the credential's name, then what
/// tells its tokens apart (the session for `refresh_token`; the session
/// and rendered claims for `jwt`; the rendered scope, resource and
/// audience, and the subject token, for the others), each rendered
/// straight into one buffer.
pub(super) fn cache_key<S: Scope + ?Sized>(
    cred: &Credential,
    s: &ForSession<'_, S>,
) -> Result<Vec<u8>, CredentialError> {
    let mut key = Vec::with_capacity(cred.name.len() + 64);
    key.extend_from_slice(cred.name.as_bytes());
    let part = |t: &HeaderTemplate, what: &str, key: &mut Vec<u8>| {
        key.push(0);
        t.render_append(s.scope, key)
            .map_err(|e| did_not_render(cred, what, &e))
    };
    let client = match &cred.kind {
        CredentialKind::Jwt(issuer) => {
            key.push(0);
            key.extend_from_slice(s.id.as_bytes());
            for (k, t) in &issuer.claims {
                part(t, k, &mut key)?;
            }
            return Ok(key);
        }
        CredentialKind::RefreshToken { .. } => {
            key.push(0);
            key.extend_from_slice(s.id.as_bytes());
            return Ok(key);
        }
        CredentialKind::TokenExchange {
            client,
            subject_token,
            ..
        } => {
            part(subject_token, "subject_token", &mut key)?;
            client
        }
        // The IdP client carries the scope, resource and audience.
        CredentialKind::IdJag {
            idp, subject_token, ..
        } => {
            part(subject_token, "subject_token", &mut key)?;
            idp
        }
        CredentialKind::ClientCredentials(client) => client,
    };
    for (what, t) in client_templates(client) {
        if let Some(t) = t {
            part(t, what, &mut key)?;
        }
    }
    Ok(key)
}

fn did_not_render(
    cred: &Credential,
    what: &str,
    e: &crate::template::TemplateError,
) -> CredentialError {
    CredentialError::unavailable(
        &cred.name,
        format!("`{what}` did not render ({})", e.code()),
    )
}

/// How to obtain the token on a miss, rendered from the session.
pub(super) fn plan<S: Scope + ?Sized>(
    cred: &Credential,
    s: &ForSession<'_, S>,
) -> Result<Plan, CredentialError> {
    let render = |t: &HeaderTemplate, what: &str| {
        t.render_string(s.scope)
            .map_err(|e| did_not_render(cred, what, &e))
    };
    Ok(match &cred.kind {
        CredentialKind::Jwt(issuer) => Plan::Mint(claims(issuer, &render)?),
        CredentialKind::ClientCredentials(client) => {
            let mut form = vec![("grant_type", "client_credentials".to_string())];
            client_params(client, &render, &mut form)?;
            Plan::Form(form)
        }
        CredentialKind::RefreshToken { client, .. } => {
            let mut form = Vec::new();
            client_params(client, &render, &mut form)?;
            Plan::Refresh(form)
        }
        CredentialKind::TokenExchange {
            client,
            subject_token,
            subject_token_type,
            requested_token_type,
        } => {
            let mut form = vec![
                ("grant_type", TOKEN_EXCHANGE.to_string()),
                ("subject_token", render(subject_token, "subject_token")?),
                ("subject_token_type", subject_token_type.clone()),
            ];
            if let Some(r) = requested_token_type {
                form.push(("requested_token_type", r.clone()));
            }
            client_params(client, &render, &mut form)?;
            Plan::Form(form)
        }
        CredentialKind::IdJag {
            idp,
            client,
            subject_token,
            subject_token_type,
        } => {
            let mut exchange = vec![
                ("grant_type", TOKEN_EXCHANGE.to_string()),
                ("requested_token_type", ID_JAG.to_string()),
                ("subject_token", render(subject_token, "subject_token")?),
                ("subject_token_type", subject_token_type.clone()),
            ];
            client_params(idp, &render, &mut exchange)?;
            // The client's id in the body too, as the MCP SDK's server
            // requires of this grant whatever the client's authentication.
            let mut bearer = vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
                ),
                ("client_id", client.client_id.clone()),
            ];
            client_params(client, &render, &mut bearer)?;
            // The audience named the authorization server to the IdP.
            bearer.retain(|(k, _)| *k != "audience");
            Plan::IdJag { exchange, bearer }
        }
    })
}

/// The client's optional templates, by form parameter.
fn client_templates(client: &OAuthClient) -> [(&'static str, &Option<HeaderTemplate>); 3] {
    [
        ("scope", &client.scope),
        ("resource", &client.resource),
        ("audience", &client.audience),
    ]
}

/// `scope`, `resource` and `audience`, rendered, when set.
fn client_params(
    client: &OAuthClient,
    render: &impl Fn(&HeaderTemplate, &str) -> Result<String, CredentialError>,
    form: &mut Vec<(&'static str, String)>,
) -> Result<(), CredentialError> {
    for (k, t) in client_templates(client) {
        if let Some(t) = t {
            let v = render(t, k)?;
            if !v.is_empty() {
                form.push((k, v));
            }
        }
    }
    Ok(())
}

/// The `[claims]`, rendered.
fn claims(
    issuer: &JwtIssuer,
    render: &impl Fn(&HeaderTemplate, &str) -> Result<String, CredentialError>,
) -> Result<Vec<(String, String)>, CredentialError> {
    issuer
        .claims
        .iter()
        .map(|(k, t)| Ok((k.clone(), render(t, k)?)))
        .collect()
}
