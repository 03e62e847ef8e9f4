//! "Did you mean …?" hints for unknown keys, sections, kinds and values, and word lists for
//! messages.
//!
//! The distance counts a swap of two neighbouring letters as one edit (optimal string
//! alignment), unlike plain Levenshtein: `hedas` → `heads` and `trian` → `train` are the most
//! common typos and must be within reach of a short word's threshold.

/// Optimal-string-alignment distance over chars (Levenshtein plus adjacent transpositions).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j]. Inputs are short identifiers.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The closest candidate, if it is close enough to be a plausible typo: a case-insensitive
/// match, or within a third of the word's length (at least 1, at most 3 edits).
pub fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    if let Some(c) = candidates.iter().find(|c| c.eq_ignore_ascii_case(word)) {
        return Some(c);
    }
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A hint for an unknown word: "did you mean `x`?" when one is close, else the full list.
pub fn hint(word: &str, candidates: &[&str]) -> String {
    match closest(word, candidates) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("expected {}", list(candidates)),
    }
}

/// `a`, `b` or `c`.
pub fn list(words: &[&str]) -> String {
    join(words, "or")
}

/// `a`, `b` and `c`.
pub fn list_all(words: &[&str]) -> String {
    join(words, "and")
}

fn join(words: &[&str], conj: &str) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
    match quoted.split_last() {
        None => String::from("nothing"),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {conj} {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_swaps_as_one_edit() {
        assert_eq!(edit_distance("hedas", "heads"), 1);
        assert_eq!(edit_distance("trian", "train"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn suggests_only_close_words() {
        assert_eq!(closest("hedas", &["vocab", "heads"]), Some("heads"));
        let keys = ["vocab", "d_model", "heads", "kv_heads"];
        assert_eq!(closest("vocb", &keys), Some("vocab"));
        assert_eq!(closest("D_MODEL", &keys), Some("d_model"));
        assert_eq!(closest("zzz", &keys), None);
        assert_eq!(hint("zzz", &["a", "b"]), "expected `a` or `b`");
        assert_eq!(list_all(&["a", "b", "c"]), "`a`, `b` and `c`");
    }
}
