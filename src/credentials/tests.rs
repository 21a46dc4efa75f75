use super::*;

/// Found in review: an `expires_in` of 10^19 seconds overflowed
/// `Instant + Duration` and panicked the request.
#[test]
fn a_huge_expires_in_is_capped_not_a_panic() {
    let main = "[credentials.a]\nkind = \"client_credentials\"\ntoken_url = \"https://a.test/t\"\nclient_id = \"c\"\nclient_secret_env = \"HG_TEST_CLIENT_SECRET\"\n";
    let route = "upstream = \"http://127.0.0.1:9\"\ninbound_auth = \"none\"\n";
    let cfg = crate::config::check_texts(main, &[("r", route)]).unwrap_or_else(|e| panic!("{e}"));
    let cred = &cfg.credentials["a"];
    let t = Token::new(
        cred,
        "x".into(),
        "Bearer".into(),
        Duration::from_secs(u64::MAX / 2),
    );
    assert!(t.expires_at <= Instant::now() + MAX_LIFETIME);
    assert!(t.refresh_at < t.expires_at);
}
