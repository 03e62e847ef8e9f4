//! Globs over dotted site and parameter names (`layers.*.attn.q`, `**.mlp.*`).
//!
//! A pattern is split at dots like the name. A component `**` matches any number of name
//! components (including none); any other component matches exactly one name component, with
//! `*` standing for any run of characters inside it (`attn.*`, `layers.1*.mlp.up`).

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
                "the glob `{pattern}` contains `{c}`; names use letters, digits and `_`, globs add `*` and `**`"
            ));
        }
    }
    Ok(())
}

/// Does `pattern` match the dotted `name`?
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let n: Vec<&str> = name.split('.').collect();
    // ok[i][j]: p[i..] matches n[j..]. Bottom-up so `**` never backtracks exponentially.
    let mut ok = vec![vec![false; n.len() + 1]; p.len() + 1];
    ok[p.len()][n.len()] = true;
    for i in (0..p.len()).rev() {
        for j in (0..=n.len()).rev() {
            ok[i][j] = if p[i] == "**" {
                ok[i + 1][j] || (j < n.len() && ok[i][j + 1])
            } else {
                j < n.len() && component_matches(p[i], n[j]) && ok[i + 1][j + 1]
            };
        }
    }
    ok[0][0]
}

/// `*`-wildcard match of one component (greedy with backtracking to the last star: linear
/// in practice, quadratic at worst).
fn component_matches(pattern: &str, text: &str) -> bool {
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
    fn star_matches_one_component_or_part() {
        assert!(matches("layers.*.attn.q", "layers.0.attn.q"));
        assert!(!matches("*.attn.q", "layers.0.attn.q"));
        assert!(matches("layers.1*.mlp.up", "layers.12.mlp.up"));
        assert!(!matches("layers.1*.mlp.up", "layers.2.mlp.up"));
        assert!(matches("layers.*.attn.*", "layers.3.attn.o"));
        assert!(matches("head", "head"));
        assert!(!matches("head", "heads"));
        assert!(matches("h*d", "head"));
    }

    #[test]
    fn double_star_matches_any_number_of_components() {
        assert!(matches("**.attn.q", "layers.0.attn.q"));
        assert!(matches("**", "head"));
        assert!(matches("layers.**", "layers.1.mlp.down"));
        assert!(matches("**.q.**", "layers.0.attn.q"));
        assert!(!matches("**.attn.q", "layers.0.attn.k"));
        assert!(matches("**.**.**.head", "head"));
    }

    #[test]
    fn validate_rejects_bad_patterns() {
        assert!(validate("layers.*.attn.q").is_ok());
        assert!(validate("").is_err());
        assert!(validate("layers..q").is_err());
        assert!(validate("layers.[0].q").is_err());
    }
}
