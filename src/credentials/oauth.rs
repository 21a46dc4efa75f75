//! Token requests to an OAuth 2.0 authorization server (RFC 6749 §4.4
//! and §6, RFC 8693 §2): the form, the client's authentication, the
//! response read and judged.

use std::time::Duration;

use base64::Engine;
use http::{Request, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::error::CredentialError;
use crate::config::credentials::{ClientAuth, OAuthClient};
use crate::net::client::HttpClient;
use crate::net::response::{full, read_limited};

/// Largest token response read.
const MAX_RESPONSE: usize = 64 << 10;

/// `application/x-www-form-urlencoded` leaves only these unescaped.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// What a token endpoint granted.
pub(crate) struct Granted {
    pub access_token: String,
    pub token_type: String,
    pub lifetime: Duration,
    /// A rotated refresh token, if the server sent one.
    pub refresh_token: Option<String>,
    pub issued_token_type: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    issued_token_type: Option<String>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
}

/// Sends one token request with `form` (the grant's parameters) and the
/// client's authentication.
pub(crate) async fn request(
    http: &HttpClient,
    name: &str,
    client: &OAuthClient,
    form: Vec<(&'static str, String)>,
) -> Result<Granted, CredentialError> {
    let url = client.token_url.clone();
    let (status, body) = post_form(http, name, client, url, form, "token endpoint").await?;
    judge(name, client, status, &body)
}

/// Enterprise-managed authorization: `exchange` at the enterprise IdP
/// (`idp`) for an Identity Assertion JWT, then the RFC 7523 jwt-bearer
/// grant `bearer` with it as the `assertion` at the authorization server
/// (`client`). Either refusing is the caller's refusal
/// (`credentials.rejected`).
pub(crate) async fn id_jag(
    http: &HttpClient,
    name: &str,
    (idp, client): (&OAuthClient, &OAuthClient),
    exchange: Vec<(&'static str, String)>,
    mut bearer: Vec<(&'static str, String)>,
) -> Result<Granted, CredentialError> {
    let assertion = request(http, name, idp, exchange).await?;
    if assertion.issued_token_type.as_deref() != Some(super::plan::ID_JAG) {
        let msg =
            "the identity provider's answer is not an Identity Assertion JWT (issued_token_type)";
        return Err(CredentialError::unavailable(name, msg));
    }
    bearer.push(("assertion", assertion.access_token));
    request(http, name, client, bearer).await
}

/// POSTs `form` to `url` (an endpoint of the client's authorization
/// server, called `what` in errors) with the client's authentication;
/// the status and at most [`MAX_RESPONSE`] bytes of the answer, within
/// the client's timeout. Errors never quote what the server sent.
pub(crate) async fn post_form(
    http: &HttpClient,
    name: &str,
    client: &OAuthClient,
    url: http::Uri,
    mut form: Vec<(&'static str, String)>,
    what: &str,
) -> Result<(http::StatusCode, bytes::Bytes), CredentialError> {
    let mut req = Request::post(url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json");
    match client.client_auth {
        ClientAuth::Basic => {
            // RFC 6749 §2.3.1: each part form-encoded, then Base64.
            let pair = format!(
                "{}:{}",
                encode(&client.client_id),
                encode(client.client_secret.expose())
            );
            let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
            req = req.header(header::AUTHORIZATION, format!("Basic {b64}"));
        }
        ClientAuth::Post => {
            form.push(("client_id", client.client_id.clone()));
            form.push(("client_secret", client.client_secret.expose().to_string()));
        }
    }
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let req = req.body(full(body)).map_err(|_| {
        CredentialError::unavailable(name, format!("the {what} request could not be built"))
    })?;
    send(http, name, req, client.timeout, what).await
}

/// Sends `req`; its status and at most [`MAX_RESPONSE`] bytes of its body
/// within `timeout`.
pub(crate) async fn send(
    http: &HttpClient,
    name: &str,
    req: Request<crate::net::response::Body>,
    timeout: Duration,
    what: &str,
) -> Result<(http::StatusCode, bytes::Bytes), CredentialError> {
    let exchange = async {
        let resp = http.request(req).await.map_err(|e| {
            let how = if e.is_connect() {
                "connection refused or failed"
            } else {
                "request failed"
            };
            CredentialError::unavailable(name, format!("{what}: {how}"))
        })?;
        let status = resp.status();
        let body = read_limited(resp.into_body(), MAX_RESPONSE)
            .await
            .map_err(|_| {
                CredentialError::unavailable(
                    name,
                    format!("{what}: response unreadable or too large"),
                )
            })?;
        Ok::<_, CredentialError>((status, body))
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        CredentialError::unavailable(name, format!("{what}: no answer within {timeout:?}"))
    })?
}

/// The response as a grant, or the error the caller gets.
fn judge(
    name: &str,
    client: &OAuthClient,
    status: http::StatusCode,
    body: &[u8],
) -> Result<Granted, CredentialError> {
    if status.is_success() {
        let r: TokenResponse = serde_json::from_slice(body).map_err(|_| {
            CredentialError::unavailable(name, "token endpoint: the answer has no access_token")
        })?;
        if r.access_token.trim().is_empty() {
            // It would go out as a bare `Bearer `.
            let msg = "token endpoint: the answer's access_token is empty";
            return Err(CredentialError::unavailable(name, msg));
        }
        let lifetime = r
            .expires_in
            .as_ref()
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .map_or(client.default_lifetime, Duration::from_secs);
        return Ok(Granted {
            access_token: r.access_token,
            token_type: r.token_type.unwrap_or_else(|| "Bearer".into()),
            lifetime,
            refresh_token: r.refresh_token,
            issued_token_type: r.issued_token_type,
        });
    }
    // RFC 6749 §5.2: 400 (or 401 for client authentication) with `error`.
    let oauth_error = serde_json::from_slice::<ErrorResponse>(body)
        .ok()
        .map(|e| e.error)
        .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    match (status.as_u16(), oauth_error) {
        (400 | 401, Some(code)) => Err(CredentialError::rejected(name, code)),
        (s, _) => Err(CredentialError::unavailable(
            name,
            format!("token endpoint answered HTTP {s}"),
        )),
    }
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, FORM).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn client() -> OAuthClient {
        OAuthClient {
            token_url: http::Uri::from_static("http://127.0.0.1:1/token"),
            client_id: "c".into(),
            client_secret: Secret::new("s"),
            client_auth: ClientAuth::Basic,
            scope: None,
            resource: None,
            audience: None,
            timeout: Duration::from_secs(1),
            default_lifetime: Duration::from_secs(300),
            revocation_url: None,
        }
    }

    #[test]
    fn responses_are_judged_without_echoing_them() {
        let c = client();
        let ok = judge(
            "crm",
            &c,
            http::StatusCode::OK,
            br#"{"access_token":"a","expires_in":"60"}"#,
        );
        let ok = ok.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (ok.token_type.as_str(), ok.lifetime),
            ("Bearer", Duration::from_secs(60))
        );
        for empty in [&br#"{"access_token":""}"#[..], br#"{"access_token":"  "}"#] {
            let e = judge("crm", &c, http::StatusCode::OK, empty)
                .map(|_| ())
                .unwrap_err();
            assert_eq!(e.code(), "credentials.unavailable");
        }
        let no_expiry = judge("crm", &c, http::StatusCode::OK, br#"{"access_token":"a"}"#);
        assert_eq!(
            no_expiry.map(|g| g.lifetime).ok(),
            Some(Duration::from_secs(300))
        );
        let refused = judge(
            "crm",
            &c,
            http::StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_grant","error_description":"token tok-SECRET reused"}"#,
        )
        .err()
        .map(|e| (e.code(), e.to_string()));
        let (code, msg) = refused.unwrap_or_default();
        assert_eq!(code, "credentials.rejected");
        assert!(
            msg.contains("invalid_grant") && !msg.contains("tok-SECRET"),
            "{msg}"
        );
        let down = judge(
            "crm",
            &c,
            http::StatusCode::BAD_GATEWAY,
            b"<html>tok-SECRET</html>",
        )
        .err();
        let msg = down.map(|e| (e.code(), e.to_string())).unwrap_or_default();
        assert_eq!(msg.0, "credentials.unavailable");
        assert!(!msg.1.contains("tok-SECRET"));
        let odd = judge(
            "crm",
            &c,
            http::StatusCode::BAD_REQUEST,
            br#"{"error":"<script>"}"#,
        )
        .err();
        assert_eq!(odd.map(|e| e.code()), Some("credentials.unavailable"));
    }

    #[test]
    fn form_encoding_escapes_everything_but_unreserved() {
        assert_eq!(encode("a b+c/d=é"), "a%20b%2Bc%2Fd%3D%C3%A9");
    }
}
