//! Decoding of number and string literals, shared by both grammars.
//!
//! The grammars lex literals loosely (e.g. any run of digits, letters and dots
//! as a number) so that malformed literals get a precise diagnostic here
//! instead of a vague parse error.

use crate::diagnostic::Diagnostic;
use crate::span::Span;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

/// Shape of a well-formed number: `-?D+(.D+)?([eE][+-]?D+)?`.
/// Returns whether it is a float (has a fraction or an exponent).
fn number_shape(text: &str) -> Option<bool> {
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return None;
    }
    let mut float = false;
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return None;
        }
        float = true;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
        float = true;
    }
    (i == b.len()).then_some(float)
}

fn malformed(text: &str, span: Span) -> Diagnostic {
    let d = Diagnostic::error(format!("malformed number `{text}`"), span)
        .with_label("not a valid number");
    let body = text.trim_start_matches('-');
    if let Some(int_part) = text.strip_suffix('.') {
        d.with_hint(format!(
            "a decimal point needs digits after it: write `{int_part}.0`"
        ))
    } else if body.starts_with(|c: char| c.is_ascii_digit())
        && body
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .starts_with(|c: char| c.is_alphabetic() || c == '_')
        && !body.contains('.')
    {
        d.with_hint(
            "names cannot start with a digit; numbers look like `42`, `-3`, `0.5` or `1e-5`",
        )
    } else {
        d.with_hint("numbers look like `42`, `-3`, `0.5` or `1e-5`")
    }
}

/// Decodes an integer or float literal.
pub(crate) fn number(text: &str, span: Span) -> Result<Number, Diagnostic> {
    match number_shape(text) {
        None => Err(malformed(text, span)),
        Some(false) => text.parse::<i64>().map(Number::Int).map_err(|_| {
            Diagnostic::error(format!("integer `{text}` is out of range"), span)
                .with_label("does not fit in a 64-bit signed integer")
                .with_hint("integers must lie between -9223372036854775808 and 9223372036854775807")
        }),
        Some(true) => match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Number::Float(v)),
            _ => Err(
                Diagnostic::error(format!("number `{text}` is out of range"), span)
                    .with_label("too large for a 64-bit float"),
            ),
        },
    }
}

/// Decodes a non-negative integer literal; `what` names it in messages ("a dimension").
pub(crate) fn unsigned(text: &str, span: Span, what: &str) -> Result<u64, Diagnostic> {
    match number(text, span)? {
        Number::Int(_) => text.parse::<u64>().map_err(|_| {
            if text.starts_with('-') {
                Diagnostic::error(format!("{what} must not be negative"), span)
                    .with_label("negative number")
            } else {
                Diagnostic::error(format!("`{text}` is too large for {what}"), span)
                    .with_label("too large")
            }
        }),
        Number::Float(_) => Err(
            Diagnostic::error(format!("{what} must be a whole number"), span)
                .with_label("this is a float")
                .with_hint("write an integer such as `64`"),
        ),
    }
}

/// Decodes a quoted string literal (`raw` includes both quotes), resolving the
/// escapes `\"`, `\\`, `\n` and `\t`.
pub(crate) fn string(raw: &str, span: Span) -> Result<String, Diagnostic> {
    let inner = raw
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .filter(|_| raw.len() >= 2)
        .ok_or_else(|| {
            Diagnostic::error("unterminated string", span)
                .with_label("this string is never closed")
                .with_hint("add a closing `\"`")
        })?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let esc_start = span.start + 1 + i;
        match chars.next() {
            Some((_, '"')) => out.push('"'),
            Some((_, '\\')) => out.push('\\'),
            Some((_, 'n')) => out.push('\n'),
            Some((_, 't')) => out.push('\t'),
            other => {
                let len = 1 + other.map_or(0, |(_, e)| e.len_utf8());
                let shown = &raw[1 + i..1 + i + len];
                return Err(Diagnostic::error(
                    format!("unknown escape `{shown}` in string"),
                    Span::new(esc_start, esc_start + len),
                )
                .with_label("unknown escape")
                .with_hint(
                    "the supported escapes are `\\\"`, `\\\\`, `\\n` and `\\t`; write `\\\\` for a backslash",
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> Result<Number, Diagnostic> {
        number(s, Span::new(0, s.len()))
    }

    #[test]
    fn numbers() {
        assert_eq!(num("256"), Ok(Number::Int(256)));
        assert_eq!(num("-3"), Ok(Number::Int(-3)));
        assert_eq!(num("-9223372036854775808"), Ok(Number::Int(i64::MIN)));
        assert_eq!(num("1e-5"), Ok(Number::Float(1e-5)));
        assert_eq!(num("3e-4"), Ok(Number::Float(3e-4)));
        assert_eq!(num("0.9"), Ok(Number::Float(0.9)));
        assert_eq!(num("-0.5"), Ok(Number::Float(-0.5)));
        assert_eq!(num("10000.0"), Ok(Number::Float(10000.0)));
        assert_eq!(num("1e20"), Ok(Number::Float(1e20)));
        assert_eq!(num("1E+2"), Ok(Number::Float(100.0)));
        for bad in ["2.", "1.2.3", "256abc", "1e", "1e+", "-", "0x10", "1_000"] {
            assert!(num(bad).is_err(), "{bad}");
        }
        let e = num("2.").unwrap_err();
        assert!(e.hint.unwrap_or_default().contains("`2.0`"));
        assert!(num("99999999999999999999").is_err());
        assert!(num("1e999").is_err());
    }

    #[test]
    fn unsigned_values() {
        assert_eq!(unsigned("64", Span::default(), "a dimension"), Ok(64));
        assert!(unsigned("-1", Span::default(), "a dimension").is_err());
        assert!(unsigned("1.5", Span::default(), "a dimension").is_err());
        let big = unsigned("18446744073709551615", Span::default(), "a dimension");
        assert!(big.is_err_and(|d| d.message.contains("out of range")));
    }

    #[test]
    fn strings() {
        let s = |r: &str| string(r, Span::new(10, 10 + r.len()));
        assert_eq!(s(r#""a\"b\\c\nd\te""#), Ok("a\"b\\c\nd\te".to_string()));
        assert_eq!(s(r#""""#), Ok(String::new()));
        let e = s(r#""ab\qc""#).unwrap_err();
        assert_eq!(e.span, Span::new(13, 15));
        assert!(s("\"abc").is_err());
        assert!(s("\"").is_err());
        assert!(s("\"\\é\"").is_err());
    }
}
