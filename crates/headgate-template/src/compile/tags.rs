//! The tags a header template may use, one function each, found by name in
//! [`TAGS`]. Each checks its arguments at compile time (with positions in
//! the user's text) and emits the Liquid the `liquid` crate runs.

use super::{Block, Translator};
use crate::error::{ErrorKind, TemplateError};
use crate::guard;
use crate::syntax::{Operand, Parser, Span};

/// One `<% name args %>` as written.
pub(super) struct TagCall<'s> {
    pub span: Span,
    pub name: Span,
    pub name_s: &'s str,
    pub args: Span,
}

type Stack = Vec<(Block, Span)>;
type TagFn = fn(&mut Translator<'_>, &TagCall<'_>, &mut Stack) -> Result<(), TemplateError>;

/// Every supported tag and what compiles it.
const TAGS: &[(&str, TagFn)] = &[
    ("if", block_condition),
    ("unless", block_condition),
    ("case", block_condition),
    ("elsif", branch_condition),
    ("when", branch_condition),
    ("else", else_tag),
    ("endif", end_block),
    ("endunless", end_block),
    ("endcase", end_block),
    ("endfor", end_block),
    ("endcapture", end_block),
    ("endcomment", end_block),
    ("comment", |t, call, stack| {
        open(t.src, call, stack, Block::Comment)
    }),
    ("#", |_, _, _| Ok(())),
    ("raw", |_, _, _| Ok(())),
    ("endraw", |_, _, _| Ok(())),
    ("assign", assign),
    ("capture", capture),
    ("for", for_tag),
    ("break", loop_control),
    ("continue", loop_control),
    ("echo", echo),
    ("increment", counter),
    ("decrement", counter),
    ("cycle", cycle),
];

impl Translator<'_> {
    /// Compiles one tag.
    pub(super) fn tag(
        &mut self,
        call: &TagCall<'_>,
        stack: &mut Stack,
    ) -> Result<(), TemplateError> {
        match TAGS.iter().find(|(n, _)| *n == call.name_s) {
            Some((_, compile)) => compile(self, call, stack),
            None => Err(TemplateError::new(
                ErrorKind::UnknownTag,
                format!(
                    "unknown or unsupported tag `{}`; header templates support if, unless, case, for, assign, capture, raw, comment, echo, increment, decrement and cycle",
                    call.name_s
                ),
            )
            .at(self.src, call.name)),
        }
    }

    /// The tag passed through as written.
    fn plain(&mut self, call: &TagCall<'_>) {
        self.out.push_str("{% ");
        self.out.push_str(call.name_s);
        self.out.push(' ');
        self.out.push_str(&self.src[call.args.start..call.args.end]);
        self.out.push_str(" %}");
    }

    fn error(&self, span: Span, kind: ErrorKind, msg: impl Into<String>) -> TemplateError {
        TemplateError::new(kind, msg).at(self.src, span)
    }
}

fn open(src: &str, call: &TagCall<'_>, stack: &mut Stack, b: Block) -> Result<(), TemplateError> {
    if stack.len() >= guard::MAX_NESTING {
        let msg = format!("blocks nest deeper than {}", guard::MAX_NESTING);
        return Err(TemplateError::new(ErrorKind::TooDeep, msg).at(src, call.span));
    }
    stack.push((b, call.span));
    Ok(())
}

/// The innermost open block must be one of `allowed`.
fn inside(
    t: &Translator<'_>,
    call: &TagCall<'_>,
    stack: &Stack,
    allowed: &[Block],
) -> Result<(), TemplateError> {
    if stack.last().is_some_and(|(b, _)| allowed.contains(b)) {
        return Ok(());
    }
    let within = match allowed {
        [Block::If, Block::Unless] => "`if` or `unless`",
        [Block::Case] => "`case`",
        [Block::For] => "`for`",
        _ => "`if`, `unless`, `case` or `for`",
    };
    let msg = format!("`{}` is only allowed inside {within}", call.name_s);
    Err(t.error(call.span, ErrorKind::Syntax, msg))
}

fn block_condition(
    t: &mut Translator<'_>,
    call: &TagCall<'_>,
    stack: &mut Stack,
) -> Result<(), TemplateError> {
    t.validate_operands(call.args)?;
    let b = match call.name_s {
        "if" => Block::If,
        "unless" => Block::Unless,
        _ => Block::Case,
    };
    open(t.src, call, stack, b)?;
    t.plain(call);
    Ok(())
}

fn branch_condition(
    t: &mut Translator<'_>,
    call: &TagCall<'_>,
    stack: &mut Stack,
) -> Result<(), TemplateError> {
    let allowed: &[Block] = match call.name_s {
        "when" => &[Block::Case],
        _ => &[Block::If, Block::Unless],
    };
    inside(t, call, stack, allowed)?;
    t.validate_operands(call.args)?;
    t.plain(call);
    Ok(())
}

fn else_tag(
    t: &mut Translator<'_>,
    call: &TagCall<'_>,
    stack: &mut Stack,
) -> Result<(), TemplateError> {
    inside(
        t,
        call,
        stack,
        &[Block::If, Block::Unless, Block::Case, Block::For],
    )?;
    t.out.push_str("{% else %}");
    Ok(())
}

fn end_block(
    t: &mut Translator<'_>,
    call: &TagCall<'_>,
    stack: &mut Stack,
) -> Result<(), TemplateError> {
    let b = match call.name_s {
        "endif" => Block::If,
        "endunless" => Block::Unless,
        "endcase" => Block::Case,
        "endfor" => Block::For,
        "endcapture" => Block::Capture,
        _ => Block::Comment,
    };
    let name_s = call.name_s;
    match stack.last() {
        Some((top, _)) if *top == b => {
            stack.pop();
        }
        Some((top, _)) => {
            let msg = format!("`{name_s}` found where `<% {} %>` was expected", top.end());
            return Err(t.error(call.span, ErrorKind::Syntax, msg));
        }
        None => {
            let msg = format!("`{name_s}` without a matching opening tag");
            return Err(t.error(call.span, ErrorKind::Syntax, msg));
        }
    }
    if b != Block::Comment {
        t.out.push_str(&format!("{{% {name_s} %}}"));
    }
    Ok(())
}

fn assign(t: &mut Translator<'_>, call: &TagCall<'_>, _: &mut Stack) -> Result<(), TemplateError> {
    let mut p = Parser::new(t.src, call.args)?;
    let var = p.ident()?;
    if !p.eat_assign() {
        let msg = "expected `=` in `assign name = value`";
        return Err(t.error(call.args, ErrorKind::Syntax, msg));
    }
    let fv = p.filtered_value()?;
    p.expect_end("the assigned value")?;
    t.check_filters(&fv)?;
    let _ = t.new_ref(&fv.value);
    t.check_args(&fv);
    t.locals.push(var);
    t.plain(call);
    Ok(())
}

/// A tag whose only argument is a variable name it defines.
fn defines_name(
    t: &mut Translator<'_>,
    call: &TagCall<'_>,
    what: &str,
) -> Result<(), TemplateError> {
    let mut p = Parser::new(t.src, call.args)?;
    let var = p.ident()?;
    p.expect_end(what)?;
    t.locals.push(var);
    Ok(())
}

fn capture(
    t: &mut Translator<'_>,
    call: &TagCall<'_>,
    stack: &mut Stack,
) -> Result<(), TemplateError> {
    defines_name(t, call, "the capture's variable name")?;
    open(t.src, call, stack, Block::Capture)?;
    t.plain(call);
    Ok(())
}

fn for_tag(
    t: &mut Translator<'_>,
    call: &TagCall<'_>,
    stack: &mut Stack,
) -> Result<(), TemplateError> {
    let mut p = Parser::new(t.src, call.args)?;
    let var = p.ident()?;
    if !p.eat_ident("in") {
        let msg = "expected `in` in `for item in collection`";
        return Err(t.error(call.args, ErrorKind::Syntax, msg));
    }
    let coll = p.operand()?;
    p.rest_operands()?;
    if let Operand::Range { lo, hi, span } = &coll {
        // `liquid` materialises ranges: check the size first, now when both
        // bounds are literals (such a template could never render), else
        // at render time.
        let (lo, hi) = (&t.src[lo.start..lo.end], &t.src[hi.start..hi.end]);
        if let (Ok(l), Ok(h)) = (lo.parse::<f64>(), hi.parse::<f64>())
            && h - l > guard::MAX_RANGE
        {
            let msg = format!(
                "a `for` range is longer than {}: this template could never render",
                guard::MAX_RANGE
            );
            return Err(t.error(*span, ErrorKind::TooLarge, msg));
        }
        let range = guard::RANGE;
        t.out.push_str(&format!("{{{{ {hi} | {range}: {lo} }}}}"));
    }
    if let Some(id) = t.new_ref(&coll)
        && let Operand::Path { span, .. } = &coll
    {
        let text = &t.src[span.start..span.end];
        guard::check_defined(&mut t.out, text, id);
    }
    t.locals.push(var);
    t.locals.push("forloop".into());
    open(t.src, call, stack, Block::For)?;
    t.plain(call);
    // Every iteration spends fuel: loops cannot run away.
    t.out.push_str(&format!("{{{{nil|{}}}}}", guard::TICK));
    Ok(())
}

fn loop_control(
    t: &mut Translator<'_>,
    call: &TagCall<'_>,
    stack: &mut Stack,
) -> Result<(), TemplateError> {
    if !stack.iter().any(|(b, _)| *b == Block::For) {
        let msg = format!("`{}` is only allowed inside `for`", call.name_s);
        return Err(t.error(call.span, ErrorKind::Syntax, msg));
    }
    t.plain(call);
    Ok(())
}

fn echo(t: &mut Translator<'_>, call: &TagCall<'_>, _: &mut Stack) -> Result<(), TemplateError> {
    let mut p = Parser::new(t.src, call.args)?;
    let fv = p.filtered_value()?;
    p.expect_end("the echoed value")?;
    t.check_filters(&fv)?;
    t.emit_output(&fv, call.args);
    Ok(())
}

fn counter(t: &mut Translator<'_>, call: &TagCall<'_>, _: &mut Stack) -> Result<(), TemplateError> {
    defines_name(t, call, "the counter name")?;
    t.plain(call);
    Ok(())
}

fn cycle(t: &mut Translator<'_>, call: &TagCall<'_>, _: &mut Stack) -> Result<(), TemplateError> {
    let values = Parser::new(t.src, call.args)?.cycle_values()?;
    t.note_roots(values);
    t.plain(call);
    Ok(())
}
