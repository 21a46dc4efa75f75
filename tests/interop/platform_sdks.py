"""Platform SDK interop, driven by tests/interop.rs.

(a) Signatures: the official SDKs sign (Retell) or judge (Retell, ElevenLabs)
    candidate deliveries; headgate must accept exactly what the SDK accepts.
(b) Payloads: Vapi server messages and Retell webhooks built from the SDKs'
    own types must be ingested, and the token they carry injected.

usage: platform_sdks.py HEADGATE_URL   (secrets come from the environment)
Prints one JSON line: {"checks": N, "failures": [...]}.
"""
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request

from elevenlabs.webhooks_custom import WebhooksClient
from retell.lib import webhook_auth
from vapi.types import AssistantOverrides, Call, ServerMessageEndOfCallReport, ServerMessageStatusUpdate

BASE = sys.argv[1]
RETELL_KEY = os.environ["HG_TEST_RETELL_KEY"]
EL_SECRET = os.environ["HG_TEST_WEBHOOK_SECRET"]
VAPI_SECRET = os.environ["HG_TEST_WEBHOOK_SECRET"]
ROUTE_KEY = os.environ["HG_TEST_ROUTE_KEY"]
failures = []
checks = 0


def post(path, body, headers):
    req = urllib.request.Request(BASE + path, data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def echo(call_id):
    req = urllib.request.Request(BASE + "/echo", headers={"x-call-id": call_id, "x-headgate-key": ROUTE_KEY})
    try:
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())["headers"].get("authorization")
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"


def check(name, ok):
    global checks
    checks += 1
    if not ok:
        failures.append(name)


# (a) Retell: the SDK signs; variants are judged by the SDK and by headgate.
def retell_body(call_id, event="call_started"):
    return json.dumps({"event": event, "call": {"call_id": call_id, "metadata": {"token": f"retell-{call_id}"}}})


now_ms = int(time.time() * 1000)
body = retell_body("rt-sig")
good = webhook_auth.symmetric["sign"](body, RETELL_KEY)
candidates = {
    "retell valid": (body, good),
    "retell tampered body": (retell_body("rt-other"), good),
    "retell wrong key": (body, webhook_auth.symmetric["sign"](body, "not-the-key")),
    "retell stale": (body, webhook_auth.symmetric["sign"](body, RETELL_KEY, now_ms - 10 * 60 * 1000)),
    "retell future": (body, webhook_auth.symmetric["sign"](body, RETELL_KEY, now_ms + 10 * 60 * 1000)),
    "retell malformed": (body, "v=1,d=zz"),
}
for name, (b, sig) in candidates.items():
    sdk_ok = webhook_auth.verify(b, RETELL_KEY, sig)
    status, _ = post("/_hooks/retell", b, {"x-retell-signature": sig, "content-type": "application/json"})
    check(f"{name}: sdk={sdk_ok} headgate={status}", sdk_ok == (status == 200))
check("retell SDK-signed call_started stored", echo("rt-sig") == "Bearer retell-rt-sig")

# (a) ElevenLabs: headgate signs as documented; the SDK's construct_event judges.
def el_sign(secret, body, ts):
    return f"t={ts},v0=" + hmac.new(secret.encode(), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()


el_body = json.dumps({"type": "post_call_transcription", "event_timestamp": int(time.time()), "data": {"conversation_id": "el-sig", "agent_id": "a1"}})
ts = int(time.time())
el_candidates = {
    "elevenlabs valid": (el_body, el_sign(EL_SECRET, el_body, ts)),
    "elevenlabs wrong secret": (el_body, el_sign("nope", el_body, ts)),
    "elevenlabs stale": (el_body, el_sign(EL_SECRET, el_body, ts - 3600)),
    "elevenlabs tampered": (el_body.replace("el-sig", "el-xxx"), el_sign(EL_SECRET, el_body, ts)),
}
for name, (b, sig) in el_candidates.items():
    try:
        WebhooksClient.construct_event(None, b, sig, EL_SECRET)
        sdk_ok = True
    except Exception:
        sdk_ok = False
    status, _ = post("/_hooks/elevenlabs", b, {"elevenlabs-signature": sig})
    check(f"{name}: sdk={sdk_ok} headgate={status}", sdk_ok == (status == 200))

# (b) Vapi: server messages built from the SDK's own types.
# Validated by the SDK's own models (camelCase on the wire, as Vapi sends).
call = Call.model_validate({
    "id": "vapi-sdk-1",
    "orgId": "org_1",
    "type": "webCall",
    "createdAt": "2026-11-22T10:00:00Z",
    "updatedAt": "2026-11-22T10:00:00Z",
    "assistantOverrides": {"variableValues": {"token": "from-vapi-sdk"}, "metadata": {"tenant": "acme"}},
})
msg = ServerMessageStatusUpdate.model_validate({"type": "status-update", "status": "in-progress", "call": call.dict(by_alias=True, exclude_unset=True)})
payload = json.dumps({"message": msg.dict(by_alias=True, exclude_unset=True)}, default=str)
check("vapi payload uses camelCase from the SDK", "assistantOverrides" in payload and "variableValues" in payload)
status, out = post("/_hooks/vapi", payload, {"x-vapi-secret": VAPI_SECRET, "content-type": "application/json"})
check(f"vapi status-update accepted ({status} {out})", status == 200)
check("vapi SDK call injected via call.metadata view", echo("vapi-sdk-1") == "Bearer from-vapi-sdk")
end = ServerMessageEndOfCallReport.model_validate({"type": "end-of-call-report", "endedReason": "customer-ended-call", "artifact": {}, "analysis": {}, "call": call.dict(by_alias=True, exclude_unset=True)})
status, _ = post("/_hooks/vapi", json.dumps({"message": end.dict(by_alias=True, exclude_unset=True)}, default=str), {"x-vapi-secret": VAPI_SECRET})
check("vapi end-of-call-report accepted", status == 200)
check("vapi end-of-call-report purged the session", echo("vapi-sdk-1") == "HTTP 403")

print(json.dumps({"checks": checks, "failures": failures}))
