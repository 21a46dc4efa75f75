//! Governance of a live call (docs/mcp.md "Governing a live call"), beside the route's
//! tool policy: a budget of `tools/call`s per call and per tool glob, and
//! `max_result_bytes`, the text of a `tools/call` result cut to what the
//! model can take.

use regex::Regex;
use serde_json::Value;

/// A route's `[mcp] budgets` and `max_result_bytes`.
#[derive(Debug, Clone, Default)]
pub struct Governance {
    /// In the order written: the first glob a tool matches is its budget.
    pub budgets: Vec<Budget>,
    /// The most text a `tools/call` result's content may carry.
    pub max_result_bytes: Option<usize>,
    /// What a tool changed since it was pinned gets ([`super::pins`]).
    pub pin_tools: super::pins::PinMode,
}

/// `"send_*" = 3`: calls of a matching tool one call (session) may make.
#[derive(Debug, Clone)]
pub struct Budget {
    /// The glob as written (the counter's name in the store).
    pub glob: String,
    re: Regex,
    /// How many calls.
    pub limit: u64,
}

impl Budget {
    /// `glob` (`*` any run, `?` one character) allowing `limit` calls;
    /// `None` for an empty glob.
    pub fn new(glob: &str, limit: u64) -> Option<Self> {
        Some(Self {
            glob: glob.to_string(),
            re: super::policy::glob(glob)?,
            limit,
        })
    }
}

impl Governance {
    /// The budget `tool` counts against: the first glob it matches.
    pub fn budget(&self, tool: &str) -> Option<&Budget> {
        self.budgets.iter().find(|b| b.re.is_match(tool))
    }
}

/// The mark appended to a cut text.
fn mark(cut: usize) -> String {
    format!("… [cut by headgate: {cut} bytes]")
}

/// Cuts the `text` of the content items of a `tools/call` result in
/// `msg` (a JSON-RPC response) so the content carries at most `max`
/// bytes of the server's: texts keep their beginning, cut at a character
/// boundary, and the mark saying how much was cut is appended (a few
/// dozen bytes more per cut text); other items (images, resources) are
/// left whole and their size counted first. True if anything was cut.
pub fn cut_result(msg: &mut Value, max: usize) -> bool {
    let Some(result) = msg.get_mut("result") else {
        return false;
    };
    // The structured form (MCP 2025-06-18) usually repeats the text: its
    // strings are cut within the same size, so it still fits its schema.
    let structured = result
        .get_mut("structuredContent")
        .is_some_and(|v| cut_strings(v, &mut max.clone()));
    let Some(Value::Array(items)) = result.get_mut("content") else {
        return structured;
    };
    let whole: usize = (items.iter())
        .filter(|i| i.get("type").and_then(Value::as_str) != Some("text"))
        .map(|i| i.to_string().len())
        .sum();
    let mut room = max.saturating_sub(whole);
    let mut cut_any = structured;
    for item in items.iter_mut() {
        if item.get("type").and_then(Value::as_str) != Some("text") {
            continue;
        }
        if let Some(Value::String(text)) = item.get_mut("text") {
            cut_any |= cut_text(text, &mut room);
        }
    }
    cut_any
}

/// Cuts every string in `v` (depth first) to the `room` left; true if
/// any was cut.
fn cut_strings(v: &mut Value, room: &mut usize) -> bool {
    match v {
        Value::String(s) => cut_text(s, room),
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |c, i| cut_strings(i, room) | c),
        Value::Object(m) => m.values_mut().fold(false, |c, i| cut_strings(i, room) | c),
        _ => false,
    }
}

/// Keeps what of `text` fits in `room` (at a character boundary), marks
/// what was cut, and takes the kept bytes from `room`; true if cut.
fn cut_text(text: &mut String, room: &mut usize) -> bool {
    if text.len() <= *room {
        *room -= text.len();
        return false;
    }
    let mut keep = *room;
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    let removed = text.len() - keep;
    text.truncate(keep);
    text.push_str(&mark(removed));
    *room -= keep;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_matching_glob_is_the_budget() {
        let g = Governance {
            budgets: vec![
                Budget::new("send_*", 3).unwrap(),
                Budget::new("*", 50).unwrap(),
            ],
            max_result_bytes: None,
            pin_tools: Default::default(),
        };
        assert_eq!(g.budget("send_sms").map(|b| b.limit), Some(3));
        assert_eq!(g.budget("search").map(|b| b.glob.as_str()), Some("*"));
        assert!(Budget::new("", 1).is_none());
    }

    #[test]
    fn texts_are_cut_to_fit_and_marked_and_other_items_kept() {
        let long = "東".repeat(1000); // 3,000 bytes
        let mut msg = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [
            {"type": "image", "data": "AAAA", "mimeType": "image/png"},
            {"type": "text", "text": long},
            {"type": "text", "text": "tail"}
        ], "isError": false}});
        assert!(cut_result(&mut msg, 1024));
        let items = msg["result"]["content"].as_array().unwrap();
        assert_eq!(items[0]["data"], "AAAA", "images are left whole");
        let text = items[1]["text"].as_str().unwrap();
        assert!(
            text.ends_with(" bytes]") && text.contains("cut by headgate"),
            "{text}"
        );
        let kept: usize = (items.iter())
            .map(|i| match i["text"].as_str() {
                Some(t) => t.split("… [cut by headgate").next().unwrap().len(),
                None => i.to_string().len(),
            })
            .sum();
        assert!(kept <= 1024, "{kept}");
        let tail = items[2]["text"].as_str().unwrap();
        assert!(tail.ends_with(" bytes]") && "tail".starts_with(tail.split('…').next().unwrap()));
        assert!(serde_json::from_str::<Value>(&msg.to_string()).is_ok());
        let mut small = json!({"id": 2, "result": {"content": [{"type": "text", "text": "ok"}]}});
        assert!(!cut_result(&mut small, 1024));
        let mut list = json!({"id": 3, "result": {"tools": []}});
        assert!(!cut_result(&mut list, 1));
        // The structured form is cut within the same size, still a string.
        let mut both = json!({"id": 4, "result": {
            "content": [{"type": "text", "text": "x".repeat(100)}],
            "structuredContent": {"result": "x".repeat(100)}}});
        assert!(cut_result(&mut both, 10));
        let s = both["result"]["structuredContent"]["result"]
            .as_str()
            .unwrap();
        assert!(
            s.starts_with("xxxxxxxxxx…") && s.ends_with("90 bytes]"),
            "{s}"
        );
    }
}
