//! What a verified webhook payload asks for, per platform (pure: no I/O).
//!
//! | platform | stores on | purges on |
//! |---|---|---|
//! | vapi | any message with `message.call.id` | `end-of-call-report`, `status-update` with status `ended` |
//! | retell | `call_started` | `call_ended`, `call_analyzed` |
//! | elevenlabs | — | `post_call_transcription`, `post_call_audio`, `call_initiation_failure` |

use serde_json::{Value, json};

use super::{Platform, views};

/// A payload that is not the platform's shape; the message says what is
/// missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

/// What a verified payload asks for.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Store these variables under this id.
    Store(String, Value),
    /// Remove this id.
    Purge(String),
    /// Nothing to do.
    Ignore,
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Interprets a platform payload (pure: no I/O).
pub fn interpret(platform: Platform, payload: &Value) -> Result<Action, PayloadError> {
    let bad = |m: &str| PayloadError(m.to_string());
    match platform {
        Platform::Retell => {
            let event =
                str_at(payload, "/event").ok_or_else(|| bad("Retell webhook without `event`"))?;
            let id = str_at(payload, "/call/call_id")
                .ok_or_else(|| bad("Retell webhook without `call.call_id`"))?;
            Ok(match event {
                "call_ended" | "call_analyzed" => Action::Purge(id.to_string()),
                "call_started" => Action::Store(id.to_string(), json!({ "call": payload["call"] })),
                _ => Action::Ignore,
            })
        }
        Platform::ElevenLabs => {
            let kind =
                str_at(payload, "/type").ok_or_else(|| bad("ElevenLabs webhook without `type`"))?;
            let id = str_at(payload, "/data/conversation_id");
            Ok(match (kind, id) {
                (
                    "post_call_transcription" | "post_call_audio" | "call_initiation_failure",
                    Some(id),
                ) => Action::Purge(id.to_string()),
                (_, None) if kind.starts_with("post_call") => {
                    return Err(bad("ElevenLabs webhook without `data.conversation_id`"));
                }
                _ => Action::Ignore,
            })
        }
        // LiveKit and generic webhooks speak Vapi's server-message shape.
        Platform::Vapi | Platform::LiveKit | Platform::Generic => {
            let msg = payload
                .get("message")
                .ok_or_else(|| bad("Vapi server message without `message`"))?;
            let kind = str_at(msg, "/type")
                .ok_or_else(|| bad("Vapi server message without `message.type`"))?;
            let Some(id) = str_at(msg, "/call/id") else {
                return Ok(Action::Ignore);
            };
            let ended = kind == "end-of-call-report"
                || (kind == "status-update" && str_at(msg, "/status") == Some("ended"));
            if ended {
                return Ok(Action::Purge(id.to_string()));
            }
            let mut call = msg["call"].clone();
            views::vapi_call(&mut call);
            let mut vars = json!({ "call": call });
            if let Some(c) = msg.get("customer").filter(|c| c.is_object()) {
                vars["customer"] = c.clone();
            }
            Ok(Action::Store(id.to_string(), vars))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpret_payloads() {
        let v = json!({"message": {"type": "status-update", "status": "in-progress", "call": {"id": "c1", "assistantOverrides": {"variableValues": {"token": "t"}}}}});
        match interpret(Platform::Vapi, &v).unwrap() {
            Action::Store(id, vars) => {
                assert_eq!(id, "c1");
                assert_eq!(vars["call"]["metadata"]["token"], "t");
            }
            other => panic!("{other:?}"),
        }
        let ended =
            json!({"message": {"type": "status-update", "status": "ended", "call": {"id": "c1"}}});
        assert_eq!(
            interpret(Platform::Vapi, &ended).unwrap(),
            Action::Purge("c1".into())
        );
        let eocr = json!({"message": {"type": "end-of-call-report", "call": {"id": "c1"}}});
        assert_eq!(
            interpret(Platform::Vapi, &eocr).unwrap(),
            Action::Purge("c1".into())
        );
        assert!(interpret(Platform::Vapi, &json!({"x": 1})).is_err());
        let r = json!({"event": "call_ended", "call": {"call_id": "r1"}});
        assert_eq!(
            interpret(Platform::Retell, &r).unwrap(),
            Action::Purge("r1".into())
        );
        let e = json!({"type": "post_call_transcription", "data": {"conversation_id": "e1"}});
        assert_eq!(
            interpret(Platform::ElevenLabs, &e).unwrap(),
            Action::Purge("e1".into())
        );
    }
}
