//! Outbound and low-level HTTP: the upstream connection pool, the general
//! client for `https://` upstreams and platform APIs, streaming bodies with
//! an idle timeout, hop-by-hop header hygiene, and response helpers.
//!
//! Nothing here knows sessions, routes or templates: it moves bytes.

pub mod body;
pub mod cidr;
pub mod client;
pub mod drain;
pub mod h1;
pub mod head;
pub mod headers;
pub mod host;
pub mod limits;
pub mod listen;
pub mod response;
pub mod throttle;
pub mod tls;
pub mod tracecontext;
pub mod upstream;

use std::time::Duration;

/// An idle pooled connection is not reused after this long: upstreams
/// commonly close idle connections sooner (both pools use it).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per upstream; more are closed when they come back.
pub const POOL_MAX_IDLE: usize = 256;
