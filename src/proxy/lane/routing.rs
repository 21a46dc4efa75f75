//! The config and route a connection's requests run under. A connection's
//! requests mostly go to one route: looking the config up in its watch
//! (a read lock and an `Arc` clone) and the route in the config's map (a
//! hash of the name) for each cost about 150 instructions a request
//! (callgrind). Here the connection keeps both and asks the watch only
//! whether the config changed (its version, one atomic load): a request
//! still runs under the config current when its head was read.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::{Config, Route};

/// See the module docs.
pub(super) struct Routing {
    rx: watch::Receiver<Arc<Config>>,
    cfg: Arc<Config>,
    /// The route the last request went to, under `cfg`.
    last: Option<Arc<Route>>,
}

impl Routing {
    pub fn new(config: &watch::Receiver<Arc<Config>>) -> Self {
        let mut rx = config.clone();
        let cfg = rx.borrow_and_update().clone();
        Self {
            rx,
            cfg,
            last: None,
        }
    }

    /// The current config.
    pub fn config(&mut self) -> &Arc<Config> {
        if !matches!(self.rx.has_changed(), Ok(false)) {
            self.cfg = self.rx.borrow_and_update().clone();
            self.last = None;
        }
        &self.cfg
    }

    /// Route `name` of the config [`Routing::config`] returned last.
    pub fn route(&mut self, name: &str) -> Option<&Arc<Route>> {
        if (self.last.as_ref()).is_none_or(|r| *r.name != *name) {
            self.last = Some(self.cfg.route(name)?.clone());
        }
        self.last.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(upstream: &str) -> Arc<Config> {
        let route = format!("upstream = \"{upstream}\"\ninbound_auth = \"none\"\n");
        let cfg = crate::config::check_texts("", &[("a", &route), ("b", &route)]);
        Arc::new(cfg.unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn a_connection_sees_a_new_config_at_its_next_request() {
        let (tx, rx) = watch::channel(config("http://127.0.0.1:1/"));
        let mut r = Routing::new(&rx);
        r.config();
        let a = r.route("a").cloned();
        assert!(a.is_some_and(|a| Arc::ptr_eq(&a, &rx.borrow().routes["a"])));
        r.config();
        assert!(
            r.route("b").is_some_and(|b| &*b.name == "b"),
            "another route"
        );
        assert!(r.route("c").is_none());
        let _ = tx.send(config("http://127.0.0.1:2/"));
        let cfg = r.config().clone();
        assert!(Arc::ptr_eq(&cfg, &rx.borrow()), "the new config");
        let b = r.route("b").cloned();
        assert!(
            b.is_some_and(|b| Arc::ptr_eq(&b, &cfg.routes["b"])),
            "its route"
        );
    }
}
