//! The label sets of headgate's metrics. Labels carry only route names,
//! status codes, error codes, MCP methods and (bounded, escaped) tool
//! names: never a session id, header value or variable.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// `route`, `status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    /// Route name (or `_hooks`, `_none`).
    pub route: String,
    /// HTTP status sent to the client.
    pub status: u16,
}

/// `route`, `code`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteCode {
    /// Route name (or `_none`).
    pub route: String,
    /// Stable error code.
    pub code: String,
}

/// `code`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Code {
    /// Stable error code.
    pub code: String,
}

/// `route`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// Route name.
    pub route: String,
}

/// `outcome`: `hit`, `miss`, `fetch`, `fetch_error`, `waited`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// What happened.
    pub outcome: &'static str,
}

/// `route`, `method`, `tool`, `outcome` of an MCP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct McpLabels {
    /// Route name.
    pub route: String,
    /// A known MCP method, or `other`.
    pub method: &'static str,
    /// The tool (bounded: see [`super::Metrics::mcp_request`]), or `""`.
    pub tool: ClientText,
    /// `ok`, `error` (the upstream answered 4xx/5xx), `denied` (the
    /// route's tool policy), `refused` (any other proxy error).
    pub outcome: &'static str,
}

/// A label value a client chose (an MCP tool name), written escaped as
/// the exposition formats require (`\\`, `\"`, `\n`): `prometheus-client`
/// writes label values as they are, so a name holding `"` or a newline
/// could otherwise end its sample and plant others.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct ClientText(pub String);

impl EncodeLabelValue for ClientText {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        let mut rest = self.0.as_str();
        while let Some(i) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..i])?;
            encoder.write_str(match rest.as_bytes()[i] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[i + 1..];
        }
        encoder.write_str(rest)
    }
}

/// The longest client-chosen text kept as a label value (an MCP tool name
/// is at most 128 characters of `A-Za-z0-9_.-`); a longer one counts as
/// `other`.
pub const MAX_LABEL_BYTES: usize = 128;

/// `credential`, `outcome` of a token request or a signing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialOutcome {
    /// `NAME` of `[credentials.NAME]`.
    pub credential: String,
    /// `ok`, `rejected` (the server refused the grant or client) or
    /// `unavailable` (unreachable, 5xx, timed out, malformed answer).
    pub outcome: &'static str,
}

/// `credential`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabel {
    /// `NAME` of `[credentials.NAME]`.
    pub credential: String,
}

/// `worker`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabel {
    /// The public-listener worker, from 1.
    pub worker: usize,
}

/// `route`, `method`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteMethod {
    /// Route name.
    pub route: String,
    /// A known MCP method, or `other`.
    pub method: &'static str,
}
