//! RFC 7009 token revocation at the authorization server that issued a
//! token, and where to send it: the credential's `revocation_url`, else
//! the `revocation_endpoint` the server's metadata publishes (RFC 8414
//! `/.well-known/oauth-authorization-server`, then OpenID Connect's
//! `/.well-known/openid-configuration`, at the token URL's origin).

use std::collections::HashMap;
use std::sync::Mutex;

use http::{Request, Uri, header};

use super::error::CredentialError;
use super::oauth;
use crate::config::credentials::{OAuthClient, is_secure_endpoint};
use crate::net::client::HttpClient;
use crate::net::response::empty;

/// The metadata documents asked for, in order.
const METADATA: [&str; 2] = [
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
];

/// Revocation endpoints found in metadata, by token URL (`None`: the
/// server publishes none). Asked once per authorization server.
#[derive(Default)]
pub(super) struct Endpoints(Mutex<HashMap<Uri, Option<Uri>>>);

impl Endpoints {
    /// Where `client`'s tokens are revoked.
    async fn of(
        &self,
        http: &HttpClient,
        name: &str,
        client: &OAuthClient,
    ) -> Result<Uri, CredentialError> {
        if let Some(u) = &client.revocation_url {
            return Ok(u.clone());
        }
        let known = self
            .0
            .lock()
            .ok()
            .and_then(|m| m.get(&client.token_url).cloned());
        let found = match known {
            Some(found) => found,
            None => {
                let found = discover(http, name, client).await;
                if let Ok(mut m) = self.0.lock() {
                    m.insert(client.token_url.clone(), found.clone());
                }
                found
            }
        };
        found.ok_or_else(|| {
            CredentialError::unavailable(
                name,
                "the authorization server publishes no revocation_endpoint at its token URL's origin; set revocation_url",
            )
        })
    }
}

/// Revokes `token` (an access token `client` obtained) at its server.
pub(super) async fn revoke(
    http: &HttpClient,
    endpoints: &Endpoints,
    name: &str,
    client: &OAuthClient,
    token: &str,
) -> Result<(), CredentialError> {
    let url = endpoints.of(http, name, client).await?;
    let form = vec![
        ("token", token.to_string()),
        ("token_type_hint", "access_token".to_string()),
    ];
    let (status, _) =
        oauth::post_form(http, name, client, url, form, "revocation endpoint").await?;
    // RFC 7009 §2.2: 200 whether or not the token was still valid.
    match status.as_u16() {
        200 => Ok(()),
        s => Err(CredentialError::unavailable(
            name,
            format!("revocation endpoint answered HTTP {s}"),
        )),
    }
}

/// The `revocation_endpoint` the server at `client`'s token URL's origin
/// publishes, if it is on that same origin (the client secret goes
/// nowhere the token URL does not already send it).
async fn discover(http: &HttpClient, name: &str, client: &OAuthClient) -> Option<Uri> {
    let origin = client.token_url.authority()?;
    let scheme = client.token_url.scheme_str()?;
    for path in METADATA {
        let url: Uri = format!("{scheme}://{origin}{path}").parse().ok()?;
        let req = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(empty())
            .ok()?;
        let Ok((status, body)) = oauth::send(http, name, req, client.timeout, "metadata").await
        else {
            continue;
        };
        if !status.is_success() {
            continue;
        }
        let doc: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let url: Uri = doc.get("revocation_endpoint")?.as_str()?.parse().ok()?;
        let same_origin = url.authority() == Some(origin) && url.scheme_str() == Some(scheme);
        return (same_origin && is_secure_endpoint(&url)).then_some(url);
    }
    None
}
