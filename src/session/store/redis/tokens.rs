//! Tokens shared between replicas (one token request across replicas,
//! docs/operations.md "Several replicas"), only when sessions are sealed at rest
//! (`encryption_keys_env`): `<prefix>token:<name>` holds the token sealed
//! like a session value (its key as associated data), expiring with it.
//! Without keys nothing is shared: headgate never writes a token to
//! Redis in clear.

use super::*;

impl RedisStore {
    /// Whether tokens are shared (sessions sealed at rest).
    pub fn shares_tokens(&self) -> bool {
        self.inner.sealer.is_some()
    }

    fn token_key(&self, name: &str) -> String {
        format!("{}token:{name}", self.inner.prefix)
    }

    /// The shared token `name` (opened) and the milliseconds it has left;
    /// `None` when absent, unreadable or not shared.
    pub async fn shared_token(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>, SessionError> {
        let Some(sealer) = &self.inner.sealer else {
            return Ok(None);
        };
        let key = self.token_key(name);
        let mut conn = self.inner.link.conn().await?;
        let (raw, pttl): (Option<Vec<u8>>, i64) = self
            .io(redis::pipe().get(&key).pttl(&key).query_async(&mut conn))
            .await?;
        let (Some(raw), Ok(left)) = (raw, u64::try_from(pttl)) else {
            return Ok(None);
        };
        match sealer.open(&key, &raw) {
            Opened::Plain(p) => Ok(Some((p, left))),
            Opened::Unreadable => Ok(None),
        }
    }

    /// Shares `plain` as token `name` for `ttl` (nothing when not shared).
    pub async fn share_token(
        &self,
        name: &str,
        plain: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), SessionError> {
        let Some(sealer) = &self.inner.sealer else {
            return Ok(());
        };
        let key = self.token_key(name);
        let sealed = sealer
            .seal(&key, plain)
            .ok_or_else(|| unavailable("the system random source failed; nothing was written"))?;
        let mut conn = self.inner.link.conn().await?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key)
            .arg(sealed)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        self.io(cmd.query_async::<()>(&mut conn)).await
    }

    /// Drops the shared token `name` (an upstream refused it).
    pub async fn drop_shared_token(&self, name: &str) -> Result<(), SessionError> {
        let mut conn = self.inner.link.conn().await?;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.token_key(name));
        self.io(cmd.query_async::<()>(&mut conn)).await
    }
}
