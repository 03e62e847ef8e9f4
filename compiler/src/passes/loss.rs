//! The `loss` pass: turns the batched forward into a loss graph. Adds the input
//! `%targets: i32[B, T]` (the next token at every position), computes
//! `cross_entropy %logits, %targets` (mean over all `B·T` positions) and makes `%loss: f32[]`
//! the first output, in place of `%logits` (which stays an internal value).

use bfly_grammar::Diagnostic;
use bfly_ir::{DType, Graph, Op, Output, Type};

use super::{Pass, PassContext};

pub struct Loss;

/// Names the pass gives its input and output; `autodiff` differentiates `LOSS_OUTPUT`.
pub const TARGETS_INPUT: &str = "targets";
pub const LOSS_OUTPUT: &str = "loss";
const LOGITS_OUTPUT: &str = "logits";

impl Pass for Loss {
    fn name(&self) -> &'static str {
        "loss"
    }

    fn description(&self) -> &'static str {
        "add %targets and the mean cross-entropy %loss of the logits"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext<'_>) -> Result<(), Vec<Diagnostic>> {
        let err = |m: String| vec![cx.error(self.name(), m)];
        let Some(logits) = g
            .outputs()
            .iter()
            .find(|o| !o.param && o.name == LOGITS_OUTPUT)
            .map(|o| o.value)
        else {
            return Err(err(format!("the graph has no `%{LOGITS_OUTPUT}` output")));
        };
        if g.outputs()
            .iter()
            .any(|o| !o.param && o.name == LOSS_OUTPUT)
        {
            return Err(err(format!(
                "the graph already has a `%{LOSS_OUTPUT}` output"
            )));
        }
        let input_named = |g: &Graph, name: &str| {
            g.inputs()
                .iter()
                .any(|&i| matches!(&g.node(i).op, Op::Input { name: n } if n == name))
        };
        if input_named(g, TARGETS_INPUT) {
            return Err(err(format!(
                "the graph already has an input `%{TARGETS_INPUT}`"
            )));
        }
        let logits_ty = g.value_type(logits).clone();
        let targets_ty = Type::new(DType::I32, logits_ty.leading().iter().cloned());
        let targets = g.add_input(TARGETS_INPUT, targets_ty);
        let loc = g.node(logits.node).loc;
        let loss = g
            .add1(Op::CrossEntropy, &[logits, targets], loc)
            .map_err(|e| err(format!("cannot take the loss of {logits_ty}: {e}")))?;
        let mut outputs = vec![Output::value(LOSS_OUTPUT, loss)];
        outputs.extend(
            g.outputs()
                .iter()
                .filter(|o| o.param || o.name != LOGITS_OUTPUT)
                .cloned(),
        );
        g.set_outputs(outputs);
        Ok(())
    }
}
