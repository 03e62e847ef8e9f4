//! Runs a pipeline: each pass in order, the verifier after each, optionally stopping after a
//! named stage.

use bfly_grammar::Diagnostic;
use bfly_grammar::suggest;
use bfly_ir::{Graph, verify};

use super::{Mode, Pass, PassContext};

/// The stage before any pass: the graph as the builder made it (`--after build`).
pub const BUILD_STAGE: &str = "build";

/// Every stage a run can stop after: `build`, then each pass name in order.
pub fn stage_names(passes: &[Box<dyn Pass>]) -> Vec<&'static str> {
    std::iter::once(BUILD_STAGE)
        .chain(passes.iter().map(|p| p.name()))
        .collect()
}

/// The stages of a pipeline (`build` first), numbered from 01 as in the pass snapshots, one per line with what it
/// does (`bfly inspect --passes`).
pub fn describe_pipeline(mode: Mode, passes: &[Box<dyn Pass>]) -> String {
    let mut text = format!("{mode} pipeline (show the graph after a stage with --after NAME):\n");
    let build = format!("the {mode} graph as the builder makes it");
    let rows: Vec<(&str, &str)> = std::iter::once((BUILD_STAGE, build.as_str()))
        .chain(passes.iter().map(|p| (p.name(), p.description())))
        .collect();
    // Descriptions line up after the longest stage name.
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (i, (name, what)) in rows.iter().enumerate() {
        text.push_str(&format!("  {:02}  {name:<width$} {what}\n", i + 1));
    }
    text
}

/// Checks that `stop` names a stage of `passes`; the error lists them all (and the closest
/// one, for a typo).
pub fn check_stop(passes: &[Box<dyn Pass>], stop: &str) -> Result<(), String> {
    let names = stage_names(passes);
    if names.contains(&stop) {
        return Ok(());
    }
    let closest = suggest::closest(stop, &names)
        .map(|c| format!("did you mean `{c}`? "))
        .unwrap_or_default();
    Err(format!(
        "unknown pass `{stop}`: {closest}the stages are {}",
        suggest::list(&names)
    ))
}

/// Runs `passes` over `g`, verifying after each, up to and including the stage `stop` (all of
/// them for `None`; none for `build`).
pub fn run_passes(
    g: &mut Graph,
    passes: &[Box<dyn Pass>],
    cx: &PassContext<'_>,
    stop: Option<&str>,
) -> Result<(), Vec<Diagnostic>> {
    run_passes_observed(g, passes, cx, stop, &mut |_, _| {})
}

/// [`run_passes`], calling `observe` with each pass and the graph right after it (verified).
pub fn run_passes_observed(
    g: &mut Graph,
    passes: &[Box<dyn Pass>],
    cx: &PassContext<'_>,
    stop: Option<&str>,
    observe: &mut dyn FnMut(&dyn Pass, &Graph),
) -> Result<(), Vec<Diagnostic>> {
    if let Some(stop) = stop {
        check_stop(passes, stop).map_err(|m| vec![cx.error("pipeline", m)])?;
    }
    check(g, cx, BUILD_STAGE)?;
    if stop == Some(BUILD_STAGE) {
        return Ok(());
    }
    for pass in passes {
        pass.run(g, cx)?;
        check(g, cx, pass.name())?;
        observe(pass.as_ref(), g);
        if stop == Some(pass.name()) {
            break;
        }
    }
    Ok(())
}

/// Verifies the graph after `stage`; a failure is a bug of that stage.
fn check(g: &Graph, cx: &PassContext<'_>, stage: &str) -> Result<(), Vec<Diagnostic>> {
    verify(g).map_err(|errors| {
        let mut d = cx.bug(stage, format!("the graph does not verify after `{stage}`"));
        for e in &errors {
            d = d.with_note(e.to_string());
        }
        vec![d]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::test_graphs::small_spec;
    use crate::passes::{Mode, pipeline};
    use bfly_ir::{DType, Op, Output, Type};

    /// A pass that breaks the graph: an output pointing at a removed node.
    struct Vandal;

    impl Pass for Vandal {
        fn name(&self) -> &'static str {
            "vandal"
        }
        fn description(&self) -> &'static str {
            "breaks the graph"
        }
        fn run(&self, g: &mut Graph, _: &PassContext<'_>) -> Result<(), Vec<Diagnostic>> {
            let x = g.add_input("x2", Type::scalar(DType::F32));
            let y = g.add1(Op::Neg, &[x], None).expect("neg");
            let mut outputs = g.outputs().to_vec();
            outputs.push(Output::value("gone", y));
            g.set_outputs(outputs);
            g.remove_node(y.node);
            Ok(())
        }
    }

    #[test]
    fn a_graph_broken_by_a_pass_is_reported_naming_the_pass() {
        let (spec, file) = small_spec();
        let mut g = crate::build_graph(&spec, &file).expect("builds");
        let passes: Vec<Box<dyn Pass>> = vec![Box::new(super::super::Dce), Box::new(Vandal)];
        let cx = PassContext::new(&spec, Mode::Infer);
        let errs = run_passes(&mut g, &passes, &cx, None).expect_err("verify fails");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("pass `vandal`"), "{:?}", errs[0]);
        assert!(
            errs[0]
                .hint
                .as_deref()
                .unwrap_or("")
                .contains("bug in bfly")
        );
        assert!(
            errs[0].notes.iter().any(|n| n.contains("%gone")),
            "{:?}",
            errs[0]
        );
    }

    #[test]
    fn stops_after_the_named_stage() {
        let (spec, file) = small_spec();
        let passes = pipeline(Mode::Train, &spec);
        let cx = PassContext::new(&spec, Mode::Train);
        let mut seen = Vec::new();
        let mut g = crate::build_graph_for(&spec, &file, Mode::Train).expect("builds");
        run_passes_observed(&mut g, &passes, &cx, Some("autodiff"), &mut |p, _| {
            seen.push(p.name())
        })
        .expect("runs");
        assert_eq!(seen, ["loss", "autodiff"]);
        assert!(g.outputs().iter().any(|o| o.name.starts_with("grad_")));

        let built = crate::build_graph_for(&spec, &file, Mode::Train).expect("builds");
        let mut g = built.clone();
        run_passes(&mut g, &passes, &cx, Some(BUILD_STAGE)).expect("runs");
        assert_eq!(bfly_ir::print_graph(&g), bfly_ir::print_graph(&built));
    }

    #[test]
    fn an_unknown_stage_lists_the_pipeline() {
        let (spec, _) = small_spec();
        let passes = pipeline(Mode::Train, &spec);
        let err = check_stop(&passes, "autodif").expect_err("unknown");
        assert!(err.contains("did you mean `autodiff`?"), "{err}");
        assert!(
            err.contains("`build`, `loss`, `autodiff`, `optimizer`, `dce`, `cse` or `fuse`"),
            "{err}"
        );
        // The folds come first; later stages are each pass's own business.
        let infer = stage_names(&pipeline(Mode::Infer, &spec));
        let folds = [
            "fold-lora",
            "fold-norm-gain",
            "compose-butterflies",
            "const-fold",
        ];
        assert_eq!(infer[0], "build", "{infer:?}");
        assert_eq!(infer[1..5], folds, "{infer:?}");
        assert!(
            infer.contains(&"dce") && infer.contains(&"cse"),
            "{infer:?}"
        );
        let listing = describe_pipeline(Mode::Infer, &pipeline(Mode::Infer, &spec));
        assert!(listing.contains("  01  build "), "{listing}");
        assert!(listing.contains("  02  fold-lora "), "{listing}");
    }
}
