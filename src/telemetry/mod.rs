//! Spans over OTLP/HTTP (`[tracing] otlp_endpoint`): for each request
//! through a route, a server span (`request`) with the session lookup and
//! the upstream exchange as its children, in the caller's trace when it
//! sent a `traceparent` (the upstream's parent is headgate's exchange
//! span). On an MCP route the request span follows OpenTelemetry's MCP
//! conventions, so it joins the traces of agent frameworks and AI
//! gateways without a mapping: named `{mcp.method.name} {gen_ai.tool.name}`
//! (or the method alone), with `mcp.method.name`, `gen_ai.tool.name`,
//! `jsonrpc.request.id`, `mcp.protocol.version`, `mcp.session.id` and
//! `error.type` on failure. Also: route, status, headgate's error code,
//! the session as a keyed hash, and each credential fetch's credential
//! names and outcome; never a header value (beyond those MCP ones),
//! variable or token.
//!
//! Spans are built when the request ends, from the times it recorded, and
//! handed to the SDK's batch processor, which exports them from its own
//! thread: exporting never slows or fails a request (a full queue drops).

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};

use crate::net::tracecontext::Trace;

/// How often queued spans are sent.
const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// The span exporter of a running proxy.
pub struct Exporter {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// One finished request, as its spans describe it.
pub struct Finished<'a> {
    /// Its trace and span ids.
    pub trace: Trace,
    /// Route name.
    pub route: &'a str,
    /// MCP method and tool, when known.
    pub method: Option<&'a str>,
    /// MCP tool, when known.
    pub tool: Option<&'a str>,
    /// The JSON-RPC id, as JSON text.
    pub rpc_id: Option<String>,
    /// `MCP-Protocol-Version` and `Mcp-Session-Id`, when sent.
    pub mcp_headers: Option<&'a crate::mcp::TraceHeaders>,
    /// The credentials the request obtained or tried, comma-separated.
    pub credential_names: String,
    /// Outcome status.
    pub status: u16,
    /// headgate's error code (`""` when none).
    pub code: &'a str,
    /// The session as a keyed hash (`""` when no key was found).
    pub session: &'a str,
    /// When the request arrived and when it ended.
    pub during: (SystemTime, SystemTime),
    /// The session lookup, if it ran.
    pub lookup: Option<(SystemTime, SystemTime)>,
    /// Obtaining the route's credentials, if it ran.
    pub credentials: Option<(SystemTime, SystemTime)>,
    /// The upstream exchange, if it ran.
    pub upstream: Option<(SystemTime, SystemTime)>,
}

impl Exporter {
    /// Exports to `endpoint` (the OTLP/HTTP traces URL, e.g.
    /// `http://collector:4318/v1/traces`). Must be called inside a tokio
    /// runtime's context is not needed: the processor has its own thread.
    pub fn start(endpoint: &str) -> Result<Self, String> {
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("OTLP exporter: {e}"))?;
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(EXPORT_EVERY)
            .with_max_queue_size(8192)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(Resource::builder().with_service_name("headgate").build())
            .build();
        let tracer = provider.tracer("headgate");
        Ok(Self { provider, tracer })
    }

    /// Hands a finished request's spans to the batch processor.
    pub fn finished(&self, f: &Finished<'_>) {
        let trace_id = TraceId::from(f.trace.trace_id);
        let parent = match f.trace.parent {
            Some(p) => Context::new().with_remote_span_context(remote(trace_id, p)),
            None => Context::new(),
        };
        let attrs = request_attributes(f);
        let name = match (f.method, f.tool) {
            (Some(m), Some(t)) => format!("{m} {t}"),
            (Some(m), None) => m.to_string(),
            _ => "request".to_string(),
        };
        let mut request = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_trace_id(trace_id)
            .with_span_id(SpanId::from(f.trace.span))
            .with_start_time(f.during.0)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, &parent);
        if f.status >= 500 {
            request.set_status(Status::error(f.code.to_string()));
        }
        let inside = Context::new().with_remote_span_context(remote(trace_id, f.trace.span));
        if let Some((start, end)) = f.lookup {
            self.child(
                "session lookup",
                SpanKind::Internal,
                None,
                (start, end),
                &inside,
            );
        }
        if let Some((start, end)) = f.credentials {
            let outcome = match f.code {
                c if c.starts_with("credentials.") => c,
                _ => "ok",
            };
            let attrs = vec![
                KeyValue::new("headgate.credential.names", f.credential_names.clone()),
                KeyValue::new("headgate.credential.outcome", outcome.to_string()),
            ];
            self.child_with(
                "credential fetch",
                SpanKind::Internal,
                None,
                (start, end),
                &inside,
                attrs,
            );
        }
        if let Some((start, end)) = f.upstream {
            let hop = Some(SpanId::from(f.trace.hop));
            self.child("upstream", SpanKind::Client, hop, (start, end), &inside);
        }
        request.end_with_timestamp(f.during.1);
    }

    fn child(
        &self,
        name: &'static str,
        kind: SpanKind,
        id: Option<SpanId>,
        during: (SystemTime, SystemTime),
        parent: &Context,
    ) {
        self.child_with(name, kind, id, during, parent, Vec::new());
    }

    fn child_with(
        &self,
        name: &'static str,
        kind: SpanKind,
        id: Option<SpanId>,
        (start, end): (SystemTime, SystemTime),
        parent: &Context,
        attrs: Vec<KeyValue>,
    ) {
        let mut b = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_start_time(start)
            .with_attributes(attrs);
        if let Some(id) = id {
            b = b.with_span_id(id);
        }
        b.start_with_context(&self.tracer, parent)
            .end_with_timestamp(end);
    }

    /// A credential obtained outside any request (`prefetch`): a span of
    /// its own trace, with the credential's name, what started it and the
    /// outcome (`ok`, `rejected`, `unavailable`); never the token.
    pub fn credential_fetch(
        &self,
        name: &str,
        outcome: &str,
        (start, end): (SystemTime, SystemTime),
    ) {
        let attrs = vec![
            KeyValue::new("headgate.credential.names", name.to_string()),
            KeyValue::new("headgate.credential.outcome", outcome.to_string()),
            KeyValue::new("headgate.credential.trigger", "prefetch"),
        ];
        self.tracer
            .span_builder("credential fetch")
            .with_kind(SpanKind::Internal)
            .with_start_time(start)
            .with_attributes(attrs)
            .start(&self.tracer)
            .end_with_timestamp(end);
    }

    /// Sends what is queued (on shutdown).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }
}

/// The request span's attributes: headgate's own, then OpenTelemetry's
/// MCP and error conventions where they apply.
fn request_attributes(f: &Finished<'_>) -> Vec<KeyValue> {
    let mut attrs = vec![
        KeyValue::new("headgate.route", f.route.to_string()),
        KeyValue::new("http.response.status_code", i64::from(f.status)),
    ];
    let failed = f.status >= 400 || !f.code.is_empty();
    let error_type = match f.code {
        "" => f.status.to_string(),
        c => c.to_string(),
    };
    let headers = f.mcp_headers;
    let optional = [
        ("mcp.method.name", f.method.map(str::to_string)),
        ("gen_ai.tool.name", f.tool.map(str::to_string)),
        ("jsonrpc.request.id", f.rpc_id.clone()),
        (
            "mcp.protocol.version",
            headers.and_then(|h| h.protocol_version.clone()),
        ),
        ("mcp.session.id", headers.and_then(|h| h.session_id.clone())),
        ("error.type", failed.then_some(error_type)),
        (
            "headgate.error.code",
            Some(f.code).filter(|c| !c.is_empty()).map(str::to_string),
        ),
        (
            "headgate.session",
            Some(f.session)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        ),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            attrs.push(KeyValue::new(k, v));
        }
    }
    attrs
}

fn remote(trace: TraceId, span: u64) -> SpanContext {
    SpanContext::new(
        trace,
        SpanId::from(span),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    )
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}
