//! Pinned tool definitions in Redis, per route: a hash of the pinned
//! definitions (`<prefix>pins:{<route>}:pinned`), one of the held ones
//! (`…:held`) and a flag for the first complete listing (`…:sealed`).
//! The route in braces is a hash tag: a route's keys share one slot, so
//! the approval script may touch them together on a cluster too. They do
//! not expire: pins are the route's, not a call's.

use std::collections::BTreeMap;

use super::*;
use crate::session::store::{PinTable, PinWrites};

/// Moves a held definition to the pinned ones: 1 moved, 0 none held.
const APPROVE: &str = r"
local def = redis.call('HGET', KEYS[2], ARGV[1])
if not def then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], def)
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
";

impl RedisStore {
    fn pin_keys(&self, route: &str) -> [String; 3] {
        let base = format!("{}pins:{{{route}}}", self.inner.prefix);
        ["pinned", "held", "sealed"].map(|k| format!("{base}:{k}"))
    }

    /// [`crate::session::Store::pins`]: one round trip.
    pub async fn pins(&self, route: &str) -> Result<PinTable, SessionError> {
        let [pinned, held, sealed] = self.pin_keys(route);
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(&pinned);
        pipe.cmd("HGETALL").arg(&held);
        pipe.cmd("EXISTS").arg(&sealed);
        let mut conn = self.inner.link.conn().await?;
        let (pinned, held, sealed): (BTreeMap<String, String>, BTreeMap<String, String>, bool) =
            self.io(pipe.query_async(&mut conn)).await?;
        Ok(PinTable {
            pinned,
            held,
            sealed,
        })
    }

    /// [`crate::session::Store::record_pins`]: `HSETNX` for each first
    /// definition, in one round trip.
    pub async fn record_pins(&self, route: &str, w: &PinWrites) -> Result<(), SessionError> {
        let [pinned, held, sealed] = self.pin_keys(route);
        let mut pipe = redis::pipe();
        for (name, def) in &w.pinned {
            pipe.cmd("HSETNX").arg(&pinned).arg(name).arg(def).ignore();
        }
        for (name, def) in &w.held {
            pipe.cmd("HSET").arg(&held).arg(name).arg(def).ignore();
        }
        if !w.cleared.is_empty() {
            pipe.cmd("HDEL").arg(&held).arg(&w.cleared).ignore();
        }
        if w.seal {
            pipe.cmd("SET").arg(&sealed).arg(1).ignore();
        }
        let mut conn = self.inner.link.conn().await?;
        self.io(pipe.query_async::<()>(&mut conn)).await
    }

    /// [`crate::session::Store::approve_pin`]: one script.
    pub async fn approve_pin(&self, route: &str, name: &str) -> Result<bool, SessionError> {
        let [pinned, held, _] = self.pin_keys(route);
        let mut conn = self.inner.link.conn().await?;
        let script = redis::Script::new(APPROVE);
        let mut call = script.key(pinned);
        call.key(held).arg(name);
        let moved: i64 = self.io(call.invoke_async(&mut conn)).await?;
        Ok(moved == 1)
    }
}
