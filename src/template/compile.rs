//! Compilation: `<< >>` source → checked, translated `liquid` template, plus
//! a fast plan for templates that are only text and variable paths.
//!
//! LiquidJS (`strictVariables`, `lenientIf`) decides where an undefined
//! variable is an error: in a plain output, a filter argument and a `for`
//! collection it is; under `if`/`elsif`/`unless`/`case`/`assign` and in an
//! output whose first filter is `default` it is simply falsy. The `liquid`
//! crate is strict everywhere, so variables are looked up leniently (see
//! `value.rs`) and the translation inserts a check after each strictly
//! evaluated reference: `<< a.b | upcase >>` becomes
//! `{{nil|hg_at:0}}{{ a.b | hg_defined | upcase | hg_out }}`.

use std::sync::OnceLock;

use super::error::{ErrorKind, TemplateError};
use super::filters::{self, INTERNAL_FILTERS, PUBLIC_FILTERS};
use super::syntax::{self, FilteredValue, Operand, Parser, Seg, Span, Token};

/// A variable reference the renderer may report.
#[derive(Debug, Clone)]
pub(crate) struct RefInfo {
    pub path: String,
    pub span: Span,
}

/// One piece of a fast-path template.
#[derive(Debug, Clone)]
pub(crate) enum FastSeg {
    Lit(Box<str>),
    Var { path: Box<[Box<str>]>, id: u32 },
}

pub(crate) struct Compiled {
    pub liquid: liquid::Template,
    pub fast: Option<Vec<FastSeg>>,
    pub refs: Vec<RefInfo>,
    pub roots: Vec<String>,
}

fn parser() -> Result<&'static liquid::Parser, TemplateError> {
    static PARSER: OnceLock<Result<liquid::Parser, String>> = OnceLock::new();
    PARSER
        .get_or_init(|| {
            super::filters::register(liquid::ParserBuilder::with_stdlib())
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            TemplateError::new(
                ErrorKind::Syntax,
                format!("template engine failed to start: {e}"),
            )
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    If,
    Unless,
    Case,
    For,
    Capture,
    Comment,
}

impl Block {
    fn end(self) -> &'static str {
        match self {
            Block::If => "endif",
            Block::Unless => "endunless",
            Block::Case => "endcase",
            Block::For => "endfor",
            Block::Capture => "endcapture",
            Block::Comment => "endcomment",
        }
    }
}

struct Translator<'s> {
    src: &'s str,
    out: String,
    refs: Vec<RefInfo>,
    roots: Vec<String>,
    locals: Vec<String>,
    has_tags: bool,
    fast: Vec<FastSeg>,
    fast_ok: bool,
}

pub(crate) fn compile(src: &str) -> Result<Compiled, TemplateError> {
    let tokens = syntax::tokenize(src)?;
    let mut t = Translator {
        src,
        out: String::with_capacity(src.len() + 64),
        refs: Vec::new(),
        roots: Vec::new(),
        locals: Vec::new(),
        has_tags: false,
        fast: Vec::new(),
        fast_ok: true,
    };
    let mut stack: Vec<(Block, Span)> = Vec::new();
    for tok in &tokens {
        let in_comment = stack.last().is_some_and(|(b, _)| *b == Block::Comment);
        match tok {
            Token::Text(s) => {
                if !in_comment {
                    t.text(*s);
                }
            }
            Token::Output { span, inner } => {
                if !in_comment {
                    t.output(*span, *inner)?;
                }
            }
            Token::Tag { span, name, args } => {
                t.has_tags = true;
                t.fast_ok = false;
                let name_s = &src[name.start..name.end];
                if in_comment && name_s != "endcomment" {
                    continue;
                }
                t.tag(*span, *name, name_s, *args, &mut stack)?;
            }
        }
    }
    if let Some((b, open)) = stack.last() {
        return Err(TemplateError::new(
            ErrorKind::Syntax,
            format!("block is not closed: add `<% {} %>`", b.end()),
        )
        .at(src, *open));
    }
    let liquid = parser()?.parse(&t.out).map_err(|e| {
        // Only template text appears in `liquid`'s parse errors.
        let msg = e.to_string();
        let first = msg
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid syntax");
        TemplateError::new(
            ErrorKind::Syntax,
            format!("invalid Liquid: {}", first.trim()),
        )
        .at(src, Span::new(0, 0))
    })?;
    let fast = (t.fast_ok && !t.has_tags).then_some(t.fast);
    Ok(Compiled {
        liquid,
        fast,
        refs: t.refs,
        roots: t.roots,
    })
}

impl<'s> Translator<'s> {
    /// Literal text: `{` that could start a Liquid delimiter is emitted as
    /// an output of the string `{`, so `{{`, `{%` come out byte for byte.
    fn text(&mut self, s: Span) {
        let text = &self.src[s.start..s.end];
        push_lit(&mut self.fast, text);
        let b = text.as_bytes();
        let mut last = 0;
        for (i, &c) in b.iter().enumerate() {
            if c == b'{' && matches!(b.get(i + 1), Some(b'{') | Some(b'%') | None) {
                self.out.push_str(&text[last..i]);
                self.out.push_str("{{'{'}}");
                last = i + 1;
            }
        }
        self.out.push_str(&text[last..]);
    }

    fn new_ref(&mut self, op: &Operand) -> Option<u32> {
        if let Operand::Path { root, segs, span } = op {
            let mut path = root.clone();
            for s in segs {
                match s {
                    Seg::Key(k) if syntax_ident(k) => {
                        path.push('.');
                        path.push_str(k);
                    }
                    Seg::Key(k) => {
                        path.push_str(&format!("[{k:?}]"));
                    }
                    Seg::Other => path.push_str("[…]"),
                }
            }
            if !self.locals.contains(root) && !self.roots.contains(root) {
                self.roots.push(root.clone());
            }
            self.refs.push(RefInfo { path, span: *span });
            Some((self.refs.len() - 1) as u32)
        } else {
            None
        }
    }

    fn check_filters(&self, fv: &FilteredValue) -> Result<(), TemplateError> {
        let ranges =
            std::iter::once(&fv.value).chain(fv.filters.iter().flat_map(|f| f.args.iter()));
        for op in ranges {
            if let Operand::Range { span, .. } = op {
                return Err(TemplateError::new(
                    ErrorKind::Syntax,
                    "a range `(a..b)` is only allowed as a `for` collection",
                )
                .at(self.src, *span));
            }
        }
        for f in &fv.filters {
            if !PUBLIC_FILTERS.contains(&f.name.as_str()) {
                let hint = if INTERNAL_FILTERS.contains(&f.name.as_str()) {
                    " (reserved for headgate's own use)"
                } else {
                    ""
                };
                return Err(TemplateError::new(
                    ErrorKind::UnknownFilter,
                    format!(
                        "unknown filter `{}`{hint}; see the filter table in the README",
                        f.name
                    ),
                )
                .at(self.src, f.name_span));
            }
            if f.args.is_empty() && filters::REQUIRES_ARGUMENT.contains(&f.name.as_str()) {
                return Err(TemplateError::new(
                    ErrorKind::Syntax,
                    format!(
                        "filter `{}` needs an argument, e.g. `| {}: \"text\"`",
                        f.name, f.name
                    ),
                )
                .at(self.src, f.name_span));
            }
        }
        Ok(())
    }

    /// Emits strict checks for filter arguments that are variables.
    fn check_args(&mut self, fv: &FilteredValue) {
        for f in &fv.filters {
            for a in &f.args {
                if let Some(id) = self.new_ref(a)
                    && let Operand::Path { span, .. } = a
                {
                    let text = &self.src[span.start..span.end];
                    self.out.push_str(&format!(
                        "{{{{nil|hg_at:{id}}}}}{{{{ {text} | hg_defined | hg_void }}}}"
                    ));
                }
            }
        }
    }

    fn output(&mut self, _span: Span, inner: Span) -> Result<(), TemplateError> {
        if inner.start >= inner.end {
            // LiquidJS renders an empty output as nothing.
            return Ok(());
        }
        let mut p = Parser::new(self.src, inner)?;
        let fv = p.filtered_value()?;
        p.expect_end("the output's value and filters")?;
        self.check_filters(&fv)?;
        self.emit_output(&fv, inner);
        Ok(())
    }

    fn emit_output(&mut self, fv: &FilteredValue, inner: Span) {
        let lenient = fv.filters.first().is_some_and(|f| f.name == "default");
        let id = self.new_ref(&fv.value);
        match (&fv.value, fv.filters.is_empty(), id) {
            (Operand::Path { root, segs, .. }, true, Some(id))
                if !self.locals.contains(root)
                    && segs
                        .iter()
                        .all(|s| matches!(s, Seg::Key(k) if !matches!(k.as_str(), "size" | "first" | "last"))) =>
            {
                let mut path = vec![root.clone().into_boxed_str()];
                path.extend(segs.iter().filter_map(|s| match s {
                    Seg::Key(k) => Some(k.clone().into_boxed_str()),
                    Seg::Other => None,
                }));
                self.fast.push(FastSeg::Var {
                    path: path.into_boxed_slice(),
                    id,
                });
            }
            _ => self.fast_ok = false,
        }
        self.check_args(fv);
        let value_text = &self.src[inner.start..fv.value_end];
        let rest = &self.src[fv.value_end..inner.end];
        let at = id.map_or(u32::MAX, |i| i);
        let check = if !lenient && id.is_some() {
            " | hg_defined"
        } else {
            ""
        };
        self.out.push_str(&format!(
            "{{{{nil|hg_at:{at}}}}}{{{{ {value_text}{check} {rest} | hg_out }}}}"
        ));
    }

    fn tag(
        &mut self,
        span: Span,
        name: Span,
        name_s: &str,
        args: Span,
        stack: &mut Vec<(Block, Span)>,
    ) -> Result<(), TemplateError> {
        let args_s = &self.src[args.start..args.end];
        let open = |stack: &mut Vec<(Block, Span)>, b: Block| -> Result<(), TemplateError> {
            if stack.len() >= syntax::MAX_NESTING {
                return Err(TemplateError::new(
                    ErrorKind::TooDeep,
                    format!("blocks nest deeper than {}", syntax::MAX_NESTING),
                )
                .at(self.src, span));
            }
            stack.push((b, span));
            Ok(())
        };
        let close = |stack: &mut Vec<(Block, Span)>, b: Block| -> Result<(), TemplateError> {
            match stack.last() {
                Some((top, _)) if *top == b => {
                    stack.pop();
                    Ok(())
                }
                Some((top, _)) => Err(TemplateError::new(
                    ErrorKind::Syntax,
                    format!("`{name_s}` found where `<% {} %>` was expected", top.end()),
                )
                .at(self.src, span)),
                None => Err(TemplateError::new(
                    ErrorKind::Syntax,
                    format!("`{name_s}` without a matching opening tag"),
                )
                .at(self.src, span)),
            }
        };
        let inside = |stack: &Vec<(Block, Span)>, allowed: &[Block]| -> Result<(), TemplateError> {
            if stack.last().is_some_and(|(b, _)| allowed.contains(b)) {
                Ok(())
            } else {
                Err(TemplateError::new(
                    ErrorKind::Syntax,
                    format!(
                        "`{name_s}` is only allowed inside {}",
                        match allowed {
                            [Block::If, Block::Unless] => "`if` or `unless`",
                            [Block::Case] => "`case`",
                            [Block::For] => "`for`",
                            _ => "`if`, `unless`, `case` or `for`",
                        }
                    ),
                )
                .at(self.src, span))
            }
        };
        let plain = |me: &mut Self| {
            me.out.push_str("{% ");
            me.out.push_str(name_s);
            me.out.push(' ');
            me.out.push_str(args_s);
            me.out.push_str(" %}");
        };
        match name_s {
            "if" | "unless" | "case" => {
                self.validate_operands(args)?;
                open(
                    stack,
                    match name_s {
                        "if" => Block::If,
                        "unless" => Block::Unless,
                        _ => Block::Case,
                    },
                )?;
                plain(self);
            }
            "elsif" => {
                inside(stack, &[Block::If, Block::Unless])?;
                self.validate_operands(args)?;
                plain(self);
            }
            "when" => {
                inside(stack, &[Block::Case])?;
                self.validate_operands(args)?;
                plain(self);
            }
            "else" => {
                inside(stack, &[Block::If, Block::Unless, Block::Case, Block::For])?;
                self.out.push_str("{% else %}");
            }
            "endif" | "endunless" | "endcase" | "endfor" | "endcapture" | "endcomment" => {
                let b = match name_s {
                    "endif" => Block::If,
                    "endunless" => Block::Unless,
                    "endcase" => Block::Case,
                    "endfor" => Block::For,
                    "endcapture" => Block::Capture,
                    _ => Block::Comment,
                };
                close(stack, b)?;
                if b != Block::Comment {
                    self.out.push_str(&format!("{{% {name_s} %}}"));
                }
            }
            "comment" => open(stack, Block::Comment)?,
            "#" | "raw" | "endraw" => {}
            "assign" => {
                let mut p = Parser::new(self.src, args)?;
                let var = p.ident()?;
                if !p.eat_assign() {
                    return Err(TemplateError::new(
                        ErrorKind::Syntax,
                        "expected `=` in `assign name = value`",
                    )
                    .at(self.src, args));
                }
                let fv = p.filtered_value()?;
                p.expect_end("the assigned value")?;
                self.check_filters(&fv)?;
                let _ = self.new_ref(&fv.value);
                self.check_args(&fv);
                self.locals.push(var);
                plain(self);
            }
            "capture" => {
                let mut p = Parser::new(self.src, args)?;
                let var = p.ident()?;
                p.expect_end("the capture's variable name")?;
                self.locals.push(var);
                open(stack, Block::Capture)?;
                plain(self);
            }
            "for" => {
                let mut p = Parser::new(self.src, args)?;
                let var = p.ident()?;
                if !p.eat_ident("in") {
                    return Err(TemplateError::new(
                        ErrorKind::Syntax,
                        "expected `in` in `for item in collection`",
                    )
                    .at(self.src, args));
                }
                let coll = p.operand()?;
                p.rest_operands()?;
                if let Operand::Range { lo, hi, .. } = &coll {
                    // `liquid` materialises ranges: check the size first.
                    let (lo, hi) = (&self.src[lo.start..lo.end], &self.src[hi.start..hi.end]);
                    self.out
                        .push_str(&format!("{{{{ {hi} | hg_range: {lo} }}}}"));
                }
                if let Some(id) = self.new_ref(&coll)
                    && let Operand::Path { span, .. } = &coll
                {
                    let text = &self.src[span.start..span.end];
                    self.out.push_str(&format!(
                        "{{{{nil|hg_at:{id}}}}}{{{{ {text} | hg_defined | hg_void }}}}"
                    ));
                }
                self.locals.push(var);
                self.locals.push("forloop".into());
                open(stack, Block::For)?;
                plain(self);
                // Every iteration spends fuel: loops cannot run away.
                self.out.push_str("{{nil|hg_tick}}");
            }
            "break" | "continue" => {
                if !stack.iter().any(|(b, _)| *b == Block::For) {
                    return Err(TemplateError::new(
                        ErrorKind::Syntax,
                        format!("`{name_s}` is only allowed inside `for`"),
                    )
                    .at(self.src, span));
                }
                plain(self);
            }
            "echo" => {
                let mut p = Parser::new(self.src, args)?;
                let fv = p.filtered_value()?;
                p.expect_end("the echoed value")?;
                self.check_filters(&fv)?;
                self.emit_output(&fv, args);
            }
            "increment" | "decrement" => {
                let mut p = Parser::new(self.src, args)?;
                let var = p.ident()?;
                p.expect_end("the counter name")?;
                self.locals.push(var);
                plain(self);
            }
            "cycle" => {
                let values = Parser::new(self.src, args)?.cycle_values()?;
                self.note_roots(values);
                plain(self);
            }
            _ => {
                return Err(TemplateError::new(
                    ErrorKind::UnknownTag,
                    format!(
                        "unknown or unsupported tag `{name_s}`; header templates support if, unless, case, for, assign, capture, raw, comment, echo, increment, decrement and cycle"
                    ),
                )
                .at(self.src, name));
            }
        }
        Ok(())
    }

    /// Lexes a condition so that bad characters and unclosed strings are
    /// reported at their position; variables there are lenient.
    fn validate_operands(&mut self, args: Span) -> Result<(), TemplateError> {
        let ops = Parser::new(self.src, args)?.rest_operands()?;
        self.note_roots(ops);
        Ok(())
    }

    /// Records the variables these operands read from the caller's data.
    fn note_roots(&mut self, ops: Vec<Operand>) {
        for op in ops {
            if let Operand::Path { root, .. } = op
                && !self.locals.contains(&root)
                && !self.roots.contains(&root)
            {
                self.roots.push(root);
            }
        }
    }
}

fn syntax_ident(k: &str) -> bool {
    !k.is_empty() && k.chars().all(syntax::is_word)
}

fn push_lit(fast: &mut Vec<FastSeg>, text: &str) {
    if let Some(FastSeg::Lit(prev)) = fast.last_mut() {
        let mut s = prev.to_string();
        s.push_str(text);
        *prev = s.into_boxed_str();
    } else {
        fast.push(FastSeg::Lit(text.into()));
    }
}
