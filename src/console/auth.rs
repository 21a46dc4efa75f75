//! Who may see the console: a login with the admin token (or the read-only
//! metrics token) gives a random login id, kept in an `HttpOnly;
//! SameSite=Strict` cookie; the token itself never reaches the page or its
//! scripts. Each login has its own CSRF token, which every form that
//! changes something carries back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::secret::{Secret, ct_eq};

/// The console's cookie on a cleartext admin listener.
pub const COOKIE: &str = "headgate_console";

/// The console's cookie on an HTTPS admin listener: `__Host-` makes the
/// browser keep it only when set `Secure`, for `Path=/`, with no
/// `Domain` (so no other host or subdomain can plant or shadow it).
pub const SECURE_COOKIE: &str = "__Host-headgate_console";

/// The cookie's name and its attributes, cleartext or HTTPS.
fn cookie(tls: bool) -> (&'static str, &'static str) {
    match tls {
        true => (SECURE_COOKIE, "Path=/; Secure; HttpOnly; SameSite=Strict"),
        false => (COOKIE, "Path=/ui; HttpOnly; SameSite=Strict"),
    }
}

/// How long a login lasts.
pub const LOGIN_TTL: Duration = Duration::from_secs(12 * 3600);

/// Logins kept at once per role; past it that role's oldest is dropped.
const MAX_LOGINS: usize = 256;

/// What a login may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Logged in with the admin token: may also end sessions.
    Admin,
    /// Logged in with the read-only metrics token: looks only.
    ReadOnly,
}

/// One console login.
#[derive(Clone)]
pub struct Login {
    /// What it may do.
    pub role: Role,
    /// The token forms must carry back.
    pub csrf: String,
    expires: Instant,
    /// SHA-256 of the token logged in with: a rotated token logs out.
    token_digest: [u8; 32],
}

/// The live logins, by login id.
#[derive(Default)]
pub struct Logins {
    by_id: Mutex<HashMap<String, Login>>,
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Neither the admin token nor the metrics token.
    #[error("that is not the admin token (nor the read-only metrics token)")]
    WrongToken,
    /// The system random source failed.
    #[error("no random bytes for a login id; try again")]
    NoRandom,
}

impl Logins {
    /// Logs in with `token`: the new login's id (the cookie's value).
    /// With no admin token configured (a loopback-only admin API that
    /// takes requests without one) any submission logs in as admin.
    pub fn login(&self, cfg: &Config, token: &str) -> Result<(String, Login), LoginError> {
        let role = role_of(cfg, token).ok_or(LoginError::WrongToken)?;
        let (id, csrf) = (random_hex()?, random_hex()?);
        let login = Login {
            role,
            csrf,
            expires: Instant::now() + LOGIN_TTL,
            token_digest: digest(current_token(cfg, role)),
        };
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, l| l.expires > Instant::now());
        // Each role has its own room: logins with the read-only token can
        // never push an admin's login out.
        let same_role = || map.iter().filter(|(_, l)| l.role == role);
        if same_role().count() >= MAX_LOGINS
            && let Some(oldest) = same_role()
                .min_by_key(|(_, l)| l.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), login.clone());
        Ok((id, login))
    }

    /// The login a request's cookie names, if it is live and its token is
    /// still the configured one.
    pub fn find(&self, cfg: &Config, cookie_header: Option<&str>, tls: bool) -> Option<Login> {
        let id = cookie_value(cookie_header?, cookie(tls).0)?;
        let map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let login = map.get(id)?;
        let same_token = ct_eq(&login.token_digest, &digest(current_token(cfg, login.role)));
        (login.expires > Instant::now() && same_token).then(|| login.clone())
    }

    /// Ends the login a cookie names.
    pub fn logout(&self, cookie_header: Option<&str>, tls: bool) {
        if let Some(id) = cookie_header.and_then(|h| cookie_value(h, cookie(tls).0)) {
            let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
            map.remove(id);
        }
    }
}

impl Login {
    /// Whether a form's `csrf` field is this login's token.
    pub fn csrf_ok(&self, sent: Option<&str>) -> bool {
        sent.is_some_and(|s| ct_eq(self.csrf.as_bytes(), s.as_bytes()))
    }
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Which role `token` logs in as.
fn role_of(cfg: &Config, token: &str) -> Option<Role> {
    let server = &cfg.server;
    match &server.admin_token {
        None => Some(Role::Admin),
        Some(t) if t.matches(token.as_bytes()) => Some(Role::Admin),
        Some(_) => (server.metrics_token.as_ref())
            .filter(|t| t.matches(token.as_bytes()))
            .map(|_| Role::ReadOnly),
    }
}

/// The token a role logs in with under `cfg` (`""` when none is set).
fn current_token(cfg: &Config, role: Role) -> &str {
    let t = match role {
        Role::Admin => cfg.server.admin_token.as_ref(),
        Role::ReadOnly => cfg.server.metrics_token.as_ref(),
    };
    t.map_or("", Secret::expose)
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// 32 bytes from the system's CSPRNG, as hex.
fn random_hex() -> Result<String, LoginError> {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 32];
    (ring::rand::SystemRandom::new().fill(&mut b)).map_err(|_| LoginError::NoRandom)?;
    Ok(crate::hex::encode(&b))
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The `Set-Cookie` value for login `id`.
pub fn set_cookie(id: &str, tls: bool) -> String {
    let (name, attrs) = cookie(tls);
    format!("{name}={id}; {attrs}; Max-Age={}", LOGIN_TTL.as_secs())
}

/// The `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(tls: bool) -> String {
    let (name, attrs) = cookie(tls);
    format!("{name}=; {attrs}; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies() {
        let h = "a=1; headgate_console=abc; b=2";
        assert_eq!(cookie_value(h, COOKIE), Some("abc"));
        assert_eq!(cookie_value("headgate_consolex=1", COOKIE), None);
        assert!(set_cookie("x", false).contains("HttpOnly; SameSite=Strict"));
        let secure = set_cookie("x", true);
        assert!(
            secure.starts_with("__Host-headgate_console=x; Path=/; Secure; HttpOnly"),
            "{secure}"
        );
        assert!(!secure.contains("Domain"));
    }

    #[test]
    fn read_only_logins_never_push_an_admin_out() {
        let main =
            "metrics_token_env = \"HG_TEST_API_KEY\"\nadmin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n";
        let cfg = crate::config::check_texts(main, &[]).unwrap();
        let logins = Logins::default();
        let (admin, _) = logins.login(&cfg, "admin-token-abcdef").unwrap();
        for _ in 0..MAX_LOGINS + 4 {
            logins.login(&cfg, "api-key-for-resolver").unwrap();
        }
        let cookie = format!("{COOKIE}={admin}");
        assert_eq!(
            logins.find(&cfg, Some(&cookie), false).map(|l| l.role),
            Some(Role::Admin)
        );
    }

    #[test]
    fn random_ids_differ() {
        let (a, b) = (random_hex().unwrap(), random_hex().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
