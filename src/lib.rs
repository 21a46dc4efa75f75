//! headgate: per-session header injection for voice-AI tool and MCP calls.
//!
//! The template language is its own crate, `headgate-template`
//! (re-exported here as [`template`]): compile a header template once,
//! render it per request from that session's variables.
//!
//! ```
//! let t = headgate::HeaderTemplate::compile("Bearer << call.metadata.token >>")?;
//! let vars = serde_json::json!({"call": {"metadata": {"token": "tok-1"}}});
//! let value: http::HeaderValue = t.render(&vars)?;
//! assert_eq!(value, "Bearer tok-1");
//! # Ok::<(), headgate::TemplateError>(())
//! ```
#![deny(unsafe_code)] // one audited exception: `net::limits::raise_fd_limit`
#![deny(missing_docs)]

pub mod cli;
pub mod config;
pub mod console;
pub mod credentials;
pub mod hex;
pub mod mcp;
pub mod metrics;
pub mod net;
pub mod platform;
pub mod proxy;
pub mod secret;
pub mod session;
pub mod shards;
pub mod telemetry;
pub use headgate_template as template;

pub use template::{ErrorKind, HeaderTemplate, Scope, TemplateError, Vars};
