//! The lexer for expressions inside outputs and tags.

use super::{Span, char_len, is_blank, is_word, is_word_at};
use crate::error::{ErrorKind, TemplateError};

/// A lexical token of a Liquid expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    Num,
    Dot,
    DotDot,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Pipe,
    Colon,
    Comma,
    Op,
}

#[derive(Debug, Clone)]
pub(crate) struct Lexed {
    pub tok: Tok,
    pub span: Span,
}

/// Splits an expression (`span` is where it stands in the template).
pub(crate) fn lex_expr(src: &str, span: Span) -> Result<Vec<Lexed>, TemplateError> {
    let text = &src[span.start..span.end];
    let at = |from: usize, to: usize| Span::new(span.start + from, span.start + to);
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().unwrap_or(' ');
        if is_blank(c) {
            i += c.len_utf8();
            continue;
        }
        let start = i;
        let (tok, end) = match c {
            '"' | '\'' => match string(text, i) {
                Some((body, end)) => (Tok::Str(body.to_string()), end),
                None => {
                    let e = TemplateError::new(
                        ErrorKind::Syntax,
                        "string is not closed: add the closing quote",
                    );
                    return Err(e.at(src, at(start, text.len())));
                }
            },
            '0'..='9' => (Tok::Num, number(text, i)),
            '-' if text.as_bytes().get(i + 1).is_some_and(u8::is_ascii_digit) => {
                (Tok::Num, number(text, i + 1))
            }
            c if is_word(c) => {
                let mut j = i;
                while j < text.len() && is_word_at(text, j) {
                    j += char_len(text, j);
                }
                (Tok::Ident(text[start..j].to_string()), j)
            }
            c => match punctuation(text.as_bytes(), i) {
                Some(found) => found,
                None => {
                    let e = TemplateError::new(
                        ErrorKind::Syntax,
                        format!("unexpected character `{c}` in expression"),
                    );
                    return Err(e.at(src, at(start, i + c.len_utf8())));
                }
            },
        };
        i = end;
        if tok == Tok::Num && integer_overflows(&text[start..i]) {
            // `liquid` panics on integers that overflow i64: refuse them here.
            let e = TemplateError::new(
                ErrorKind::Syntax,
                "integer literal out of range (at most 19 digits)",
            );
            return Err(e.at(src, at(start, i)));
        }
        out.push(Lexed {
            tok,
            span: at(start, i),
        });
    }
    Ok(out)
}

/// A quoted string starting at `i`: its body and where it ends, or `None`
/// when it is not closed. A backslash escapes the next byte.
fn string(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    let quote = b[i];
    let mut j = i + 1;
    let mut escaped = false;
    while j < b.len() {
        let d = b[j];
        j += 1;
        if d == quote && !escaped {
            return Some((&text[i + 1..j - 1], j));
        }
        escaped = !escaped && d == b'\\';
    }
    None
}

/// The end of the digits (and one fraction) starting at `i`.
fn number(text: &str, mut i: usize) -> usize {
    let b = text.as_bytes();
    while i < b.len()
        && (b[i].is_ascii_digit() || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
    {
        i += 1;
    }
    i
}

fn integer_overflows(digits: &str) -> bool {
    !digits.contains('.') && digits.parse::<i64>().is_err()
}

/// Punctuation and comparison operators at `i`, and where they end.
fn punctuation(b: &[u8], i: usize) -> Option<(Tok, usize)> {
    let next = b.get(i + 1).copied();
    Some(match b[i] {
        b'.' if next == Some(b'.') => (Tok::DotDot, i + 2),
        b'.' => (Tok::Dot, i + 1),
        b'[' => (Tok::LBracket, i + 1),
        b']' => (Tok::RBracket, i + 1),
        b'(' => (Tok::LParen, i + 1),
        b')' => (Tok::RParen, i + 1),
        b'|' => (Tok::Pipe, i + 1),
        b':' => (Tok::Colon, i + 1),
        b',' => (Tok::Comma, i + 1),
        c @ (b'=' | b'!' | b'<' | b'>') => {
            let two = next == Some(b'=') || (c == b'<' && next == Some(b'>'));
            (Tok::Op, if two { i + 2 } else { i + 1 })
        }
        _ => return None,
    })
}
