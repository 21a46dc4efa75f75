//! Credentials seen by the CLI and by verifiers: `check`, `render` and
//! `--explain` on credential declarations, and headgate's JWKS verified
//! by real JWT libraries for every key type.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::*;

/// `check` finds a credential that is not declared at its line and
/// column, a plain-HTTP token URL to another host, and a bad key; `render`
/// shows `<credentials.NAME>` and `--explain` names the token URL's host,
/// never a secret.
#[test]
fn check_render_and_explain_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let main = "[credentials.crm]\nkind = \"client_credentials\"\ntoken_url = \"http://auth.example.com/token\"\nclient_id = \"c\"\nclient_secret_env = \"HG_TEST_CLIENT_SECRET\"\n\
                [credentials.signer]\nkind = \"jwt\"\nissuer = \"i\"\naudience = \"a\"\nsigning_key_env = \"HG_TEST_CLIENT_SECRET\"\n";
    let r = route(
        "http://127.0.0.1:9",
        "[headers]\nauthorization = \"Bearer << credentials.crmx.access_token >>\"\n",
    );
    write_config(dir.path(), main, &[("r", &r)]);
    let (code, out, err) = check_with(
        dir.path(),
        &[],
        &["HG_TEST_CLIENT_SECRET", "HG_TEST_ROUTE_KEY"],
    );
    let text = format!("{out}{err}");
    assert_ne!(code, 0);
    assert!(
        text.contains("headgate.toml:3:13") && text.contains("config.insecure_token_url"),
        "{text}"
    );
    assert!(text.contains("config.invalid_signing_key"), "{text}");
    assert!(
        text.contains("r.toml:4:")
            && text.contains("config.unknown_credential")
            && text.contains("`crmx`"),
        "{text}"
    );

    let good = "[credentials.crm]\nkind = \"client_credentials\"\ntoken_url = \"https://auth.example.com/token\"\nclient_id = \"c\"\nclient_secret_env = \"HG_TEST_CLIENT_SECRET\"\nscope = \"crm.read\"\n";
    let r = route(
        "http://127.0.0.1:9",
        "[headers]\nauthorization = \"<< credentials.crm.token_type >> << credentials.crm.access_token >>\"\n",
    );
    write_config(dir.path(), good, &[("r", &r)]);
    let dirp: PathBuf = dir.path().to_path_buf();
    let (code, out, _) = check_with(
        &dirp,
        &["--explain", "r"],
        &["HG_TEST_CLIENT_SECRET", "HG_TEST_ROUTE_KEY"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("credential crm") && out.contains("client_credentials from auth.example.com"),
        "{out}"
    );
    assert!(!out.contains("dummy-secret"), "{out}");
    let vars = dir.path().join("vars.json");
    std::fs::write(&vars, "{}").unwrap();
    let args = [
        "render",
        "--route",
        "r",
        "--templates",
        dir.path().to_str().unwrap(),
        "--vars",
        vars.to_str().unwrap(),
    ];
    let (code, out, err) = run_bin(&args.map(std::ffi::OsStr::new), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "authorization: <credentials.crm.token_type> <credentials.crm>"
    );
}

/// `openssl ARGS` (RSA keys: rcgen cannot make them with ring).
fn openssl(args: &[&str]) {
    let st = std::process::Command::new("openssl")
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "openssl {args:?}");
}

/// Every key type signs and is published: RSA → RS256, Ed25519 → EdDSA,
/// P-256 → ES256, `kid` as configured or the RFC 7638 thumbprint, a
/// previous key with the `kid` it had, never private material; the
/// tokens verify against the published keys, are signed once per session
/// and claims (a counter proves it), and differ between sessions.
#[tokio::test]
async fn jwks_publishes_every_key_type_and_tokens_verify_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let path = |f: &str| keys.join(f).to_string_lossy().into_owned();
    for rsa in ["rsa.pem", "old.pem"] {
        let out = path(rsa);
        let args = [
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ];
        openssl(&[&args[..], &["-out", &out]].concat());
    }
    openssl(&[
        "pkey",
        "-in",
        &path("old.pem"),
        "-pubout",
        "-out",
        &path("old.pub.pem"),
    ]);
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    std::fs::write(keys.join("ed.pem"), ed.serialize_pem()).unwrap();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(keys.join("ec.pem"), ec.serialize_pem()).unwrap();
    let jwt = |name: &str, file: &str, extra: &str| {
        format!(
            "[credentials.{name}]\nkind = \"jwt\"\nissuer = \"https://hg.test\"\naudience = \"api\"\nsigning_key_file = \"keys/{file}\"\n{extra}\n[credentials.{name}.claims]\nsub = \"<< call.user >>\"\n"
        )
    };
    let main = format!(
        "builtin_echo = true\n{}{}{}",
        jwt(
            "rsa",
            "rsa.pem",
            "key_id = \"rsa-2026-11\"\nprevious_keys = [\"keys/old.pub.pem#rsa-2026-10\"]"
        ),
        jwt("ed", "ed.pem", ""),
        jwt("ec", "ec.pem", ""),
    );
    let headers = "[headers]\nx-rsa = \"<< credentials.rsa.access_token >>\"\nx-ed = \"<< credentials.ed.access_token >>\"\nx-ec = \"<< credentials.ec.access_token >>\"\n";
    write_config(
        dir.path(),
        &main,
        &[("echo", &route("builtin:echo", headers))],
    );
    let h = inproc::start(dir.path()).await;
    let c = client();
    let jwks: Value = c
        .get(format!("http://{}/.well-known/jwks.json", h.listen))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let kids: Vec<_> = set
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect();
    assert_eq!(set.keys.len(), 4, "{jwks}");
    assert!(
        kids.contains(&"rsa-2026-11".to_string()) && kids.contains(&"rsa-2026-10".to_string()),
        "{kids:?}"
    );
    for private in ["\"d\"", "\"p\"", "\"q\"", "\"dp\"", "\"qi\""] {
        assert!(!jwks.to_string().contains(private), "{jwks}");
    }
    for k in &set.keys {
        assert_eq!(
            k.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Signature)
        );
    }

    let mut first = Vec::new();
    for user in ["ann", "ann", "ben"] {
        put_session(&h, &format!("call-{user}"), json!({"call": {"user": user}})).await;
        let echo: Value = get_call(
            &c,
            format!("http://{}/echo/x", h.listen),
            &format!("call-{user}"),
        )
        .await
        .json()
        .await
        .unwrap();
        let mut tokens = Vec::new();
        for (header, alg) in [
            ("x-rsa", jsonwebtoken::Algorithm::RS256),
            ("x-ed", jsonwebtoken::Algorithm::EdDSA),
            ("x-ec", jsonwebtoken::Algorithm::ES256),
        ] {
            let token = echo["headers"][header].as_str().unwrap().to_string();
            let head = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(head.alg, alg);
            let jwk = set.find(head.kid.as_deref().unwrap()).unwrap();
            let mut v = jsonwebtoken::Validation::new(alg);
            v.set_audience(&["api"]);
            v.set_issuer(&["https://hg.test"]);
            let claims = jsonwebtoken::decode::<Value>(
                &token,
                &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
                &v,
            )
            .unwrap_or_else(|e| panic!("{header}: {e}"))
            .claims;
            assert_eq!(claims["sub"], user);
            assert!(
                claims["jti"].as_str().is_some_and(|j| j.len() == 32) && claims["nbf"].is_u64()
            );
            tokens.push(token);
        }
        first.push(tokens);
    }
    assert_eq!(
        first[0], first[1],
        "one session's token is signed once and reused"
    );
    assert_ne!(first[0], first[2], "another session gets its own");
    let m = h.app.metrics.credential_requests.get_or_create(
        &headgate::internals::metrics::CredentialOutcome {
            credential: "rsa".into(),
            outcome: "ok",
        },
    );
    assert_eq!(m.get(), 2, "signed on a miss only");
}
