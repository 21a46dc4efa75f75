//! Header rendering: headgate's fast path and Liquid path against the
//! `liquid` crate used directly and a hand-written `format!` with the same
//! JSON lookup. `cargo bench --bench render`; figures in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use headgate::HeaderTemplate;
use serde_json::json;

fn vars() -> serde_json::Value {
    json!({
        "call": {
            "id": "call_8f2a9c",
            "status": "in-progress",
            "metadata": {"token": "tok-abcdef0123456789", "tenant": "acme", "plan": "pro"},
            "customer": {"number": "+15551234567", "name": "Ada"}
        }
    })
}

fn bench(c: &mut Criterion) {
    let vars = vars();
    let mut g = c.benchmark_group("render `Bearer << call.metadata.token >>`");

    g.bench_function("floor: lookup + with_capacity + push_str", |b| {
        b.iter(|| {
            let v = black_box(&vars);
            let tok = v["call"]["metadata"]["token"].as_str().unwrap_or_default();
            let mut s = String::with_capacity(7 + tok.len());
            s.push_str("Bearer ");
            s.push_str(tok);
            black_box(s)
        })
    });
    g.bench_function("lookup only", |b| {
        b.iter(|| {
            black_box(
                black_box(&vars)["call"]["metadata"]["token"]
                    .as_str()
                    .map(str::len),
            )
        })
    });
    g.bench_function("hand-written format!", |b| {
        b.iter(|| {
            let v = black_box(&vars);
            let tok = v["call"]["metadata"]["token"].as_str().unwrap_or_default();
            black_box(format!("Bearer {tok}"))
        })
    });

    let t = HeaderTemplate::compile("Bearer << call.metadata.token >>").unwrap();
    assert!(t.is_fast_path());
    g.bench_function("headgate fast path (HeaderValue)", |b| {
        b.iter(|| black_box(t.render(black_box(&vars)).unwrap()))
    });
    g.bench_function("headgate fast path (String, unvalidated)", |b| {
        b.iter(|| black_box(t.render_string(black_box(&vars)).unwrap()))
    });
    g.bench_function("headgate Liquid path (HeaderValue)", |b| {
        b.iter(|| black_box(t.render_slow(black_box(&vars)).unwrap()))
    });

    let parser = liquid::ParserBuilder::with_stdlib().build().unwrap();
    let lt = parser.parse("Bearer {{ call.metadata.token }}").unwrap();
    let obj = liquid::to_object(&vars).unwrap();
    g.bench_function("liquid crate, prebuilt object", |b| {
        b.iter(|| black_box(lt.render(black_box(&obj)).unwrap()))
    });
    g.bench_function("liquid crate, to_object per request", |b| {
        b.iter(|| {
            let obj = liquid::to_object(black_box(&vars)).unwrap();
            black_box(lt.render(&obj).unwrap())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("render with filters and tags (Liquid path)");
    let t2 = HeaderTemplate::compile("<% if call.metadata.plan == 'pro' %>Bearer << call.metadata.token >><% else %>Basic << call.id | base64_encode >><% endif %>").unwrap();
    g.bench_function("headgate if + filter", |b| {
        b.iter(|| black_box(t2.render(black_box(&vars)).unwrap()))
    });
    let lt2 = parser.parse("{% if call.metadata.plan == 'pro' %}Bearer {{ call.metadata.token }}{% else %}Basic {{ call.id | upcase }}{% endif %}").unwrap();
    g.bench_function("liquid crate if + filter, prebuilt object", |b| {
        b.iter(|| black_box(lt2.render(black_box(&obj)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
