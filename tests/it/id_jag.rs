//! Enterprise-managed authorization (`kind = "id_jag"`, the MCP extension
//! "ID-JAG") against an IdP and an authorization server on loopback
//! (`tests/interop/node/id_jag_server.mjs`, signing with `jose`): the two
//! grants carry the right parameters, the resulting token is accepted by
//! a fastmcp server's own `JWTVerifier`, reached through headgate by the
//! MCP Python SDK, and an assertion the IdP refuses is 403
//! `credentials.rejected`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::credentials::{jwt_server, whoami};
use crate::support::*;

const RESOURCE: &str = "http://crm.test/mcp";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_assertion_grant_reaches_the_mcp_server_as_the_caller() {
    let port = free_port();
    let script = interop("node/id_jag_server.mjs");
    let _servers = tokio::process::Command::new("node")
        .arg(&script)
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    until_listening(
        port,
        Duration::from_secs(20),
        "the ID-JAG servers (run scripts/test.sh)",
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let issuer = format!("{base}/as");
    let (mcp_port, _mcp) = jwt_server(&format!("{issuer}/jwks"), &issuer, "RS256").await;

    let dir = tempfile::tempdir().unwrap();
    let main = format!(
        "admin_token_env = \"HG_TEST_ADMIN_TOKEN\"\n\
         [credentials.crm_enterprise]\nkind = \"id_jag\"\n\
         idp_token_url = \"{base}/idp/token\"\nidp_client_id = \"headgate-idp\"\nidp_client_secret_env = \"IDP_SECRET\"\n\
         subject_token = \"<< call.metadata.id_token >>\"\naudience = \"{issuer}\"\nresource = \"{RESOURCE}\"\nscope = \"crm.read\"\n\
         token_url = \"{issuer}/token\"\nclient_id = \"headgate-crm\"\nclient_secret_env = \"CRM_SECRET\"\n"
    );
    let upstream = format!("http://127.0.0.1:{mcp_port}");
    let headers =
        "[headers]\nauthorization = \"Bearer << credentials.crm_enterprise.access_token >>\"\n";
    let routes = [
        ("crm", route(&upstream, headers)),
        ("plain", route(&upstream, headers)),
    ];
    let routes: Vec<(&str, &str)> = routes.iter().map(|(n, r)| (*n, r.as_str())).collect();
    write_config(dir.path(), &main, &routes);
    let env = [("IDP_SECRET", "idp-secret"), ("CRM_SECRET", "crm-secret")];
    let hg = serve(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        &env,
    );

    let id_token = |user: &'static str| {
        let url = format!("{base}/test/id_token?user={user}");
        async move {
            let v: Value = client()
                .post(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["id_token"].as_str().unwrap().to_string()
        }
    };
    for (id, user) in [("call-alice", "alice"), ("call-blocked", "blocked")] {
        let body = json!({"call": {"metadata": {"id_token": id_token(user).await}}});
        assert_eq!(
            admin_call(&hg, reqwest::Method::PUT, id, Some(&body)).await,
            204
        );
    }

    // The MCP Python SDK through headgate: fastmcp's verifier accepts the
    // authorization server's token, issued for the caller.
    let v = whoami(&hg, "crm", "call-alice").await;
    assert_eq!(v["sub"], "alice", "{v}");
    assert_eq!(v["iss"], issuer.as_str(), "{v}");
    assert_eq!(v["client_id"], "headgate-crm", "{v}");

    let stats: Value = client()
        .get(format!("{base}/test/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let exchange = &stats["idp"][0];
    assert_eq!(
        exchange["grant_type"],
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(
        exchange["requested_token_type"],
        "urn:ietf:params:oauth:token-type:id-jag"
    );
    assert_eq!(
        exchange["subject_token_type"],
        "urn:ietf:params:oauth:token-type:id_token"
    );
    assert_eq!(exchange["audience"], issuer.as_str());
    assert_eq!(exchange["resource"], RESOURCE);
    assert_eq!(exchange["scope"], "crm.read");
    assert!(
        exchange.get("client_secret").is_none(),
        "the IdP secret goes in Basic"
    );
    let bearer = &stats["as"][0];
    assert_eq!(
        bearer["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    assert_eq!(bearer["client_id"], "headgate-crm");
    assert_eq!(bearer["resource"], RESOURCE);
    assert!(
        bearer["assertion"]
            .as_str()
            .is_some_and(|a| a.split('.').count() == 3)
    );
    assert!(bearer.get("audience").is_none(), "{bearer}");
    assert_eq!(stats["as"].as_array().unwrap().len(), 1);

    // The IdP refuses the caller: 403 credentials.rejected, nothing sent.
    let r = client()
        .post(format!("http://{}/plain/mcp", hg.listen))
        .header("x-headgate-key", ROUTE_KEY)
        .header("x-call-id", "call-blocked")
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "whoami"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(r).await,
        (403, "credentials.rejected".into())
    );
}
