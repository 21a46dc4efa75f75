#[test]
fn only_templates_of_the_session_alone_are_kept_per_session() {
    let route = r#"upstream = "http://127.0.0.1:1"
inbound_auth = "none"
[headers]
a = "Bearer << call.token >>"
b = "<< session.id >>/<< env.PATH >>"
c = "<< request.headers.x-a >>"
d = "Bearer << credentials.crm.access_token >>"
e = "<< call.token | upcase >>"
f = "<% if call.token %>x<% endif %>"
g = "plain text"
"#;
    let main = r#"env_allow = ["PATH"]
[credentials.crm]
kind = "client_credentials"
token_url = "http://127.0.0.1:1/token"
client_id = "c"
client_secret_env = "HG_TEST_CLIENT_SECRET"
"#;
    let cfg = crate::config::check_texts(main, &[("r", route)]).expect("a valid route");
    let kept: Vec<(&str, bool)> = (cfg.route("r").expect("the route").headers.iter())
        .map(|h| (h.name.as_str(), h.per_session))
        .collect();
    let want = [
        ("a", true),
        ("b", true),
        ("c", false),
        ("d", false),
        ("e", false),
        ("f", false),
        ("g", false),
    ];
    assert_eq!(kept, want);
}

#[test]
fn a_route_reads_mcp_however_a_template_names_it() {
    use crate::template::HeaderTemplate;
    let reads = |src: &str| super::compile::reads_mcp(&HeaderTemplate::compile(src).unwrap());
    assert!(reads("<< request.mcp.tool >>"));
    assert!(reads("<< request['mcp'].tool >>"));
    assert!(reads("<% assign r = request %><< r.mcp.method >>"));
    assert!(!reads("<< request.headers.x-a >>"));
    assert!(!reads("Bearer << call.token >>"));
}

#[test]
fn a_route_name_is_interned_once_per_distinct_name() {
    let a = super::intern("interned-crm");
    let b = super::intern(&String::from("interned-crm"));
    assert_eq!(a, "interned-crm");
    assert!(std::ptr::eq(a, b), "a second copy of one name");
    assert!(!std::ptr::eq(a, super::intern("interned-hr")));
}
