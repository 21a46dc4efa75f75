//! A route's `[mcp]` table: the tool policy (`allow_tools`,
//! `deny_tools`) and what governs a live call beside it (`budgets`,
//! `pin_tools`, `max_result_bytes`; docs/mcp.md "Governing a live call").

use std::sync::Arc;

use toml::Spanned;

use super::diagnostics::Ctx;
use super::schema::RawMcp;
use crate::mcp::ToolPolicy;
use crate::mcp::governance::{Budget, Governance};
use crate::mcp::pins::PinMode;

/// A TOML table's entries in the order written (the first matching glob
/// is a tool's budget, so the order is the meaning).
pub(super) struct Ordered(pub(super) Vec<(String, i64)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a table of tool globs and call counts, e.g. { \"send_*\" = 3, \"*\" = 50 }",
                )
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry::<String, i64>()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `budgets`, `pin_tools` and `max_result_bytes`; `None` when the route
/// sets none of them (or `pin_tools = "off"` alone).
pub(super) fn governance(ctx: &mut Ctx<'_>, raw: &RawMcp) -> Option<Arc<Governance>> {
    let mut budgets = Vec::new();
    if let Some(b) = &raw.budgets {
        for (glob, limit) in &b.get_ref().0 {
            let budget = u64::try_from(*limit)
                .ok()
                .and_then(|l| Budget::new(glob, l));
            match budget {
                Some(budget) => budgets.push(budget),
                None => {
                    let msg = format!(
                        "budget `{glob}` = {limit}: a tool glob (not empty) and a count of 0 or more, e.g. \"send_*\" = 3"
                    );
                    ctx.err(b.span().start, "config.invalid_value", msg);
                }
            }
        }
    }
    let max_result_bytes = raw.max_result_bytes.as_ref().map(|_| {
        let size = ctx.size(&raw.max_result_bytes, 64 << 10);
        usize::try_from(size).unwrap_or(usize::MAX)
    });
    let pin_tools = pin_mode(ctx, raw);
    let any = !budgets.is_empty() || max_result_bytes.is_some() || pin_tools != PinMode::Off;
    any.then(|| {
        Arc::new(Governance {
            budgets,
            max_result_bytes,
            pin_tools,
        })
    })
}

/// `pin_tools`: `"off"` (the default), `"warn"` or `"hold"`.
fn pin_mode(ctx: &mut Ctx<'_>, raw: &RawMcp) -> PinMode {
    let Some(v) = &raw.pin_tools else {
        return PinMode::Off;
    };
    PinMode::parse(v.get_ref()).unwrap_or_else(|| {
        let msg = format!(
            "pin_tools = \"{}\": write \"off\", \"warn\" (pass changed tools and report them) or \"hold\" (hold them until approved)",
            v.get_ref()
        );
        ctx.err(v.span().start, "config.invalid_value", msg);
        PinMode::Off
    })
}

/// `[mcp] allow_tools`, `deny_tools`: globs over tool names.
pub(super) fn tool_policy(ctx: &mut Ctx<'_>, raw: &RawMcp) -> Option<Arc<ToolPolicy>> {
    let names = |v: &[Spanned<String>]| v.iter().map(|g| g.get_ref().clone()).collect::<Vec<_>>();
    match ToolPolicy::new(&names(&raw.allow_tools), &names(&raw.deny_tools)) {
        Ok(p) => Some(Arc::new(p)),
        Err(bad) => {
            let off = raw
                .allow_tools
                .iter()
                .chain(&raw.deny_tools)
                .find(|g| *g.get_ref() == bad)
                .map_or(0, |g| g.span().start);
            ctx.err(
                off,
                "config.invalid_value",
                "a tool glob must not be empty; write e.g. `search_*`",
            );
            None
        }
    }
}
