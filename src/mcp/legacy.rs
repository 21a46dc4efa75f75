//! The legacy HTTP+SSE transport (MCP 2024-11-05): a client opens a GET
//! event stream, learns from its `endpoint` event where to POST, and reads
//! every answer on that stream, never on the POST (which the server
//! answers 202). An error headgate answers itself (a denied tool) must
//! therefore go down the client's stream, or the client waits forever.
//!
//! A filtered stream registers itself here under its route, its headgate
//! session key and the upstream's session id from the `endpoint` event;
//! a POST that carries that id (`session_id` or `sessionId` in its query)
//! under the same route and key finds it. The registry is one map for the
//! process (the GET and the POST may land on different workers), locked
//! only to insert, look up and remove, never across an await.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Streams registered at once; past it a new stream is not registered
/// (its POSTs' errors are then answered on the POST).
const MAX_STREAMS: usize = 10_000;

/// Events queued for one stream before further ones are dropped.
const QUEUE: usize = 16;

/// Which stream: route, headgate session key, upstream session id.
pub type StreamKey = (&'static str, String, String);

fn registry() -> &'static Mutex<HashMap<StreamKey, mpsc::Sender<Bytes>>> {
    static R: OnceLock<Mutex<HashMap<StreamKey, mpsc::Sender<Bytes>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// A stream's place in the registry: the events sent to it, and its entry
/// removed when dropped.
pub struct Registered {
    key: StreamKey,
    /// Events to write into the stream.
    pub events: mpsc::Receiver<Bytes>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&self.key);
    }
}

/// Registers the stream `key`; `None` when the registry is full.
pub fn register(key: StreamKey) -> Option<Registered> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= MAX_STREAMS && !map.contains_key(&key) {
        return None;
    }
    map.insert(key.clone(), tx);
    Some(Registered { key, events: rx })
}

/// Sends the JSON-RPC message `json` down stream `key` as a `message`
/// event; false if no such stream is open (or its queue is full).
pub fn send(key: &StreamKey, json: &str) -> bool {
    let tx = {
        let map = registry().lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).cloned()
    };
    let event = Bytes::from(format!("event: message\ndata: {json}\n\n"));
    tx.is_some_and(|tx| tx.try_send(event).is_ok())
}

/// The upstream session id a legacy POST names in its query, or an
/// `endpoint` event's URL names (`session_id=`, the Python SDK's, or
/// `sessionId=`, the TypeScript SDK's).
pub fn session_id(query_or_url: &str) -> Option<&str> {
    let query = query_or_url
        .split_once('?')
        .map_or(query_or_url, |(_, q)| q);
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "session_id" || k == "sessionId")
            .then_some(v)
            .filter(|v| !v.is_empty() && v.len() <= 256)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_stream_gets_what_is_sent_to_its_key_only() {
        let key: StreamKey = ("r", "call-1".into(), "abc".into());
        let mut reg = register(key.clone()).unwrap();
        let other: StreamKey = ("r", "call-2".into(), "abc".into());
        assert!(!send(&other, "{}"), "another call's key reached the stream");
        assert!(send(&key, r#"{"id":1}"#));
        let got = reg.events.try_recv().unwrap();
        assert_eq!(&got[..], b"event: message\ndata: {\"id\":1}\n\n");
        drop(reg);
        assert!(!send(&key, "{}"), "a closed stream is still registered");
    }

    #[test]
    fn session_ids_from_either_sdk() {
        assert_eq!(session_id("/messages/?session_id=ab12"), Some("ab12"));
        assert_eq!(session_id("sessionId=x-1&a=b"), Some("x-1"));
        assert_eq!(session_id("/message"), None);
        assert_eq!(session_id("session_id="), None);
    }
}
