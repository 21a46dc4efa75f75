//! The integration tests: one binary, a module per topic, sharing
//! [`support`]. Every test drives the real interfaces (HTTP on loopback,
//! the `headgate` binary, Redis, the platforms' SDKs).

mod support;

mod admin_guard;
mod cli;
mod conformance;
mod connections;
mod console;
mod credentials;
mod credentials_faults;
mod credentials_keys;
mod credentials_life;
mod credentials_replicas;
mod faults;
mod governance;
mod hardening;
mod hostile;
mod id_jag;
mod injection;
mod interop;
mod mcp;
mod mcp_filter;
mod mcp_modern;
mod operator;
mod pins;
mod platforms;
mod proxy;
mod reload;
mod replicas;
mod sessions;
mod smuggling;
mod store;
mod store_modes;
mod store_tls;
mod tls;
mod tls_core;
mod upstream_faults;
mod upstream_pool;
mod webhook_replay;
