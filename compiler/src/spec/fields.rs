//! The key table of one section: finds duplicate and unknown keys up front, then hands out
//! entries by name and reports required keys that are missing.

use bfly_grammar::{Diagnostic, Item, Span, Spanned, Value};

use super::sink::Sink;
use bfly_grammar::suggest;

/// `key = value` as written.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    pub key: &'a Spanned<String>,
    pub value: &'a Value,
}

/// `override "GLOB" = KIND` as written.
#[derive(Clone, Copy)]
pub struct OverrideItem<'a> {
    pub pattern: &'a Spanned<String>,
    pub value: &'a Value,
}

pub struct Fields<'a> {
    section: &'a str,
    header: Span,
    entries: Vec<Entry<'a>>,
    pub overrides: Vec<OverrideItem<'a>>,
    /// Keys suggested for unknown keys: a missing required key that was only misspelled is
    /// already reported by the unknown-key error ("did you mean `heads`?").
    suggested: Vec<&'static str>,
}

/// A key a section accepts and an example value (used in "add `key = …`" hints).
pub struct KeyDoc {
    pub key: &'static str,
    pub example: &'static str,
}

impl<'a> Fields<'a> {
    /// Collects the items of section `section` (whose header spans `header`). Unknown and
    /// duplicate keys are reported and dropped; overrides are kept only if allowed.
    pub fn collect(
        sink: &mut Sink<'_>,
        section: &'a str,
        header: Span,
        items: &'a [Item],
        keys: &[KeyDoc],
        allow_overrides: bool,
    ) -> Fields<'a> {
        let names: Vec<&str> = keys.iter().map(|k| k.key).collect();
        let mut fields = Fields {
            section,
            header,
            entries: Vec::new(),
            overrides: Vec::new(),
            suggested: Vec::new(),
        };
        for item in items {
            match item {
                Item::Assign { key, value, .. } => {
                    if !names.contains(&key.node.as_str()) {
                        if let Some(k) = suggest::closest(&key.node, &names)
                            && let Some(doc) = keys.iter().find(|d| d.key == k)
                        {
                            fields.suggested.push(doc.key);
                        }
                        sink.push(
                            Diagnostic::error(
                                format!("unknown key `{}` in the `{section}` section", key.node),
                                key.span,
                            )
                            .with_label("unknown key")
                            .with_hint(suggest::hint(&key.node, &names)),
                        );
                    } else if let Some(first) = fields.get(&key.node) {
                        let first_at = sink.at(first.key.span);
                        sink.push(
                            Diagnostic::error(
                                format!("`{}` is set twice in the `{section}` section", key.node),
                                key.span,
                            )
                            .with_label("set again here")
                            .with_hint("keep one of the two entries")
                            .with_note(format!("first set at {first_at}")),
                        );
                    } else {
                        fields.entries.push(Entry { key, value });
                    }
                }
                Item::Override { pattern, value, .. } => {
                    if allow_overrides {
                        fields.overrides.push(OverrideItem { pattern, value });
                    } else {
                        sink.push(
                            Diagnostic::error(
                                format!("`override` is not allowed in the `{section}` section"),
                                pattern.span,
                            )
                            .with_label("override outside `model`")
                            .with_hint("move the override into the `model` section"),
                        );
                    }
                }
            }
        }
        fields
    }

    pub fn get(&self, key: &str) -> Option<Entry<'a>> {
        self.entries.iter().find(|e| e.key.node == key).copied()
    }

    /// Reports, in one diagnostic at the section header, every required key that is absent.
    pub fn require(&self, sink: &mut Sink<'_>, required: &[KeyDoc]) {
        let missing: Vec<&KeyDoc> = required
            .iter()
            .filter(|k| self.get(k.key).is_none() && !self.suggested.contains(&k.key))
            .collect();
        if missing.is_empty() {
            return;
        }
        let names: Vec<&str> = missing.iter().map(|k| k.key).collect();
        let plural = if missing.len() == 1 { "key" } else { "keys" };
        let example: Vec<String> = missing
            .iter()
            .map(|k| format!("`{} = {}`", k.key, k.example))
            .collect();
        sink.push(
            Diagnostic::error(
                format!(
                    "the `{}` section is missing the required {plural} {}",
                    self.section,
                    suggest::list_all(&names)
                ),
                self.header,
            )
            .with_label(format!("missing {}", names.join(", ")))
            .with_hint(format!("add {}", example.join(", "))),
        );
    }
}
