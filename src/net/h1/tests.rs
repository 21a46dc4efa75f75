use super::*;

fn request(raw: &[u8]) -> Result<Option<(Framing, bool)>, Refused> {
    let mut storage = super::storage();
    parse_request(raw, &mut storage, 64 << 10).map(|h| h.map(|h| (h.framing, h.keep_alive)))
}

fn refused(raw: &[u8]) -> u16 {
    match request(raw) {
        Err(r) => r.status,
        Ok(h) => panic!("accepted {:?}: {h:?}", String::from_utf8_lossy(raw)),
    }
}

const H: &str = "POST /crm/mcp HTTP/1.1\r\nHost: a\r\n";

fn with(headers: &str) -> Vec<u8> {
    format!("{H}{headers}\r\n").into_bytes()
}

#[test]
fn plain_heads_frame_as_they_say() {
    assert_eq!(request(&with("")), Ok(Some((Framing::Empty, true))));
    assert_eq!(
        request(&with("Content-Length: 12\r\n")),
        Ok(Some((Framing::Length(12), true)))
    );
    assert_eq!(
        request(&with("Transfer-Encoding: Chunked\r\n")),
        Ok(Some((Framing::Chunked, true)))
    );
    assert_eq!(
        request(&with("Connection: keep-alive, close\r\n")),
        Ok(Some((Framing::Empty, false)))
    );
    let old = b"GET / HTTP/1.0\r\n\r\n";
    assert_eq!(request(old), Ok(Some((Framing::Empty, false))));
    let old = b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    assert_eq!(request(old), Ok(Some((Framing::Empty, true))));
    assert_eq!(request(H.as_bytes()), Ok(None), "incomplete");
}

#[test]
fn ambiguous_framing_is_refused() {
    for h in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: identity\r\n",
        "Content-Length: 3\r\nContent-Length: 3\r\n",
        "Content-Length: +3\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 3, 3\r\n",
        "Content-Length: 0x3\r\n",
        "Content-Length: \r\n",
        "Content-Length: 99999999999999999999\r\n",
    ] {
        assert_eq!(refused(&with(h)), 400, "{h:?}");
    }
    let old = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(refused(old), 400);
}

#[test]
fn malformed_heads_are_refused() {
    for raw in [
        &b"GET / HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nContent-Length : 3\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n",
    ] {
        assert_eq!(refused(raw), 400, "{:?}", String::from_utf8_lossy(raw));
    }
    // What is not an HTTP/1.x version (a space in the target reads as
    // one): 400, as hyper answers it.
    assert_eq!(refused(b"GET / HTTP/2.0\r\n\r\n"), 400);
    assert_eq!(refused(b"GET /a b HTTP/1.1\r\n\r\n"), 400);
}

#[test]
fn oversized_heads_are_431() {
    let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
    assert_eq!(refused(&with(&many)), 431);
    let mut storage = super::storage();
    let long = with(&format!("x-long: {}\r\n", "v".repeat(200)));
    let r = parse_request(&long, &mut storage, 100);
    assert_eq!(r.map(|_| ()).map_err(|e| e.status), Err(431));
    let mut storage = super::storage();
    let r = parse_request(&long[..150], &mut storage, 100);
    assert_eq!(r.map(|_| ()).map_err(|e| e.status), Err(431), "partial");
}

#[test]
fn expect_and_upgrade_are_seen() {
    let mut storage = super::storage();
    let raw = with("Expect: 100-Continue\r\nUpgrade: websocket\r\nX-Call-Id: c1\r\n");
    let h = parse_request(&raw, &mut storage, 1 << 16).unwrap().unwrap();
    assert!(h.expects_continue && h.upgrade);
    assert_eq!(h.header("x-call-id"), Some(&b"c1"[..]));
    assert_eq!(
        (h.method, h.target, h.minor, h.len),
        ("POST", "/crm/mcp", 1, raw.len())
    );
}

fn response(raw: &[u8], head: bool) -> Result<(u16, Framing, bool), Refused> {
    let mut storage = super::storage();
    let r = parse_response(raw, &mut storage, 64 << 10, head)?.expect("complete");
    Ok((r.status, r.framing, r.keep_alive))
}

#[test]
fn responses_frame_by_rfc_9112_section_6_3() {
    let r = |s: &str| response(s.as_bytes(), false);
    assert_eq!(
        r("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
        Ok((200, Framing::Length(5), true))
    );
    assert_eq!(
        r("HTTP/1.1 200 OK\r\n\r\n"),
        Ok((200, Framing::UntilClose, false))
    );
    assert_eq!(
        r("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Ok((200, Framing::Chunked, true))
    );
    // Length ignored under chunked, and the connection not reused.
    assert_eq!(
        r("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n"),
        Ok((200, Framing::Chunked, false))
    );
    assert_eq!(
        r("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: x\r\n\r\n"),
        Ok((200, Framing::UntilClose, false))
    );
    assert!(r("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    // A value that is not text names no coding hyper reads (found by the
    // h1_response_differential fuzz target): read until close.
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding:\x95 ,chunked\r\n\r\n";
    assert_eq!(response(raw, false), Ok((200, Framing::UntilClose, false)));
    assert!(
        r("HTTP/1.1 051 Early\r\n\r\n").is_err(),
        "no status under 100"
    );
    for s in ["204 No Content", "304 Not Modified", "100 Continue"] {
        let raw = format!("HTTP/1.1 {s}\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r(&raw).map(|x| x.1), Ok(Framing::Empty), "{s}");
    }
    // A bodiless response's framing headers are not judged (hyper too).
    let raw = "HTTP/1.1 204 No Content\r\nContent-Length: x\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert_eq!(r(raw), Ok((204, Framing::Empty, true)));
    let head = response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
    assert_eq!(head, Ok((200, Framing::Empty, true)));
    assert_eq!(
        r("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"),
        Ok((200, Framing::Length(1), false))
    );
    assert!(r("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err());
    // Lines that agree are one length; a third that does not is refused
    // as well as a second (the first two values are kept from the pass
    // over the lines, the rest read again).
    let cl = |v: &[&str]| {
        let lines: String = v
            .iter()
            .map(|v| format!("Content-Length: {v}\r\n"))
            .collect();
        r(&format!("HTTP/1.1 200 OK\r\nX-A: 1\r\n{lines}\r\n"))
    };
    assert_eq!(cl(&["3", "3", "3"]), Ok((200, Framing::Length(3), true)));
    assert!(cl(&["3", "3", "4"]).is_err());
    assert!(cl(&["3", "3", "3", "x"]).is_err());
    assert!(cl(&["3", "x"]).is_err());
    assert!(r("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
}

fn dechunk(raw: &[u8]) -> Result<(Vec<u8>, usize), ChunkError> {
    let mut c = Chunked::new();
    let mut out = Vec::new();
    let n = c.read(raw, |d| out.extend_from_slice(d))?;
    assert!(c.done(), "unfinished: {:?}", String::from_utf8_lossy(raw));
    Ok((out, n))
}

#[test]
fn chunked_bodies_decode_and_stop_at_their_end() {
    let raw = b"5\r\nhello\r\n6;ext=1;q=\"x\"\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    assert_eq!(dechunk(raw), Ok((b"hello world".to_vec(), raw.len() - 4)));
    assert_eq!(dechunk(b"0\r\n\r\n"), Ok((Vec::new(), 5)));
    assert_eq!(
        dechunk(b"A\r\n0123456789\r\n0\r\n\r\n").map(|x| x.0.len()),
        Ok(10)
    );
}

#[test]
fn chunked_bodies_decode_byte_by_byte_the_same() {
    let raw = b"5\r\nhello\r\n6;e\r\n world\r\n0\r\nT: v\r\n\r\n";
    let mut c = Chunked::new();
    let mut out = Vec::new();
    for b in raw.iter() {
        assert_eq!(
            c.read(std::slice::from_ref(b), |d| out.extend_from_slice(d)),
            Ok(1)
        );
    }
    assert!(c.done());
    assert_eq!(out, b"hello world");
}

#[test]
fn lenient_chunk_lines_are_refused() {
    for raw in [
        &b"0x3\r\nabc\r\n0\r\n\r\n"[..],
        b"3\nabc\r\n0\r\n\r\n",
        b"3 \r\nabc\r\n0\r\n\r\n",
        b" 3\r\nabc\r\n0\r\n\r\n",
        b"\r\nabc\r\n0\r\n\r\n",
        b"1000000000000000\r\n",
        b"3\r\nabcX\r\n0\r\n\r\n",
        b"3\r\nabc\n0\r\n\r\n",
        b"3;a b\r\nabc\r\n0\r\n\r\n",
        b"0\r\nX: 1\n\r\n",
        b"0\r\n\n",
        b"0\r\nhello\r\n\r\n",
        b"0\r\nX : 1\r\n\r\n",
    ] {
        let mut c = Chunked::new();
        assert!(
            c.read(raw, |_| {}).is_err(),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
    // 15 digits are allowed (leading zeros count).
    let mut c = Chunked::new();
    assert_eq!(
        c.read(b"000000000000003\r\nabc\r\n0\r\n\r\n", |_| {}),
        Ok(27)
    );
}

#[test]
fn chunks_encode_back() {
    let mut out = Vec::new();
    chunked::encode(b"hello world", &mut out);
    chunked::encode(b"", &mut out);
    out.extend_from_slice(chunked::LAST_CHUNK);
    assert_eq!(dechunk(&out), Ok((b"hello world".to_vec(), out.len())));
}

#[test]
fn content_length_lines_carry_every_digit() {
    for n in [0u64, 7, 10, 1_234_567_890, u64::MAX] {
        let mut out = Vec::new();
        put_content_length(&mut out, n);
        assert_eq!(out, format!("content-length: {n}\r\n").into_bytes());
    }
}

#[test]
fn a_raw_head_reads_as_sent() {
    use crate::net::head::Head as _;
    let raw = b"GET /r/x?a=1&b=2#frag HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Pad:  v  \r\nx-two: 1\r\nX-Two: 2\r\n\r\n";
    let mut storage = super::storage();
    let head = parse_request(raw, &mut storage, 64 << 10).unwrap().unwrap();
    let spans = Spans::of(raw, &head).expect("a valid head has spans");
    let v = spans.view(raw);
    assert_eq!(v.method(), "GET");
    assert_eq!(v.query(), Some("a=1&b=2"));
    let name = |n: &'static str| http::HeaderName::from_static(n);
    assert_eq!(v.header(&name("x-empty")), Some(&b""[..]));
    assert_eq!(v.header(&name("x-pad")), Some(&b"v"[..]));
    assert_eq!(v.count(&name("x-two")), 2);
    assert_eq!(v.header(&name("x-two")), Some(&b"1"[..]));
    assert_eq!(v.header(&name("x-none")), None);
    let fields: Vec<&[u8]> = v.fields().map(|f| f.line).collect();
    assert_eq!(
        fields,
        [
            &b"Host: h"[..],
            b"X-Empty:",
            b"X-Pad:  v",
            b"x-two: 1",
            b"X-Two: 2"
        ]
    );
}

#[test]
fn a_raw_head_declares_repeats_and_finds_as_counting_its_lines_does() {
    use crate::net::head::{Declared, Head as _};
    let names = ["x-call-id", "x-chat-id", "x-session-id"].map(http::HeaderName::from_static);
    let names = crate::net::headers::Names::new(names.to_vec());
    type Firsts = [Option<&'static [u8]>; 3];
    let cases: [(&[u8], Option<&str>, Declared, Firsts); 6] = [
        (
            b"POST /r HTTP/1.1\r\nX-Chat-Id: a\r\nx-call-id: b\r\nX-CHAT-ID: c\r\nx-call-id: d\r\nContent-Length: 0\r\n\r\n",
            Some("x-call-id"),
            Declared { hosts: 0, length: Some(0), lists_framing: false, host_required: true },
            [None; 3],
        ),
        (
            b"GET /r HTTP/1.1\r\nHost: a\r\nX-Session-Id: a\r\nhost: b\r\nx-session-id: b\r\n\r\n",
            Some("x-session-id"),
            Declared { hosts: 2, length: None, lists_framing: false, host_required: true },
            [None; 3],
        ),
        (
            // `Content-Type` has `X-Session-Id`'s length, `X-Forwarded-For`
            // none of theirs: passed over on the length, or compared.
            b"POST /r HTTP/1.1\r\nHOST: h\r\nX-Call-Id: a\r\nContent-Type: t\r\nX-Chat-Id: b\r\nX-Forwarded-For: f\r\ncontent-type: u\r\ncontent-length: 12\r\n\r\n",
            None,
            Declared { hosts: 1, length: Some(12), lists_framing: false, host_required: true },
            [Some(b"a"), Some(b"b"), None],
        ),
        (b"GET /r HTTP/1.1\r\n\r\n", None, Declared { hosts: 0, length: None, lists_framing: false, host_required: true }, [None; 3]),
        // Framing a proxy must never drop as hop-by-hop, in any case and
        // on any of several `Connection` lines.
        (
            b"POST /r HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nconnection: x-a , Content-LENGTH\r\nContent-Length: 3\r\n\r\n",
            None,
            Declared { hosts: 1, length: Some(3), lists_framing: true, host_required: true },
            [None; 3],
        ),
        (
            b"GET /r HTTP/1.1\r\nHost: h\r\nConnection: close, host\r\n\r\n",
            None,
            Declared { hosts: 1, length: None, lists_framing: true, host_required: true },
            [None; 3],
        ),
    ];
    for (raw, twice, declared, firsts) in cases {
        let mut storage = super::storage();
        let head = parse_request(raw, &mut storage, 64 << 10).unwrap().unwrap();
        let spans = Spans::of(raw, &head).expect("a valid head has spans");
        let parts = super::to_parts(raw, &head).expect("a valid head has parts");
        let v = spans.view(raw);
        let name = |n: Option<&http::HeaderName>| n.map(|n| n.as_str().to_owned());
        let (mut raw_firsts, mut parts_firsts) = ([None; 3], [None; 3]);
        let raw_twice = v.firsts(&names, &mut raw_firsts).err();
        assert_eq!(name(raw_twice).as_deref(), twice);
        assert_eq!(
            name(parts.firsts(&names, &mut parts_firsts).err()).as_deref(),
            twice
        );
        if twice.is_none() {
            assert_eq!(raw_firsts, firsts);
            assert_eq!(parts_firsts, firsts);
        }
        assert_eq!(v.declared(), declared);
        assert_eq!(parts.declared(), declared);
    }
}

#[test]
fn a_header_line_is_copied_as_it_came() {
    let raw = b"HTTP/1.1 200 OK\r\nX-A:  v w\r\nx-empty:\r\nContent-Length: 0\r\n\r\n";
    let mut storage = super::storage();
    let head = parse_response(raw, &mut storage, 1 << 16, false)
        .unwrap()
        .unwrap();
    let lines: Vec<&[u8]> = (head.headers.iter())
        .map(|h| super::line_of(raw, h).unwrap())
        .collect();
    assert_eq!(
        lines,
        [&b"X-A:  v w"[..], b"x-empty:", b"Content-Length: 0"]
    );
    let elsewhere = httparse::Header {
        name: "x",
        value: b"y",
    };
    assert_eq!(super::line_of(raw, &elsewhere), None);
}

#[test]
fn a_responses_keep_alive_timeout_is_read() {
    for (raw, want) in [
        (
            &b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\nContent-Length: 0\r\n\r\n"[..],
            Some(5),
        ),
        (
            b"HTTP/1.1 200 OK\r\nkeep-alive: max=3,timeout=2\r\nContent-Length: 0\r\n\r\n",
            Some(2),
        ),
        (
            b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=x\r\nContent-Length: 0\r\n\r\n",
            None,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", None),
    ] {
        let mut storage = super::storage();
        let head = parse_response(raw, &mut storage, 1 << 16, false)
            .unwrap()
            .unwrap();
        assert_eq!(
            head.keep_alive_timeout,
            want,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}
