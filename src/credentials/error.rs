//! Why a credential could not be had. Messages name the credential and
//! the authorization server's registered error code, never its raw body, a
//! token or a secret.

/// A credential that could not be obtained.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    /// Unreachable, 5xx, timed out or malformed, and no valid token cached.
    #[error(
        "credential `{name}` could not be obtained ({reason}); the call can be retried shortly"
    )]
    Unavailable {
        /// `NAME` of `[credentials.NAME]`.
        name: String,
        /// What went wrong, in headgate's words.
        reason: String,
    },
    /// The authorization server refused the grant or the client.
    #[error(
        "credential `{name}` was refused by the authorization server ({reason}): the caller must link their account again"
    )]
    Rejected {
        /// `NAME` of `[credentials.NAME]`.
        name: String,
        /// The OAuth error code (`invalid_grant`, …) or what was missing.
        reason: String,
    },
}

impl CredentialError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            CredentialError::Unavailable { .. } => "credentials.unavailable",
            CredentialError::Rejected { .. } => "credentials.rejected",
        }
    }

    pub(crate) fn unavailable(name: &str, reason: impl Into<String>) -> Self {
        CredentialError::Unavailable {
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn rejected(name: &str, reason: impl Into<String>) -> Self {
        CredentialError::Rejected {
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    /// The metric outcome.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            CredentialError::Unavailable { .. } => "unavailable",
            CredentialError::Rejected { .. } => "rejected",
        }
    }
}
