//! The proxy: the server side of headgate. [`app`] starts and stops it,
//! [`server`] accepts connections and hands each request to a door
//! ([`doors`]), and a route's door runs one [`exchange`] per request.
//!
//! Nothing outside this folder imports it, except the binary's CLI.

mod app;
pub mod doors;
pub mod exchange;
mod forward;
mod server;
mod spread;

pub use app::{App, Running, ServeError, ServeOptions, serve, start};
pub use exchange::error;
/// How the forwarding core writes an upstream request's header lines (for
/// the differential fuzz target, which parses what the upstream would).
#[doc(hidden)]
pub use exchange::{Peer, RawLines, put_headers};
/// The request phases that depend on nothing but the route and the request
/// (public for the fuzz targets, the CLI and embedding).
pub use exchange::{RequestView, SessionKey, put_rules, render_rules, screen, session_key};
