use super::*;

#[test]
fn a_routes_handles_count_into_the_registry_that_made_them() {
    let (m, other) = (Metrics::new(), Metrics::new());
    let slot = RouteHandles::default();
    for status in [200, 200, 502] {
        m.route_request(&slot, "crm", status);
        m.route_upstream_seconds(&slot, "crm", 0.002);
    }
    // By name, into the same series as the handles.
    m.request("crm", 200);
    // The slot holds `m`'s handles: another registry counts by name.
    other.route_request(&slot, "crm", 200);
    other.route_upstream_seconds(&slot, "crm", 0.1);
    let text = m.encode_prometheus();
    for want in [
        r#"headgate_requests_total{route="crm",status="200"} 3"#,
        r#"headgate_requests_total{route="crm",status="502"} 1"#,
        r#"headgate_upstream_latency_seconds_count{route="crm"} 3"#,
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
    let text = other.encode_prometheus();
    for want in [
        r#"headgate_requests_total{route="crm",status="200"} 1"#,
        r#"headgate_upstream_latency_seconds_count{route="crm"} 1"#,
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
}

#[test]
fn prometheus_text_names_counters_by_their_samples() {
    let m = Metrics::new();
    m.audit_dropped.inc();
    m.session_lookup("hit");
    m.session_lookup("hit");
    let text = m.encode_prometheus();
    // Through the resolved handles, into the family's own series;
    // the others are there at zero.
    assert!(
        text.contains(r#"headgate_session_lookups_total{outcome="hit"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"headgate_session_lookups_total{outcome="fetch_error"} 0"#),
        "{text}"
    );
    assert!(
        text.contains("# HELP headgate_audit_dropped_total Audit lines"),
        "{text}"
    );
    assert!(
        text.contains(
            "# TYPE headgate_audit_dropped_total counter\nheadgate_audit_dropped_total 1"
        )
    );
    assert!(text.contains("# TYPE headgate_session_lookups_total counter"));
    assert!(text.contains("# TYPE headgate_render_latency_seconds histogram"));
    assert!(!text.contains("# EOF"));
    assert!(m.encode().trim_end().ends_with("# EOF"));
}

#[test]
fn mcp_labels_are_bounded() {
    let m = Metrics::new();
    for i in 0..250 {
        m.mcp_request(
            "crm",
            Some("tools/call"),
            Some(&format!("t{i}")),
            "ok",
            0.001,
        );
    }
    m.mcp_request("crm", Some("made/up"), None, "refused", 0.001);
    let text = m.encode();
    assert!(text.contains("tool=\"t199\""), "{text}");
    assert!(!text.contains("tool=\"t200\""));
    assert!(text.contains("tool=\"other\",outcome=\"ok\"} 50"), "{text}");
    assert!(text.contains("method=\"other\""));
    assert!(!text.contains("made/up"));
}

/// Tool names a client chose cannot end their sample, plant another
/// or a second `# EOF`, nor grow the exposition without bound.
#[test]
fn client_chosen_tool_names_are_escaped_and_capped() {
    let m = Metrics::new();
    let forged =
        "x\"} 1\nheadgate_requests_total{route=\"crm\",status=\"500\"} 123456789\n# EOF\n\\";
    m.mcp_request("crm", Some("tools/call"), Some(forged), "ok", 0.01);
    m.mcp_request(
        "crm",
        Some("tools/call"),
        Some(&"a".repeat(1 << 20)),
        "ok",
        0.01,
    );
    for text in [m.encode(), m.encode_prometheus()] {
        let forged_line = |l: &&str| l.starts_with("headgate_requests_total{route=\"crm\"");
        assert!(!text.lines().any(|l| forged_line(&l)), "{text}");
        let eofs = text.lines().filter(|l| *l == "# EOF").count();
        assert!(eofs <= 1, "{text}");
        assert!(text.len() < 64 << 10, "{} bytes", text.len());
        let line = (text.lines())
            .find(|l| l.starts_with("headgate_mcp_requests_total{") && l.contains("x\\\""));
        let line = line.unwrap_or_else(|| panic!("no escaped sample in {text}"));
        assert!(line.contains(r#"tool="x\"} 1\nheadgate_requests_total{route=\"crm\",status=\"500\"} 123456789\n# EOF\n\\","#), "{line}");
        assert!(text.contains(r#"tool="other",outcome="ok"} 1"#), "{text}");
    }
    // promtool-style: every sample line parses, and the forged name
    // reads back as it was sent.
    let text = m.encode();
    let tools: Vec<String> = (text.lines().filter_map(sample))
        .filter(|(n, _, _)| *n == "headgate_mcp_requests_total")
        .filter_map(|(_, l, _)| l.into_iter().find(|(k, _)| *k == "tool").map(|(_, v)| v))
        .collect();
    assert!(tools.contains(&forged.to_string()), "{tools:?}");
}

#[test]
fn totals_add_up_by_route_and_code() {
    let m = Metrics::new();
    let handles = RouteHandles::default();
    for _ in 0..3 {
        m.route_request(&handles, "crm", 200);
    }
    m.request("crm", 502);
    m.request("crm", 404);
    m.request("other", 200);
    m.error("crm", "upstream.unreachable");
    m.error("crm", "upstream.unreachable");
    let t = m.totals();
    assert_eq!(
        t.routes["crm"],
        RouteTotals {
            requests: 5,
            errors: 2
        }
    );
    assert_eq!(
        t.routes["other"],
        RouteTotals {
            requests: 1,
            errors: 0
        }
    );
    assert_eq!(t.codes["upstream.unreachable"], 2);
    // The handles are the exposed series themselves.
    let text = m.encode_prometheus();
    for series in [
        r#"headgate_requests_total{route="crm",status="200"} 3"#,
        r#"headgate_requests_total{route="crm",status="404"} 1"#,
        r#"headgate_errors_total{route="crm",code="upstream.unreachable"} 2"#,
    ] {
        assert!(text.contains(series), "{series} in {text}");
    }
}

#[test]
fn mcp_counts_through_cached_handles_match_the_families() {
    let m = Metrics::new();
    for _ in 0..3 {
        m.mcp_request("crm", Some("tools/call"), Some("search"), "ok", 0.01);
    }
    for i in 0..(MAX_TOOL_LABELS + 5) {
        m.mcp_request(
            "crm",
            Some("tools/call"),
            Some(&format!("t{i}")),
            "ok",
            0.01,
        );
    }
    let text = m.encode_prometheus();
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.starts_with("headgate_mcp_requests_total") && l.contains(needle))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line(r#"tool="search""#).ends_with(" 3"), "{text}");
    assert!(line(r#"tool="other""#).ends_with(" 6"), "{text}");
    assert!(
        text.contains(r#"headgate_mcp_latency_seconds_count{route="crm",method="tools/call"} 208"#),
        "{text}"
    );
    let cached: usize = (m.mcp_handles.0.read().unwrap().values())
        .map(Vec::len)
        .sum();
    assert_eq!(
        cached, MAX_TOOL_LABELS,
        "labels past the cap are not cached"
    );
}

#[test]
fn requests_and_upstream_times_through_handles_match_the_families() {
    let m = Metrics::new();
    for status in [200, 200, 502, 200] {
        m.request("crm", status);
        m.upstream_seconds("crm", 0.002);
    }
    m.request("billing", 200);
    let text = m.encode_prometheus();
    for want in [
        r#"headgate_requests_total{route="crm",status="200"} 3"#,
        r#"headgate_requests_total{route="crm",status="502"} 1"#,
        r#"headgate_requests_total{route="billing",status="200"} 1"#,
        r#"headgate_upstream_latency_seconds_count{route="crm"} 4"#,
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
    assert_eq!(status_digits(404), "404");
    assert_eq!(status_digits(5000), "999");
    assert_eq!(status_digits(7), "007");
}

/// Every metric registered has its help text, and the render latency's
/// says how many renders are timed.
#[test]
fn every_metric_has_its_help() {
    let text = Metrics::new().encode();
    for (name, help) in super::HELP {
        assert!(
            text.contains(&format!("# HELP headgate_{name} {help}")),
            "{name}"
        );
    }
    let (_, render) = super::HELP
        .iter()
        .find(|(n, _)| *n == "render_latency_seconds")
        .unwrap();
    assert!(render.contains(&format!("one render in {TIMED_RENDERS} ")));
}

/// A sample's labels, as (name, unescaped value).
type Labels<'a> = Vec<(&'a str, String)>;

/// One sample line of the text format: name, labels, value.
fn sample(line: &str) -> Option<(&str, Labels<'_>, u64)> {
    if line.starts_with('#') {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse::<f64>().ok()? as u64;
    let Some((name, rest)) = head.split_once('{') else {
        return Some((head, Vec::new(), value));
    };
    Some((name, labels(rest.strip_suffix('}')?)?, value))
}

/// `a="x",b="y\"z"` → pairs, unescaping `\\`, `\"` and `\n`.
fn labels(mut s: &str) -> Option<Labels<'_>> {
    let mut out = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key, value));
        s = rest[end + 1..].trim_start_matches(',');
    }
    Some(out)
}
