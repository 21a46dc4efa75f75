//! The `<< … >>` / `<% … %>` surface syntax.
//!
//! The scanner follows LiquidJS's tokenizer (which is what voice platforms
//! run) with the delimiters swapped: outputs end at the first `>>` outside a
//! quoted string, tags at the first `%>`, `<% raw %>` content runs to the
//! first `<% endraw %>`, and whitespace control trims neighbouring text
//! greedily. Every token keeps its byte span in the user's text, so errors
//! point at what the user wrote, not at the translated Liquid.

mod lex;
mod parse;
mod scan;

pub(crate) use lex::{Lexed, Tok, lex_expr};
pub(crate) use parse::{FilteredValue, Operand, Parser, Seg};
pub(crate) use scan::tokenize;

pub use super::span::Span;

/// One top-level piece of a template.
#[derive(Debug, Clone)]
pub(crate) enum Token {
    /// Literal text, already trimmed by whitespace control.
    Text(Span),
    /// `<< expr >>`; `inner` is the trimmed expression.
    Output { span: Span, inner: Span },
    /// `<% name args %>`.
    Tag { span: Span, name: Span, args: Span },
}

/// LiquidJS's `BLANK` class: ASCII whitespace plus the Unicode spaces.
pub(crate) fn is_blank(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{b}'
            | '\u{c}'
            | '\r'
            | ' '
            | '\u{a0}'
            | '\u{1680}'
            | '\u{180e}'
            | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// LiquidJS's identifier characters.
pub(crate) fn is_word(c: char) -> bool {
    if (c as u32) >= 128 {
        return !is_blank(c) && c != '\u{201c}' && c != '\u{201d}';
    }
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '?')
}

pub(crate) fn char_len(src: &str, i: usize) -> usize {
    src[i..].chars().next().map_or(1, char::len_utf8)
}

pub(crate) fn is_blank_at(src: &str, i: usize) -> bool {
    src[i..].chars().next().is_some_and(is_blank)
}

pub(crate) fn is_word_at(src: &str, i: usize) -> bool {
    src[i..].chars().next().is_some_and(is_word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn texts(src: &str) -> Vec<String> {
        tokenize(src)
            .unwrap()
            .into_iter()
            .map(|t| match t {
                Token::Text(s) => format!("T:{}", &src[s.start..s.end]),
                Token::Output { inner, .. } => format!("O:{}", &src[inner.start..inner.end]),
                Token::Tag { name, args, .. } => {
                    format!(
                        "G:{}|{}",
                        &src[name.start..name.end],
                        &src[args.start..args.end]
                    )
                }
            })
            .collect()
    }

    #[test]
    fn splits_outputs_tags_and_text() {
        assert_eq!(
            texts("Bearer << call.token >>!"),
            ["T:Bearer ", "O:call.token", "T:!"]
        );
        assert_eq!(
            texts("<% if a %>x<% endif %>"),
            ["G:if|a", "T:x", "G:endif|"]
        );
    }

    #[test]
    fn quoted_delimiters_do_not_close_outputs() {
        assert_eq!(texts(r#"<< "a>>b" >>"#), [r#"O:"a>>b""#]);
    }

    #[test]
    fn whitespace_control_trims_neighbours() {
        assert_eq!(texts("a \n <<- x ->> \n b"), ["T:a", "O:x", "T:b"]);
        assert_eq!(texts(" <%- if x -%> y "), ["G:if|x", "T:y "]);
    }

    #[test]
    fn raw_keeps_everything_literal() {
        assert_eq!(
            texts("<% raw %><< x >> <% if %><% endraw %>"),
            ["G:raw|", "T:<< x >> <% if %>", "G:endraw|"]
        );
    }

    #[test]
    fn unclosed_delimiters_are_errors_with_position() {
        let e = tokenize("ab << x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Syntax);
        assert_eq!((e.line(), e.column()), (1, 4));
        assert!(tokenize("<% if x").is_err());
        assert!(tokenize("<% raw %>abc").is_err());
    }

    #[test]
    fn parses_filtered_values() {
        let src = "call.metadata['x-y'] | default: 'public' | append: user.name";
        let mut p = Parser::new(src, Span::new(0, src.len())).unwrap();
        let fv = p.filtered_value().unwrap();
        assert!(p.at_end());
        match &fv.value {
            Operand::Path { root, segs, .. } => {
                assert_eq!(root, "call");
                assert_eq!(segs, &[Seg::Key("metadata".into()), Seg::Key("x-y".into())]);
            }
            _ => panic!("expected a path"),
        }
        assert_eq!(fv.filters.len(), 2);
        assert_eq!(fv.filters[1].name, "append");
        assert!(matches!(fv.filters[1].args[0], Operand::Path { .. }));
    }
}
