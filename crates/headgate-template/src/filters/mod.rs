//! Filters, with LiquidJS's semantics, as a registry: one documented
//! function per filter, found by name in [`FILTERS`] (the compiler checks
//! template filters against the same table).
//!
//! Ops copy templates from voice platforms, which run LiquidJS, so every
//! standard filter here behaves as LiquidJS does (e.g. `url_encode` turns a
//! space into `+`, `divided_by` is not integer division, numbers print as
//! JavaScript prints them). The `liquid` crate still parses and runs the
//! template; only the filter table is ours.
//!
//! Names starting with `hg_` are internal (see `guard.rs`): the compiler
//! inserts them; templates cannot call them.

mod arrays;
mod date;
mod encoding;
mod js;
mod math;
mod strings;

use std::fmt;

use liquid_core::model::{Value, ValueView};
use liquid_core::parser::{FilterArguments, FilterReflection, ParameterReflection, ParseFilter};
use liquid_core::runtime::{Expression, Runtime};
use liquid_core::{Filter, Result};

use super::guard;
use js::{num, s};

/// One filter: its name, whether templates may call it, whether it needs
/// an argument (LiquidJS refuses `append` and `prepend` without one), and
/// what it does.
pub(crate) struct Def {
    pub name: &'static str,
    pub internal: bool,
    pub needs_argument: bool,
    run: fn(&Invocation<'_>) -> Result<Value>,
}

const fn public(name: &'static str, run: fn(&Invocation<'_>) -> Result<Value>) -> Def {
    Def {
        name,
        internal: false,
        needs_argument: false,
        run,
    }
}

const fn internal(name: &'static str, run: fn(&Invocation<'_>) -> Result<Value>) -> Def {
    Def {
        name,
        internal: true,
        needs_argument: false,
        run,
    }
}

const fn with_argument(name: &'static str, run: fn(&Invocation<'_>) -> Result<Value>) -> Def {
    Def {
        name,
        internal: false,
        needs_argument: true,
        run,
    }
}

/// Every filter, public and internal.
static FILTERS: &[Def] = &[
    // The renderer's own (see `guard.rs`).
    internal(guard::TICK, |_| guard::tick().map(|()| Value::Nil)),
    internal(guard::RANGE, |c| {
        guard::range(c.n() - num(&c.arg(0))).map(|()| Value::Nil)
    }),
    internal(guard::AT, |c| {
        guard::at(c.args.first().map_or(u32::MAX, |a| num(a) as u32));
        Ok(Value::Nil)
    }),
    internal(guard::DEFINED, |c| {
        guard::defined().map(|()| c.input.to_value())
    }),
    internal(guard::VOID, |_| Ok(Value::scalar(""))),
    internal(guard::OUT, |c| Ok(Value::scalar(c.st()))),
    // Math.
    public("abs", math::abs),
    public("ceil", math::ceil),
    public("floor", math::floor),
    public("at_least", math::at_least),
    public("at_most", math::at_most),
    public("plus", math::plus),
    public("minus", math::minus),
    public("times", math::times),
    public("divided_by", math::divided_by),
    public("modulo", math::modulo),
    public("round", math::round),
    // Strings.
    with_argument("append", strings::append),
    with_argument("prepend", strings::prepend),
    public("downcase", strings::downcase),
    public("upcase", strings::upcase),
    public("capitalize", strings::capitalize),
    public("strip", strings::strip),
    public("lstrip", strings::strip),
    public("rstrip", strings::strip),
    public("remove", strings::remove),
    public("replace", strings::replace),
    public("remove_first", strings::replace_first),
    public("replace_first", strings::replace_first),
    public("split", strings::split),
    public("strip_newlines", strings::strip_newlines),
    public("newline_to_br", strings::newline_to_br),
    public("escape", strings::escape),
    public("escape_once", strings::escape_once),
    public("strip_html", strings::strip_html),
    public("truncate", strings::truncate),
    public("truncatewords", strings::truncatewords),
    // Encodings and digests.
    public("url_encode", encoding::url_encode),
    public("url_decode", encoding::url_decode),
    public("base64_encode", encoding::base64_encode),
    public("base64_url_safe_encode", encoding::base64_url_safe_encode),
    public("base64_decode", encoding::base64_decode),
    public("sha256", encoding::sha256),
    public("hmac_sha256", encoding::hmac_sha256),
    public("json", encoding::json),
    // Arrays and values.
    public("default", arrays::default),
    public("size", arrays::size),
    public("first", arrays::first_or_last),
    public("last", arrays::first_or_last),
    public("join", arrays::join),
    public("reverse", arrays::reverse),
    public("compact", arrays::compact),
    public("concat", arrays::concat),
    public("uniq", arrays::uniq),
    public("sort", arrays::sort),
    public("sort_natural", arrays::sort),
    public("map", arrays::map),
    public("where", arrays::where_),
    public("slice", arrays::slice),
    // Dates.
    with_argument("date", date::date),
];

/// The filter named `name`, if there is one.
pub(crate) fn find(name: &str) -> Option<&'static Def> {
    FILTERS.iter().find(|d| d.name == name)
}

/// Registers every filter on a `liquid` parser builder (after the stdlib,
/// so ours replace its same-named ones).
pub(crate) fn register(mut b: liquid::ParserBuilder) -> liquid::ParserBuilder {
    for def in FILTERS {
        b = b.filter(JsFilter { def });
    }
    b
}

/// One filter invocation as the renderer makes it: the input and the evaluated
/// positional arguments.
pub(super) struct Invocation<'a> {
    /// The filter's name (several filters share one function).
    pub name: &'static str,
    pub input: &'a dyn ValueView,
    pub runtime: &'a dyn Runtime,
    pub args: &'a [Value],
    pub kwargs: &'a [(String, Expression)],
}

impl Invocation<'_> {
    /// Argument `i`, `nil` when absent.
    fn arg(&self, i: usize) -> Value {
        self.args.get(i).cloned().unwrap_or(Value::Nil)
    }

    /// Argument `i` as a string, `""` when absent.
    fn sarg(&self, i: usize) -> String {
        self.args.get(i).map(|a| s(a)).unwrap_or_default()
    }

    /// Whether argument `i` is given and not `nil`.
    fn has_arg(&self, i: usize) -> bool {
        self.args.get(i).is_some_and(|a| !a.is_nil())
    }

    /// The input as a number.
    fn n(&self) -> f64 {
        num(self.input)
    }

    /// The input as a string.
    fn st(&self) -> String {
        s(self.input)
    }
}

#[derive(Clone)]
struct JsFilter {
    def: &'static Def,
}

impl FilterReflection for JsFilter {
    fn name(&self) -> &str {
        self.def.name
    }
    fn description(&self) -> &str {
        "LiquidJS-compatible filter"
    }
    fn positional_parameters(&self) -> &'static [ParameterReflection] {
        &[]
    }
    fn keyword_parameters(&self) -> &'static [ParameterReflection] {
        &[]
    }
}

impl ParseFilter for JsFilter {
    fn parse(&self, arguments: FilterArguments<'_>) -> Result<Box<dyn Filter>> {
        let args: Vec<Expression> = arguments.positional.collect();
        let kwargs: Vec<(String, Expression)> =
            arguments.keyword.map(|(k, v)| (k.to_string(), v)).collect();
        Ok(Box::new(Applied {
            def: self.def,
            args,
            kwargs,
        }))
    }
    fn reflection(&self) -> &dyn FilterReflection {
        self
    }
}

struct Applied {
    def: &'static Def,
    args: Vec<Expression>,
    kwargs: Vec<(String, Expression)>,
}

impl fmt::Debug for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.def.name)
    }
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.def.name)
    }
}

impl Filter for Applied {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<Value> {
        let mut args = Vec::with_capacity(self.args.len());
        for a in &self.args {
            args.push(a.evaluate(runtime)?.to_value());
        }
        let call = Invocation {
            name: self.def.name,
            input,
            runtime,
            args: &args,
            kwargs: &self.kwargs,
        };
        let out = (self.def.run)(&call)?;
        guard::value_size(input, &out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_internal_ones_reserved() {
        let mut names: Vec<&str> = FILTERS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a filter name appears twice");
        for d in FILTERS {
            assert_eq!(d.internal, d.name.starts_with("hg_"), "{}", d.name);
        }
    }
}
