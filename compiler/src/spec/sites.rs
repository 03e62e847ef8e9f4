//! The linear sites of a model (`layers.{i}.attn.{q,k,v,o}`, `layers.{i}.mlp.{gate,up,down}`,
//! `head`), the kind each resolves to (`linear`, then overrides in order, later ones winning),
//! and the checks that depend on a site's widths (per-head splits, monarch blocks).

use bfly_grammar::{Diagnostic, Span, Spanned, suggest};

use super::config::{LinearKind, LinearOp, MlpKind, ModelConfig, Site, SiteRole};
use super::glob;
use super::read::GLOB_SYNTAX;
use super::sink::Sink;

/// Every site of the model with its widths, kinds not yet resolved (default: dense).
fn enumerate(m: &ModelConfig) -> Vec<Site> {
    let d = m.d_model.node;
    let kv = m.kv_width();
    let hidden = m.mlp.node.hidden;
    let mut roles: Vec<(SiteRole, &str, u64, u64)> = vec![
        (SiteRole::Q, "attn.q", d, d),
        (SiteRole::K, "attn.k", d, kv),
        (SiteRole::V, "attn.v", d, kv),
        (SiteRole::O, "attn.o", d, d),
    ];
    if m.mlp.node.kind == MlpKind::Swiglu {
        roles.push((SiteRole::Gate, "mlp.gate", d, hidden));
    }
    roles.push((SiteRole::Up, "mlp.up", d, hidden));
    roles.push((SiteRole::Down, "mlp.down", hidden, d));
    let site = |name: String, role, layer, in_features, out_features| Site {
        name,
        role,
        layer,
        in_features,
        out_features,
        kind: LinearKind::DENSE,
        kind_span: m.keyword,
        lora: None,
    };
    let mut sites = Vec::new();
    for i in 0..m.layers.node {
        for &(role, suffix, inf, outf) in &roles {
            sites.push(site(
                format!("layers.{i}.{suffix}"),
                role,
                Some(i),
                inf,
                outf,
            ));
        }
    }
    if !m.tie_embeddings.node {
        sites.push(site("head".into(), SiteRole::Head, None, d, m.vocab.node));
    }
    sites
}

/// Resolves every site's kind and reports overrides that match nothing. Width checks run only
/// when `check_widths` (every override read cleanly), to avoid errors that a broken override
/// would have prevented.
pub fn resolve(sink: &mut Sink<'_>, m: &ModelConfig, check_widths: bool) -> Vec<Site> {
    let mut sites = enumerate(m);
    for s in &mut sites {
        if s.role == SiteRole::Head {
            // `linear` is for the transformer body; the head stays dense unless named.
            s.kind_span = m.tie_embeddings.span;
        } else {
            s.kind = m.linear.node;
            s.kind_span = m.linear.span;
        }
    }
    for o in &m.overrides {
        let mut hit = false;
        for s in sites
            .iter_mut()
            .filter(|s| glob::matches(&o.pattern.node, &s.name))
        {
            s.kind = o.kind.node;
            s.kind_span = o.kind.span;
            hit = true;
        }
        if !hit {
            sink.push(no_match(m, &sites, &o.pattern, "override"));
        }
    }
    if check_widths {
        check_site_widths(sink, m, &sites);
    }
    sites
}

/// "glob matches no site", with a corrected glob when one is obvious and the site list.
pub fn no_match(m: &ModelConfig, sites: &[Site], glob: &Spanned<String>, what: &str) -> Diagnostic {
    let g = &glob.node;
    let mut d = Diagnostic::error(format!("{what} glob \"{g}\" matches no site"), glob.span)
        .with_label("matches nothing");
    let tied_head = m.tie_embeddings.node && glob::matches(g, "head");
    d = match better_glob(g, sites) {
        Some(fix) => d.with_hint(format!("did you mean \"{fix}\"?")),
        None if tied_head => {
            d.with_hint("set `tie_embeddings = false` to give the model its own `head` projection")
        }
        None => d.with_hint(GLOB_SYNTAX),
    };
    d = d.with_note(site_list(m));
    if tied_head {
        d = d.with_note(
            "`head` exists only with `tie_embeddings = false`; tied logits reuse `embed.weight`",
        );
    }
    d
}

/// A nearby glob that does match: a typo fixed in one component.
fn better_glob(g: &str, sites: &[Site]) -> Option<String> {
    let matches_any = |p: &str| sites.iter().any(|s| glob::matches(p, &s.name));
    let comps: Vec<&str> = g.split('.').collect();
    let mut words: Vec<&str> = sites.iter().flat_map(|s| s.name.split('.')).collect();
    words.sort_unstable();
    words.dedup();
    for (i, c) in comps.iter().enumerate() {
        if c.contains('*') {
            continue;
        }
        if let Some(w) = suggest::closest(c, &words) {
            let mut fixed = comps.clone();
            fixed[i] = w;
            let fixed = fixed.join(".");
            if matches_any(&fixed) {
                return Some(fixed);
            }
        }
    }
    None
}

/// The sites of the model, compactly: per-layer names with `I` for the layer index.
pub fn site_list(m: &ModelConfig) -> String {
    let mlp: &[&str] = match m.mlp.node.kind {
        MlpKind::Swiglu => &["gate", "up", "down"],
        MlpKind::Gelu => &["up", "down"],
    };
    let layers = m.layers.node;
    let idx = if layers == 1 {
        "0".to_string()
    } else {
        "I".to_string()
    };
    let mut names: Vec<String> = ["q", "k", "v", "o"]
        .iter()
        .map(|p| format!("`layers.{idx}.attn.{p}`"))
        .collect();
    names.extend(mlp.iter().map(|p| format!("`layers.{idx}.mlp.{p}`")));
    let mut s = format!("the sites are {}", names.join(", "));
    if layers > 1 {
        s.push_str(&format!(" for I from 0 to {}", layers - 1));
    }
    if !m.tie_embeddings.node {
        s.push_str(", and `head`");
    }
    s
}

/// What can be wrong with a site's widths for its kind.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Problem {
    /// `per_head = true` but a width is not a multiple of `heads`.
    PerHead,
    /// monarch `blocks` does not divide a (per-group) width.
    MonarchBlocks(u64),
}

fn site_problem(m: &ModelConfig, s: &Site) -> Option<Problem> {
    let g = s.groups(m.heads.node);
    let (inf, outf) = (s.in_features, s.out_features);
    if s.kind.per_head && (inf % g != 0 || outf % g != 0) {
        return Some(Problem::PerHead);
    }
    match s.kind.op {
        LinearOp::Monarch { blocks }
            if !(inf / g).is_multiple_of(blocks) || !(outf / g).is_multiple_of(blocks) =>
        {
            Some(Problem::MonarchBlocks(blocks))
        }
        _ => None,
    }
}

/// Reports width problems once per (spec entry, problem), naming every affected site: one
/// `linear = …` line that fits no MLP site is one mistake, not one per layer and role.
fn check_site_widths(sink: &mut Sink<'_>, m: &ModelConfig, sites: &[Site]) {
    let mut groups: Vec<(Span, Problem, Vec<&Site>)> = Vec::new();
    for s in sites {
        let Some(p) = site_problem(m, s) else {
            continue;
        };
        match groups
            .iter_mut()
            .find(|(span, q, _)| *span == s.kind_span && *q == p)
        {
            Some((_, _, list)) => list.push(s),
            None => groups.push((s.kind_span, p, vec![s])),
        }
    }
    for (span, problem, affected) in groups {
        let Some(first) = affected.first() else {
            continue;
        };
        let heads = m.heads.node;
        let (inf, outf) = (first.in_features, first.out_features);
        let shown = display_name(m, &affected, first);
        let mut d = match problem {
            Problem::PerHead => {
                let bad = if inf % heads != 0 { inf } else { outf };
                let plain = LinearKind {
                    per_head: false,
                    ..first.kind
                };
                Diagnostic::error(
                    format!(
                        "`per_head = true` cannot split `{shown}` ({inf} → {outf}) into {heads} heads: {bad} is not a multiple of {heads}"
                    ),
                    span,
                )
                .with_label("the per-head split does not divide")
                .with_hint(format!(
                    "give these sites a full-width kind: {}",
                    override_lines(m, sites, &affected, &plain.to_string())
                ))
            }
            Problem::MonarchBlocks(blocks) => {
                // `blocks` must fit every site this entry applies to, not just the broken ones.
                let g = first.groups(heads);
                let fit = sites
                    .iter()
                    .filter(|s| s.kind_span == span)
                    .fold(0, |acc, s| {
                        gcd(gcd(acc, s.in_features / g), s.out_features / g)
                    });
                let choices: Vec<String> = (1..=fit)
                    .filter(|b| fit % b == 0)
                    .take(12)
                    .map(|b| b.to_string())
                    .collect();
                let per = if g > 1 { " per head" } else { "" };
                Diagnostic::error(
                    format!(
                        "monarch `blocks` = {blocks} does not divide the widths of `{shown}` ({} → {}{per})",
                        inf / g,
                        outf / g
                    ),
                    span,
                )
                .with_label(format!("{blocks} blocks do not divide {} → {}", inf / g, outf / g))
                .with_hint(format!(
                    "choose `blocks` from {}, which divide every site this entry applies to",
                    choices.join(", ")
                ))
            }
        };
        let mut others: Vec<String> = Vec::new();
        for s in &affected[1..] {
            let g = display_name(m, &affected, s);
            if g != shown && !others.iter().any(|o| o.starts_with(&format!("`{g}`"))) {
                others.push(format!("`{g}` ({} → {})", s.in_features, s.out_features));
            }
        }
        if !others.is_empty() {
            d = d.with_note(format!("the same applies to {}", others.join(", ")));
        }
        sink.push(d);
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// `override "GLOB" = KIND` lines covering exactly the affected sites, with as few globs as
/// possible (`layers.*.mlp.*` rather than one line per role).
fn override_lines(m: &ModelConfig, sites: &[Site], affected: &[&Site], kind: &str) -> String {
    let wanted: Vec<&str> = affected.iter().map(|s| s.name.as_str()).collect();
    let exact = |g: &str| {
        sites
            .iter()
            .filter(|s| glob::matches(g, &s.name))
            .map(|s| s.name.as_str())
            .eq(wanted.iter().copied())
    };
    let mut globs: Vec<String> = Vec::new();
    if let Some(g) = ["layers.*.mlp.*", "layers.*.attn.*"]
        .iter()
        .find(|g| exact(g))
    {
        globs.push((*g).to_string());
    } else {
        for s in affected {
            let g = display_name(m, affected, s);
            if !globs.contains(&g) {
                globs.push(g);
            }
        }
    }
    globs
        .iter()
        .map(|g| format!("`override \"{g}\" = {kind}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How to name an affected site: by its role glob when every layer is affected alike.
fn display_name(m: &ModelConfig, affected: &[&Site], s: &Site) -> String {
    let same_role = affected.iter().filter(|a| a.role == s.role).count() as u64;
    if s.layer.is_some() && same_role == m.layers.node {
        role_glob(s)
    } else {
        s.name.clone()
    }
}

/// The glob naming this site's role in every layer: `layers.*.mlp.up` (or `head`).
fn role_glob(s: &Site) -> String {
    match s.name.splitn(3, '.').nth(2) {
        Some(suffix) if s.layer.is_some() => format!("layers.*.{suffix}"),
        _ => s.name.clone(),
    }
}
