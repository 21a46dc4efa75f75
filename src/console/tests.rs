use super::calls::variable_names;
use super::*;

#[test]
fn forms_decode() {
    let f = Form::parse(b"token=a%2Bb+c&x=&csrf=1&csrf=2");
    assert_eq!(f.get("token"), Some("a+b c"));
    assert_eq!(f.get("x"), Some(""));
    assert_eq!(f.get("csrf"), Some("1"));
    assert_eq!(f.get("nope"), None);
}

#[test]
fn names_not_values() {
    let v = serde_json::json!({"call": {"metadata": {"token": "s3cret"}, "ids": [1]}, "n": 1});
    let names = variable_names(v.as_object().unwrap());
    assert_eq!(names, ["call.ids[]", "call.metadata.token", "n"]);
}

#[test]
fn origins() {
    let host = Some("127.0.0.1:9090");
    let (http, https) = (("http", host), ("https", host));
    let mut h = http::HeaderMap::new();
    assert!(same_origin(&h, http));
    h.insert("origin", HeaderValue::from_static("http://127.0.0.1:9090"));
    assert!(same_origin(&h, http));
    // The scheme counts: an `http://` page is not the HTTPS console.
    assert!(!same_origin(&h, https));
    assert!(!same_origin(&h, ("http", None)));
    h.insert("origin", HeaderValue::from_static("http://evil.example"));
    assert!(!same_origin(&h, http));
    // `Sec-Fetch-Site: same-origin` does not excuse another Origin.
    h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
    assert!(!same_origin(&h, http));
    h.insert("origin", HeaderValue::from_static("http://127.0.0.1:9090"));
    h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
    assert!(!same_origin(&h, http));
    h.insert("origin", HeaderValue::from_static("null"));
    h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
    assert!(same_origin(&h, http));
    h.remove("sec-fetch-site");
    assert!(!same_origin(&h, http));
}

#[test]
fn playground_redacts_and_points_at_errors() {
    let form = Form(vec![
        ("template".into(), "Bearer << call.token >>".into()),
        (
            "vars".into(),
            r#"{"call": {"token": "s3cret-value"}}"#.into(),
        ),
    ]);
    let run = |f: &Form| {
        let get = |n: &str| f.get(n).unwrap_or("").to_string();
        playground(get("template"), get("vars"), f.get("reveal").is_some())
    };
    let out = run(&form).outcome.unwrap().unwrap();
    assert!(!out.contains("s3cret-value"), "{out}");
    let form = Form(vec![("template".into(), "<< x | nope >>".into())]);
    let err = run(&form).outcome.unwrap().unwrap_err();
    assert!(
        err.contains("template.unknown_filter") && err.contains('^'),
        "{err}"
    );
    let form = Form(vec![("vars".into(), "{\"a\": }".into())]);
    assert!(
        run(&form)
            .outcome
            .unwrap()
            .unwrap_err()
            .contains("vars 1:7")
    );
}
