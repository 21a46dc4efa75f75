//! One cached token per credential and key, the lock that makes its
//! renewal single-flight, and what its last failure and drop were: the
//! state [`super::CredentialsRuntime`] keeps per key.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::Counter;

use super::{CredentialError, Token};
use crate::config::credentials::Credential;
use crate::shards::Entry;

/// How long a failed token request answers for its key: the requests
/// that waited on it, and those arriving meanwhile, share its outcome
/// instead of each asking the authorization server again.
const FAILURE_MEMORY: Duration = Duration::from_secs(1);

/// A slot whose token expired this long ago (and that nobody is using)
/// goes at the next sweep of its shard.
const STALE: Duration = Duration::from_secs(60);

/// One cached token and the lock that makes its renewal single-flight.
pub(super) struct Slot {
    pub(super) token: Mutex<Option<Arc<Token>>>,
    pub(super) flight: tokio::sync::Mutex<()>,
    pub(super) hits: Counter,
    /// The last token request's failure and when it came.
    pub(super) failed: Mutex<Option<(Instant, CredentialError)>>,
    /// When an upstream 401 last dropped its token.
    pub(super) dropped: Mutex<Option<Instant>>,
}

impl Slot {
    /// The token, if it is from this declaration and not yet due.
    pub(super) fn fresh(&self, cred: &Credential) -> Option<Arc<Token>> {
        let t = self.token.lock().ok()?.clone()?;
        (t.fingerprint == cred.fingerprint && Instant::now() < t.refresh_at).then_some(t)
    }

    /// The token, if it is from this declaration and not yet expired.
    pub(super) fn valid(&self, cred: &Credential) -> Option<Arc<Token>> {
        let t = self.token.lock().ok()?.clone()?;
        (t.fingerprint == cred.fingerprint && Instant::now() < t.expires_at).then_some(t)
    }

    /// Whether an upstream 401 dropped its token within
    /// [`DROP_INTERVAL`](super::DROP_INTERVAL): the next token must be a
    /// new one, not a copy another replica shared of the refused one.
    pub(super) fn dropped_recently(&self) -> bool {
        (self.dropped.lock().ok())
            .and_then(|d| *d)
            .is_some_and(|at| at.elapsed() < super::DROP_INTERVAL)
    }

    pub(super) fn set(&self, t: Option<Arc<Token>>) {
        if let Ok(mut g) = self.token.lock() {
            *g = t;
        }
    }

    /// The failure of a token request within [`FAILURE_MEMORY`], if any.
    pub(super) fn recent_failure(&self) -> Option<CredentialError> {
        let g = self.failed.lock().ok()?;
        let (at, e) = g.as_ref()?;
        (at.elapsed() < FAILURE_MEMORY).then(|| e.clone())
    }

    pub(super) fn set_failure(&self, f: Option<CredentialError>) {
        if let Ok(mut g) = self.failed.lock() {
            *g = f.map(|e| (Instant::now(), e));
        }
    }
}

/// A sweep keeps a slot whose token is usable or expired less than
/// [`STALE`] ago.
impl Entry for Slot {
    fn keep(&self, now: Instant) -> bool {
        let token = self.token.lock().ok().and_then(|g| g.clone());
        token.is_some_and(|t| t.expires_at + STALE > now)
    }
}

/// A failed token request's answer: a cached token that has not yet
/// expired while the server is unavailable (it was only due for renewal),
/// else the error.
pub(super) fn failed(
    cred: &Credential,
    slot: &Slot,
    e: CredentialError,
) -> Result<Arc<Token>, CredentialError> {
    match (&e, slot.valid(cred)) {
        (CredentialError::Unavailable { .. }, Some(t)) => {
            tracing::warn!(credential = %cred.name, "authorization server unavailable; serving the cached token until it expires");
            Ok(t)
        }
        _ => Err(e),
    }
}
