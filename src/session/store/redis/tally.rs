//! Budget counters in Redis (`[mcp] budgets`): one hash per session,
//! `<prefix>budget:<id>`, a field per glob, living as long as the session.

use super::*;

impl RedisStore {
    pub(super) fn budget_key(&self, id: &str) -> String {
        self.keyed("budget", id)
    }

    /// [`crate::session::Store::spend`]: one `HINCRBY` and one `PEXPIRE`, in one
    /// round trip.
    pub async fn spend(&self, sid: &str, name: &str, ttl: Duration) -> Result<u64, SessionError> {
        let key = self.budget_key(sid);
        let ttl_ms = ttl.as_millis().clamp(1, u64::MAX as u128) as u64;
        let mut conn = self.inner.link.conn().await?;
        let mut pipe = redis::pipe();
        pipe.cmd("HINCRBY").arg(&key).arg(name).arg(1);
        pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
        let (n,): (u64,) = self.io(pipe.query_async(&mut conn)).await?;
        Ok(n)
    }

    /// [`crate::session::Store::spent`]: one `HGETALL`.
    pub async fn spent(
        &self,
        sid: &str,
    ) -> Result<std::collections::BTreeMap<String, u64>, SessionError> {
        let mut conn = self.inner.link.conn().await?;
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.budget_key(sid));
        self.io(cmd.query_async(&mut conn)).await
    }
}
