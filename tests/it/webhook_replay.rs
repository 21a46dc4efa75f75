//! Webhook replay, as a property: a signed delivery, once accepted, is
//! recognised as replayed however its signature header is re-spelled (hex
//! case, spacing, extra or repeated parameters), as long as the signature
//! still verifies. What the guard remembers is what was signed.

use std::time::Duration;

use headgate::internals::config::check_texts;
use headgate::internals::platform::{sign_elevenlabs, sign_retell, sign_vapi};
use headgate::internals::session::webhooks::{HookOutcome, ReplayGuard, deliver};
use headgate::internals::session::{MemoryStore, Store};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::json;

use crate::support::{RETELL_KEY, WEBHOOK_SECRET, now_secs};

const HOOKS: &str = "[webhooks.vapi]\nsecret_env = \"HG_TEST_WEBHOOK_SECRET\"\n\
    [webhooks.retell]\nsecret_env = \"HG_TEST_RETELL_KEY\"\n\
    [webhooks.elevenlabs]\nsecret_env = \"HG_TEST_WEBHOOK_SECRET\"\n";

/// How a captured signature header may be re-spelled and still verify.
#[derive(Debug, Clone)]
struct Respell {
    upper_hex: bool,
    space_after_comma: bool,
    extra: Option<String>,
}

fn respell() -> impl Strategy<Value = Respell> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::option::of("(x|z|v1|ts)=[0-9a-f]{0,8}"),
    )
        .prop_map(|(upper_hex, space_after_comma, extra)| Respell {
            upper_hex,
            space_after_comma,
            extra,
        })
}

/// `k=v,k=v` with the values' hex in upper case, a space after commas,
/// and a parameter appended, as chosen.
fn apply(sig: &str, r: &Respell) -> String {
    let mut parts: Vec<String> = sig
        .split(',')
        .map(|p| match p.split_once('=') {
            Some((k, v)) if r.upper_hex && k != "t" && k != "v" => {
                format!("{k}={}", v.to_uppercase())
            }
            _ => p.to_string(),
        })
        .collect();
    if let Some(e) = &r.extra {
        parts.push(e.clone());
    }
    parts.join(if r.space_after_comma { ", " } else { "," })
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_respelled_signature_is_still_a_replay(
        token in "[a-z0-9]{1,16}",
        r in respell(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let cfg = check_texts(HOOKS, &[]).unwrap();
        let store = Store::Memory(MemoryStore::new(1000, 1 << 20));
        let guard = ReplayGuard::new(Duration::from_secs(3600));
        let now = now_secs();
        let id = format!("c-{token}");

        let retell = json!({"event": "call_started", "call": {"call_id": id, "metadata": {"token": token}}}).to_string();
        let sig = sign_retell(RETELL_KEY, retell.as_bytes(), now * 1000);
        let eleven = json!({"type": "post_call_transcription", "data": {"conversation_id": id}}).to_string();
        let esig = sign_elevenlabs(WEBHOOK_SECRET, eleven.as_bytes(), now);
        let vapi = json!({"message": {"type": "status-update", "call": {"id": id}}}).to_string();
        let ts = now.to_string();
        let vsig = sign_vapi(WEBHOOK_SECRET, vapi.as_bytes(), &ts);
        let vsig_spelled = if r.upper_hex { vsig.to_uppercase() } else { vsig.clone() };
        let cases = [
            ("retell", retell, vec![("x-retell-signature", sig.clone())], vec![("x-retell-signature", apply(&sig, &r))]),
            ("elevenlabs", eleven, vec![("elevenlabs-signature", esig.clone())], vec![("elevenlabs-signature", apply(&esig, &r))]),
            (
                "vapi",
                vapi,
                vec![("x-signature", vsig.clone()), ("x-timestamp", ts.clone())],
                vec![("x-signature", vsig_spelled), ("x-timestamp", ts.clone())],
            ),
        ];
        for (name, body, first, again) in cases {
            let hook = &cfg.webhooks[name];
            let max = 64 << 10;
            let one = rt.block_on(deliver(hook, &headers(&first), body.as_bytes(), &store, &guard, max));
            prop_assert!(matches!(one, Ok(ref o) if *o != HookOutcome::Replayed), "{name}: {one:?}");
            let two = rt.block_on(deliver(hook, &headers(&again), body.as_bytes(), &store, &guard, max));
            prop_assert!(matches!(two, Ok(HookOutcome::Replayed)), "{name} {again:?}: {two:?}");
        }
    }
}
