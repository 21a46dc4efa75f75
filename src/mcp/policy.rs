//! A route's tool policy: `[mcp] allow_tools` and `deny_tools`, globs over
//! tool names (`*` any run of characters, `?` one character). A tool is
//! allowed when it matches an `allow` glob (or there are none) and no
//! `deny` glob.

use regex::Regex;

use super::McpView;

/// The compiled `[mcp]` globs of one route.
#[derive(Debug, Clone, Default)]
pub struct ToolPolicy {
    allow: Vec<Regex>,
    deny: Vec<Regex>,
}

impl ToolPolicy {
    /// Compiles the globs; the first one that is not a valid glob is
    /// returned as the error.
    pub fn new(allow: &[String], deny: &[String]) -> Result<Self, String> {
        let compile = |globs: &[String]| -> Result<Vec<Regex>, String> {
            globs
                .iter()
                .map(|g| glob(g).ok_or_else(|| g.clone()))
                .collect()
        };
        Ok(Self {
            allow: compile(allow)?,
            deny: compile(deny)?,
        })
    }

    /// Whether the policy restricts anything.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether `tool` may be called.
    pub fn allows(&self, tool: &str) -> bool {
        let allowed = self.allow.is_empty() || self.allow.iter().any(|r| r.is_match(tool));
        allowed && !self.deny.iter().any(|r| r.is_match(tool))
    }

    /// The first tool a request calls that is not allowed (a batch is
    /// refused whole for one denied element).
    pub fn denied<'v>(&self, view: &'v McpView) -> Option<&'v str> {
        view.calls
            .iter()
            .filter(|c| c.method == "tools/call")
            .map(|c| c.tool.as_deref().unwrap_or(""))
            .find(|t| !self.allows(t))
    }
}

/// A glob as an anchored regex; `None` if it is empty.
pub(super) fn glob(g: &str) -> Option<Regex> {
    if g.is_empty() {
        return None;
    }
    let mut re = String::with_capacity(g.len() + 8);
    re.push('^');
    for c in g.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::from_body;

    fn p(allow: &[&str], deny: &[&str]) -> ToolPolicy {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        ToolPolicy::new(&s(allow), &s(deny)).unwrap()
    }

    #[test]
    fn allow_and_deny_globs() {
        let open = p(&[], &[]);
        assert!(open.is_open() && open.allows("anything"));
        let pol = p(&["search_*", "get_order"], &["search_admin*"]);
        assert!(pol.allows("search_orders"));
        assert!(pol.allows("get_order"));
        assert!(!pol.allows("get_orders"), "a glob matches the whole name");
        assert!(!pol.allows("search_admin_users"));
        assert!(!pol.allows("delete_account"));
        let deny = p(&[], &["delete_*", "?rop"]);
        assert!(deny.allows("search") && !deny.allows("delete_x") && !deny.allows("drop"));
        assert!(p(&["a.b"], &[]).allows("a.b") && !p(&["a.b"], &[]).allows("axb"));
        assert!(ToolPolicy::new(&[String::new()], &[]).is_err());
    }

    #[test]
    fn one_denied_element_refuses_a_batch() {
        let pol = p(&[], &["delete_*"]);
        let batch = from_body(br#"[{"id":1,"method":"tools/call","params":{"name":"search"}},{"id":2,"method":"tools/call","params":{"name":"delete_all"}}]"#);
        assert_eq!(pol.denied(&batch), Some("delete_all"));
        let list = from_body(br#"{"id":1,"method":"tools/list"}"#);
        assert_eq!(pol.denied(&list), None);
    }
}
