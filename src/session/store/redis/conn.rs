//! The connection commands go over, for each `[store] mode`: one
//! endpoint's connection manager (`single`), a cluster connection that
//! follows MOVED/ASK and failovers itself (`cluster`), or a manager to the
//! master the sentinels name, replaced when a failover moves it
//! (`sentinel`).
//!
//! The current connection sits in a `watch` channel: a command clones it
//! out (no lock held across the command), and a background task fills it
//! — at once for `single`, once the first node answers for `cluster` (a
//! Redis down at start is retried, never fatal), and again after each
//! failover for `sentinel`, woken by a command that failed as a moved
//! master fails (refused, dropped, `READONLY`).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::{Notify, watch};

use crate::config::{RedisSettings, RedisTopology, redact_userinfo};
use crate::session::SessionError;

/// One connection, whatever the topology.
#[derive(Clone)]
pub(super) enum Conn {
    /// One endpoint (`single`, or the sentinels' current master).
    Manager(ConnectionManager),
    /// A cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The store's link to Redis: the current connection, and how to find
/// the server to subscribe on.
pub(super) struct Link {
    current: watch::Receiver<Option<Conn>>,
    /// How long a command waits for a first connection.
    timeout: Duration,
    /// Wakes the sentinel follower to ask where the master is now.
    moved: Arc<Notify>,
    /// Where the invalidation subscription connects.
    pub(super) subscriber: Subscriber,
}

impl Link {
    /// The link `settings` asks for; its background task (if any) ends
    /// when the link is dropped.
    pub(super) fn open(settings: &RedisSettings) -> Result<Self, SessionError> {
        let moved = Arc::new(Notify::new());
        let (tx, current) = watch::channel(None);
        let subscriber = match &settings.topology {
            RedisTopology::Single => {
                let client = super::link::client(&settings.url, settings)?;
                let conn =
                    ConnectionManager::new_lazy_with_config(client.clone(), manager(settings))
                        .map_err(super::unavailable)?;
                let _ = tx.send(Some(Conn::Manager(conn)));
                Subscriber::Fixed(Box::new(client))
            }
            RedisTopology::Cluster(nodes) => {
                let clients = (nodes.iter())
                    .map(|n| super::link::client(n, settings))
                    .collect::<Result<Vec<_>, _>>()?;
                tokio::spawn(join_cluster(cluster_client(nodes, settings)?, tx));
                Subscriber::Nodes(clients)
            }
            RedisTopology::Sentinel { .. } => {
                let (to_master, found) = watch::channel(None);
                tokio::spawn(follow_master(
                    settings.clone(),
                    tx,
                    to_master,
                    moved.clone(),
                ));
                Subscriber::Master(found)
            }
        };
        Ok(Self {
            current,
            timeout: settings.timeout,
            moved,
            subscriber,
        })
    }

    /// The connection to send a command on; before the first one is made
    /// (a cluster's first node, the sentinels' first answer), waits for
    /// it up to the store's `timeout`.
    pub(super) async fn conn(&self) -> Result<Conn, SessionError> {
        if let Some(c) = self.current.borrow().clone() {
            return Ok(c);
        }
        let mut rx = self.current.clone();
        let first = tokio::time::timeout(self.timeout, rx.wait_for(Option::is_some)).await;
        match first {
            Ok(Ok(c)) => Ok(c.clone().ok_or_else(not_yet)?),
            _ => Err(not_yet()),
        }
    }

    /// Notes a failed command: one that failed as a moved master fails
    /// wakes the sentinel follower (elsewhere it costs nothing).
    pub(super) fn failed(&self, e: &redis::RedisError) {
        let moved = e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
        if moved {
            self.moved.notify_one();
        }
    }
}

fn not_yet() -> SessionError {
    super::unavailable("not connected yet (no node has answered within the store's timeout)")
}

/// Where the invalidation subscription connects: the pub/sub of one
/// server of the topology (a cluster's `PUBLISH` reaches every node; a
/// master's reaches its replicas).
pub(super) enum Subscriber {
    /// The one endpoint.
    Fixed(Box<redis::Client>),
    /// A cluster's seed nodes, tried in turn.
    Nodes(Vec<redis::Client>),
    /// The sentinels' current master.
    Master(watch::Receiver<Option<redis::Client>>),
}

impl Subscriber {
    /// The client for attempt number `attempt`.
    pub(super) fn client(&self, attempt: usize) -> Option<redis::Client> {
        match self {
            Subscriber::Fixed(c) => Some((**c).clone()),
            Subscriber::Nodes(all) => all.get(attempt % all.len().max(1)).cloned(),
            Subscriber::Master(m) => m.borrow().clone(),
        }
    }
}

/// How often the sentinels are asked where the master is when no
/// command has failed.
const LOOK_AGAIN: Duration = Duration::from_secs(2);

fn manager(settings: &RedisSettings) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.timeout))
        .set_response_timeout(Some(settings.timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
}

fn cluster_client(
    nodes: &[String],
    settings: &RedisSettings,
) -> Result<redis::cluster::ClusterClient, SessionError> {
    let mut b = redis::cluster::ClusterClientBuilder::new(nodes.iter().map(String::as_str))
        .connection_timeout(settings.timeout)
        .response_timeout(settings.timeout)
        .retries(3)
        .min_retry_wait(20)
        .max_retry_wait(500);
    if settings.tls_anywhere() {
        b = b.certs(super::link::certificates(settings));
    }
    b.build().map_err(|e| {
        let shown: Vec<String> = nodes.iter().map(|n| redact_userinfo(n)).collect();
        SessionError::Unavailable(format!(
            "store nodes {shown:?} are not a Redis cluster's addresses: {e}"
        ))
    })
}

/// Connects to the cluster once a node answers, retrying with backoff.
async fn join_cluster(client: redis::cluster::ClusterClient, tx: watch::Sender<Option<Conn>>) {
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        match client.get_async_connection().await {
            Ok(c) => {
                let _ = tx.send(Some(Conn::Cluster(c)));
                return;
            }
            Err(e) => {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!(
                        code = "store.unavailable",
                        "redis cluster not reachable yet: {e}; retrying"
                    );
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Asks the sentinels for the master, connects to it, and asks again
/// whenever a command failed as a moved master fails; until the store is
/// dropped.
async fn follow_master(
    settings: RedisSettings,
    tx: watch::Sender<Option<Conn>>,
    to_master: watch::Sender<Option<redis::Client>>,
    moved: Arc<Notify>,
) {
    let mut sentinels = match super::link::sentinel_client(&settings) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(code = "store.unavailable", "{e}");
            return;
        }
    };
    let mut at: Option<String> = None;
    let mut backoff = Duration::from_millis(100);
    while !tx.is_closed() {
        match sentinels.async_get_client().await {
            Ok(client) => {
                backoff = Duration::from_millis(100);
                let addr = client.get_connection_info().addr().to_string();
                if at.as_deref() != Some(&addr) {
                    match ConnectionManager::new_lazy_with_config(
                        client.clone(),
                        manager(&settings),
                    ) {
                        Ok(conn) => {
                            if at.is_some() {
                                tracing::warn!(master = %addr, "redis master moved (sentinel failover); following it");
                            }
                            let _ = tx.send(Some(Conn::Manager(conn)));
                            let _ = to_master.send(Some(client));
                            at = Some(addr);
                        }
                        Err(e) => {
                            tracing::warn!(code = "store.unavailable", "redis master {addr}: {e}")
                        }
                    }
                }
                // Asked again when a command failed as a moved master
                // fails, and every few seconds anyway (a failover while
                // idle); commands in flight fail together: one question.
                tokio::select! {
                    _ = moved.notified() => {}
                    _ = tokio::time::sleep(LOOK_AGAIN) => {}
                    _ = tx.closed() => return,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                tracing::warn!(
                    code = "store.unavailable",
                    "the sentinels name no reachable master `{}` yet: {e}",
                    master_name(&settings)
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn master_name(settings: &RedisSettings) -> &str {
    match &settings.topology {
        RedisTopology::Sentinel { master_name, .. } => master_name,
        _ => "",
    }
}
