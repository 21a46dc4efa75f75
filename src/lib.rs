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
// The server's modules are internal: their docs are read with
// `cargo doc --document-private-items`, where links between them resolve.
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod audit;
pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod console;
pub(crate) mod credentials;
pub(crate) mod hex;
pub(crate) mod mcp;
pub(crate) mod metrics;
pub(crate) mod net;
pub(crate) mod platform;
pub(crate) mod proxy;
pub(crate) mod secret;
pub(crate) mod session;
pub(crate) mod shards;
pub(crate) mod telemetry;
pub use headgate_template as template;

pub use template::{ErrorKind, HeaderTemplate, Scope, TemplateError, Vars};

/// The server's insides, for the `headgate` binary, the integration tests,
/// the fuzz targets and the examples: not an API, nothing here is promised
/// to stay. The one library interface is [`template`].
#[doc(hidden)]
pub mod internals {
    /// The command line.
    pub mod cli {
        pub use crate::cli::*;
    }
    /// What the config files declare.
    pub mod config {
        pub use crate::config::*;
    }
    /// Metrics.
    pub mod metrics {
        pub use crate::metrics::*;
    }
    /// MCP awareness.
    pub mod mcp {
        pub use crate::mcp::*;
    }
    /// Bytes on the wire.
    pub mod net {
        pub use crate::net::*;
    }
    /// Vendor specifics.
    pub mod platform {
        pub use crate::platform::*;
    }
    /// The server.
    pub mod proxy {
        pub use crate::proxy::*;
    }
    /// Sessions and their stores.
    pub mod session {
        pub use crate::session::*;
    }
}
