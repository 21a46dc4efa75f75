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

mod tags;

use super::error::{ErrorKind, TemplateError};
use super::filters;
use super::guard;
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

/// A variable the template reads from the caller's data: its root, the
/// first key under it (`credentials.crm` → `crm`) and where it is written.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub root: String,
    pub key: Option<String>,
    pub span: Span,
}

pub(crate) struct Compiled {
    pub liquid: liquid::Template,
    pub fast: Option<Vec<FastSeg>>,
    pub refs: Vec<RefInfo>,
    pub roots: Vec<String>,
    pub members: Vec<Member>,
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
    members: Vec<Member>,
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
        members: Vec::new(),
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
                let call = tags::TagCall {
                    span: *span,
                    name: *name,
                    name_s,
                    args: *args,
                };
                t.tag(&call, &mut stack)?;
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
        members: t.members,
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
            self.note_member(op);
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
            let def = filters::find(&f.name);
            if def.is_none_or(|d| d.internal) {
                let hint = if def.is_some() {
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
            if f.args.is_empty() && def.is_some_and(|d| d.needs_argument) {
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
                    guard::check_defined(&mut self.out, text, id);
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
        guard::mark(&mut self.out, id.unwrap_or(u32::MAX));
        let check = match (lenient, id) {
            (false, Some(_)) => format!(" | {}", guard::DEFINED),
            _ => String::new(),
        };
        let out = guard::OUT;
        self.out
            .push_str(&format!("{{{{ {value_text}{check} {rest} | {out} }}}}"));
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
        for op in &ops {
            self.note_member(op);
        }
    }

    /// Records a path read from the caller's data (not a local variable).
    fn note_member(&mut self, op: &Operand) {
        let Operand::Path { root, segs, span } = op else {
            return;
        };
        if self.locals.contains(root) {
            return;
        }
        if !self.roots.contains(root) {
            self.roots.push(root.clone());
        }
        let key = match segs.first() {
            Some(Seg::Key(k)) => Some(k.clone()),
            _ => None,
        };
        self.members.push(Member {
            root: root.clone(),
            key,
            span: *span,
        });
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
