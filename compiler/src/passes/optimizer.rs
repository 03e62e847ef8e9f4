//! The `optimizer` pass: replaces each `%grad_NAME` output of `autodiff` by the update of its
//! param, so the graph becomes one training step returning `%loss` and the new values.
//!
//! - `sgd(lr)`: `@p ← sgd @p, %g {lr}`.
//! - `adamw(…)`: per param, two optimizer-state params `@p.adam_m`, `@p.adam_v` (the param's
//!   type, `init zeros`, frozen: the optimizer, not autodiff, writes them) and one graph input
//!   `%step: f32[]` (1-based, for bias correction);
//!   `%p', %m', %v' = adamw @p, %g, @p.adam_m, @p.adam_v, %step {…}` and the outputs
//!   `@p, @p.adam_m, @p.adam_v`.
//!
//! Weight decay (AdamW's decoupled `wd·p`) applies only to matrices, see [`decays`].

use bfly_grammar::Diagnostic;
use bfly_ir::{DType, Graph, Init, Op, Output, Param, Type, Value};

use super::grad_names::{grad_output_name, is_grad_output};
use super::{Pass, PassContext};
use crate::spec::{ModelSpec, Optimizer};

pub struct OptimizerPass {
    pub optimizer: Optimizer,
}

/// The input adamw reads its step number from.
pub const STEP_INPUT: &str = "step";

/// Does weight decay apply to this param? Only to the weight matrices of dense, embedding,
/// monarch and LoRA layers (names ending `.weight`, `.w1`, `.w2`, `.lora_a`, `.lora_b`).
/// Everything else is exempt: butterfly twiddles, Givens/DIB angles `theta` and diagonals
/// `diag` (decaying an angle toward 0 or a diagonal toward 0 pulls the layer toward a
/// particular, degenerate map rather than toward "small"), ternary `w` (quantized by
/// construction), norm gains (decay toward 0 would shrink activations) and biases — the usual
/// practice of decaying matrices only.
pub fn decays(param: &str) -> bool {
    [".weight", ".w1", ".w2", ".lora_a", ".lora_b"]
        .iter()
        .any(|s| param.ends_with(s))
}

impl OptimizerPass {
    pub fn from_spec(spec: &ModelSpec) -> Self {
        OptimizerPass {
            optimizer: spec.optimizer(),
        }
    }

    /// Emits the update of `param` (value `p`) from its gradient `d`; returns the outputs.
    fn update(
        &self,
        g: &mut Graph,
        name: &str,
        p: Value,
        d: Value,
        step: Option<Value>,
    ) -> Result<Vec<Output>, String> {
        let e = |e: bfly_ir::IrError| format!("updating @{name}: {e}");
        match (self.optimizer, step) {
            (Optimizer::Sgd { lr }, _) => {
                let new = g.add1(Op::Sgd { lr }, &[p, d], None).map_err(e)?;
                Ok(vec![Output::param_update(name, new)])
            }
            (
                Optimizer::AdamW {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                },
                Some(step),
            ) => {
                let ty = g.value_type(p).clone();
                let m = state(g, &format!("{name}.adam_m"), &ty)?;
                let v = state(g, &format!("{name}.adam_v"), &ty)?;
                let op = Op::AdamW {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay: if decays(name) { weight_decay } else { 0.0 },
                };
                match g.add_op(op, &[p, d, m, v, step], None).map_err(e)?[..] {
                    [new_p, new_m, new_v] => Ok(vec![
                        Output::param_update(name, new_p),
                        Output::param_update(format!("{name}.adam_m"), new_m),
                        Output::param_update(format!("{name}.adam_v"), new_v),
                    ]),
                    _ => Err(format!("adamw of @{name} does not have 3 results")),
                }
            }
            (Optimizer::AdamW { .. }, None) => Err("adamw needs the %step input".into()),
        }
    }
}

/// A zero-initialized, frozen optimizer-state param.
fn state(g: &mut Graph, name: &str, ty: &Type) -> Result<Value, String> {
    if g.find_param(name).is_some() {
        return Err(format!(
            "the optimizer state @{name} clashes with a param of the model"
        ));
    }
    let param = Param {
        name: name.into(),
        init: Init::Zeros,
        trainable: false,
    };
    Ok(g.add_param(param, ty.clone()))
}

impl Pass for OptimizerPass {
    fn name(&self) -> &'static str {
        "optimizer"
    }

    fn description(&self) -> &'static str {
        "replace each %grad_NAME output by the sgd/adamw update of @NAME (and its states)"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext<'_>) -> Result<(), Vec<Diagnostic>> {
        let bug = |m: String| vec![cx.bug(self.name(), m)];
        let trainable: Vec<(String, Value)> = g
            .params()
            .filter(|(_, p, _)| p.trainable)
            .map(|(id, p, _)| (p.name.clone(), Value::first(id)))
            .collect();
        let step = match self.optimizer {
            Optimizer::Sgd { .. } => None,
            Optimizer::AdamW { .. } => {
                if g.inputs()
                    .iter()
                    .any(|&i| matches!(&g.node(i).op, Op::Input { name } if name == STEP_INPUT))
                {
                    return Err(vec![cx.error(
                        self.name(),
                        format!("the graph already has an input `%{STEP_INPUT}`"),
                    )]);
                }
                Some(g.add_input(STEP_INPUT, Type::scalar(DType::F32)))
            }
        };
        let mut kept = Vec::new();
        let mut updates = Vec::new();
        for o in g.outputs().to_vec() {
            if !is_grad_output(&o) {
                kept.push(o);
                continue;
            }
            let mut owners = trainable
                .iter()
                .filter(|(name, _)| grad_output_name(name) == o.name);
            let (Some((name, p)), None) = (owners.next(), owners.next()) else {
                return Err(bug(format!(
                    "the output `%{}` names no single trainable param",
                    o.name
                )));
            };
            updates.extend(self.update(g, name, *p, o.value, step).map_err(bug)?);
        }
        kept.extend(updates);
        g.set_outputs(kept);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::test_graphs::small_spec;
    use crate::passes::{Autodiff, Loss, Mode, run_passes};

    /// The small spec's train graph after `autodiff`, then `optimizer` with `optimizer`.
    fn step(optimizer: Optimizer) -> Graph {
        let (spec, file) = small_spec();
        let mut g = crate::build_graph_for(&spec, &file, Mode::Train).expect("builds");
        let passes: Vec<Box<dyn Pass>> = vec![
            Box::new(Loss),
            Box::new(Autodiff),
            Box::new(OptimizerPass { optimizer }),
        ];
        run_passes(&mut g, &passes, &PassContext::new(&spec, Mode::Train), None).expect("runs");
        g
    }

    #[test]
    fn adamw_adds_states_a_step_input_and_decays_matrices_only() {
        let g = step(Optimizer::AdamW {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.5,
        });
        let text = bfly_ir::print_graph(&g);
        assert!(text.contains("%step: f32[]"), "{text}");
        assert!(
            text.contains("param @embed.weight.adam_m: f32[8, 8] init zeros frozen"),
            "{text}"
        );
        let outputs: Vec<String> = g.outputs().iter().map(Output::sigil_name).collect();
        assert_eq!(
            outputs[..4],
            [
                "%loss",
                "@embed.weight",
                "@embed.weight.adam_m",
                "@embed.weight.adam_v"
            ]
        );
        let trainable = g.params().filter(|(_, p, _)| p.trainable).count();
        assert_eq!(outputs.len(), 1 + 3 * trainable);
        for id in g.node_ids() {
            if let Op::AdamW { weight_decay, .. } = g.node(id).op {
                let p = g.operands(id)[0];
                let Op::Param(param) = &g.node(p.node).op else {
                    panic!("adamw updates a param");
                };
                let want = if decays(&param.name) { 0.5 } else { 0.0 };
                assert_eq!(weight_decay, want, "@{}", param.name);
            }
        }
    }

    #[test]
    fn sgd_updates_each_trainable_param_in_place() {
        let g = step(Optimizer::Sgd { lr: 0.5 });
        assert!(g.outputs().iter().skip(1).all(|o| o.param));
        assert!(g.outputs().iter().all(|o| !is_grad_output(o)));
        assert!(g.params().all(|(_, p, _)| !p.name.contains("adam")));
        assert_eq!(
            g.outputs().len(),
            1 + g.params().filter(|(_, p, _)| p.trainable).count()
        );
    }

    #[test]
    fn decays_matrices_only() {
        for yes in [
            "embed.weight",
            "layers.0.attn.q.weight",
            "layers.1.mlp.up.w1",
            "layers.1.mlp.up.w2",
            "layers.0.attn.v.lora_a",
            "layers.0.attn.v.lora_b",
        ] {
            assert!(decays(yes), "{yes}");
        }
        for no in [
            "layers.0.attn.q.twiddles",
            "layers.0.attn.q.theta",
            "layers.0.attn.q.diag",
            "layers.0.mlp.up.w",
            "layers.0.attn_norm.gain",
            "layers.0.attn_norm.bias",
            "layers.0.attn.o.bias",
        ] {
            assert!(!decays(no), "{no}");
        }
    }
}
