//! LiquidJS conformance: every template in `tests/conformance/corpus.json`
//! must render to the same text as LiquidJS (configured with `<< >>`/`<% %>`,
//! `strictVariables`, `lenientIf`, `strictFilters`), or fail where it fails.
//!
//! Needs `node` and `npm ci` run in `tests/conformance` (scripts/test.sh does
//! it). Documented differences are listed in `KNOWN_DIFFERENCES`.

use std::path::Path;
use std::process::Command;

use headgate::HeaderTemplate;

/// Cases where headgate deliberately differs from LiquidJS, with the reason.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "<< nil | json >>",
        "LiquidJS serialises its internal nil drop as `{}`; headgate gives `null`, which is what JSON means",
    ),
    (
        "<< call.id | >>",
        "LiquidJS ignores a dangling `|`; headgate reports it, since it is always a typo in a header",
    ),
];

#[test]
fn corpus_matches_liquidjs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    assert!(
        dir.join("node_modules/liquidjs").exists(),
        "liquidjs is not installed: run `npm ci --prefix tests/conformance` (scripts/test.sh does)"
    );
    // LiquidJS formats dates in the process's time zone; headgate in UTC.
    let out = Command::new("node")
        .env("TZ", "UTC")
        .arg(dir.join("render.js"))
        .output()
        .expect("node must be on PATH to run the LiquidJS conformance suite");
    assert!(
        out.status.success(),
        "render.js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let corpus: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("corpus.json")).unwrap()).unwrap();
    let cases = corpus["cases"].as_array().unwrap();
    assert_eq!(cases.len(), expected.len());
    assert!(
        cases.len() >= 150,
        "the corpus must keep at least 150 templates"
    );

    let mut failures = Vec::new();
    for (case, want) in cases.iter().zip(&expected) {
        let template = case["template"].as_str().unwrap();
        if KNOWN_DIFFERENCES.iter().any(|(t, _)| *t == template) {
            continue;
        }
        let vars = &corpus["vars"][case["vars"].as_str().unwrap_or("default")];
        let got = HeaderTemplate::compile(template).and_then(|t| t.render_string(vars));
        let ok = match (&got, want.get("ok")) {
            (Ok(g), Some(w)) => Some(g.as_str()) == w.as_str(),
            (Err(_), None) => true,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "  {template:?}\n    liquidjs: {want}\n    headgate: {}",
                match &got {
                    Ok(s) => format!("{s:?}"),
                    Err(e) => format!("error {e}"),
                }
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} templates differ from LiquidJS:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
