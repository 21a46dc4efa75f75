//! Platform variable views: how a platform's call object is exposed to
//! templates.
//!
//! **Vapi**: the Call object has no top-level `metadata`; per-call data set
//! by the backend lives in `assistantOverrides.metadata` and
//! `assistantOverrides.variableValues`. So that `<< call.metadata.token >>`
//! works for Vapi calls, headgate sets `call.metadata` to the merge of, in
//! order (later wins): any existing `call.metadata` object,
//! `call.assistantOverrides.metadata`, `call.assistantOverrides.variableValues`.
//! The original fields are kept as they are.

use serde_json::{Map, Value};

use super::Platform;

/// Applies `platform`'s view to a call object in place.
pub fn apply(platform: Platform, call: &mut Value) {
    if platform == Platform::Vapi {
        vapi_call(call);
    }
}

/// The Vapi `call.metadata` view (see the module docs).
pub fn vapi_call(call: &mut Value) {
    let Some(obj) = call.as_object_mut() else {
        return;
    };
    let mut merged = match obj.get("metadata") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    if let Some(Value::Object(ao)) = obj.get("assistantOverrides") {
        for key in ["metadata", "variableValues"] {
            if let Some(Value::Object(m)) = ao.get(key) {
                for (k, v) in m {
                    merged.insert(k.clone(), v.clone());
                }
            }
        }
    }
    obj.insert("metadata".into(), Value::Object(merged));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vapi_metadata_view_merges_overrides() {
        let mut call = json!({
            "id": "c1",
            "assistantOverrides": {"metadata": {"token": "m", "tenant": "acme"}, "variableValues": {"token": "vv"}}
        });
        vapi_call(&mut call);
        assert_eq!(call["metadata"], json!({"token": "vv", "tenant": "acme"}));
        assert_eq!(
            call["assistantOverrides"]["metadata"]["token"], "m",
            "original fields are kept"
        );
    }

    #[test]
    fn vapi_view_without_overrides_gives_empty_metadata() {
        let mut call = json!({"id": "c1"});
        vapi_call(&mut call);
        assert_eq!(call["metadata"], json!({}));
    }
}
