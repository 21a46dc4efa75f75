//! What the integration tests share, by kind: a recording [`upstream`],
//! [`config`] directories, headgate started [`inproc`] or as a [`child`]
//! process, a [`redis`] server, and [`wait`]ing.

pub mod child;
pub mod config;
pub mod inproc;
pub mod raw_upstream;
pub mod redis;
pub mod tls;
pub mod upstream;
pub mod wait;

pub use child::*;
pub use config::*;
pub use inproc::*;
pub use raw_upstream::*;
pub use redis::*;
pub use tls::*;
pub use upstream::*;
pub use wait::*;
