//! Globs over dotted site and parameter names (`layers.*.attn.q`, `*.attn.v`, `*.gain`).
//!
//! `*` matches any run of characters, dots included, so `*.attn.q` matches every layer's
//! query projection (the form DESIGN §2 uses) and `layers.1*.mlp.up` matches layers 1 and
//! 10–19. `**` is accepted as a synonym of `*` for users coming from path globs.

/// Checks the pattern's syntax; the error says what is wrong with it.
pub fn validate(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("the glob is empty".into());
    }
    for comp in pattern.split('.') {
        if comp.is_empty() {
            return Err(format!(
                "the glob `{pattern}` has an empty component (two dots in a row or a dot at an end)"
            ));
        }
        if let Some(c) = comp
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '*'))
        {
            return Err(format!(
                "the glob `{pattern}` contains `{c}`; names use letters, digits and `_`, globs add `*`"
            ));
        }
    }
    Ok(())
}

/// Does `pattern` match the dotted `name`?
pub fn matches(pattern: &str, name: &str) -> bool {
    wildcard_matches(&pattern.replace("**", "*"), name)
}

/// `*`-wildcard match (greedy with backtracking to the last star: linear in practice,
/// quadratic at worst).
fn wildcard_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_any_run_of_characters() {
        assert!(matches("layers.*.attn.q", "layers.0.attn.q"));
        assert!(matches("*.attn.q", "layers.0.attn.q"));
        assert!(!matches("*.attn.q", "layers.0.attn.k"));
        assert!(matches("layers.1*.mlp.up", "layers.12.mlp.up"));
        assert!(!matches("layers.1*.mlp.up", "layers.2.mlp.up"));
        assert!(matches("layers.*.attn.*", "layers.3.attn.o"));
        assert!(matches("head", "head"));
        assert!(!matches("head", "heads"));
        assert!(matches("h*d", "head"));
        assert!(matches("*.gain", "layers.0.attn_norm.gain"));
    }

    #[test]
    fn double_star_is_a_synonym() {
        assert!(matches("**.attn.q", "layers.0.attn.q"));
        assert!(matches("**", "head"));
        assert!(matches("layers.**", "layers.1.mlp.down"));
    }

    #[test]
    fn validate_rejects_bad_patterns() {
        assert!(validate("layers.*.attn.q").is_ok());
        assert!(validate("").is_err());
        assert!(validate("layers..q").is_err());
        assert!(validate("layers.[0].q").is_err());
    }
}
