//! One full training step (every train pass) on the reference interpreter: evaluate the step,
//! write the param updates back, evaluate again — the loss on the same batch goes down. With
//! `trainable = lora` only the adapters move, and frozen params get no gradient nodes.

mod common;

use std::collections::HashSet;

use bfly_compiler::{Mode, ModelSpec};
use bfly_grammar::SourceFile;
use bfly_ir::{Graph, NodeId, Op};
use bfly_targets::reference::{Tensor, Weights};
use common::*;

const B: usize = 2;
const T: usize = 5;

/// Runs `steps` steps on one fixed batch; returns the losses and the final weights.
fn train(spec: &ModelSpec, file: &SourceFile, steps: usize) -> (Graph, Vec<f64>, Weights) {
    let g = graph_at(spec, file, Mode::Train, None);
    let mut inputs = inputs_for(&g, spec.model.vocab.node, B, T);
    let mut w = weights(&g, 1);
    let mut losses = Vec::new();
    for step in 1..=steps {
        if let Some(s) = inputs.iter_mut().find(|t| t.shape.is_empty()) {
            *s = Tensor::f32(vec![], vec![step as f64]);
        }
        let outs = eval(&g, &inputs, &w);
        losses.push(scalar(&outs[0]));
        for (o, t) in g.outputs().iter().zip(outs) {
            if o.param {
                assert_eq!(t.shape, w[&o.name].shape, "@{}", o.name);
                w.insert(o.name.clone(), t);
            }
        }
    }
    (g, losses, w)
}

fn loss_goes_down(stem: &str) {
    let (spec, file) = golden_spec(stem);
    let (g, losses, w) = train(&spec, &file, 3);
    eprintln!("{stem}: losses {losses:?}");
    assert!(losses.windows(2).all(|p| p[1] < p[0]), "{stem}: {losses:?}");
    // Every trainable param and both of its AdamW states are updated, and moved.
    let before = weights(&g, 1);
    let trainable: Vec<&str> = g
        .params()
        .filter(|(_, p, _)| p.trainable)
        .map(|(_, p, _)| p.name.as_str())
        .collect();
    let updated = g.outputs().iter().filter(|o| o.param).count();
    assert_eq!(updated, 3 * trainable.len(), "{stem}");
    for name in trainable {
        assert_ne!(w[name], before[name], "{stem}: @{name} did not move");
    }
}

#[test]
fn a_train_step_lowers_the_loss_of_tiny_dense() {
    loss_goes_down("tiny-dense");
}

#[test]
fn a_train_step_lowers_the_loss_of_tiny_dib() {
    loss_goes_down("tiny-dib");
}

/// Nodes computed (through float values) from a trainable param.
fn depends_on_trainable(g: &Graph) -> HashSet<NodeId> {
    let mut set = HashSet::new();
    for id in g.topo_order().expect("acyclic") {
        let node = g.node(id);
        let hit = match &node.op {
            Op::Param(p) => p.trainable,
            _ => g
                .operands(id)
                .iter()
                .any(|v| set.contains(&v.node) && g.value_type(*v).dtype.is_float()),
        };
        if hit {
            set.insert(id);
        }
    }
    set
}

#[test]
fn lora_training_updates_only_the_adapters() {
    let (spec, file) = golden_spec("mixed");
    let grads = graph_at(&spec, &file, Mode::Train, Some("autodiff"));
    let active = depends_on_trainable(&grads);
    let mut grad_nodes = 0;
    for id in grads.node_ids() {
        let Op::Grad(inner) = &grads.node(id).op else {
            continue;
        };
        grad_nodes += 1;
        let forward = grads.operands(id);
        let forward = &forward[..forward.len() - inner.num_results()];
        assert!(
            forward.iter().any(|v| active.contains(&v.node)),
            "{}.grad differentiates only frozen values",
            inner.name()
        );
    }
    // Layer 0's k projection, its norm and the embedding come before the first adapter.
    let all = graph_at(&train_all(&spec), &file, Mode::Train, Some("autodiff"));
    let all_grad_nodes = all
        .node_ids()
        .filter(|&id| matches!(all.node(id).op, Op::Grad(_)))
        .count();
    assert!(
        grad_nodes < all_grad_nodes,
        "{grad_nodes} vs {all_grad_nodes}"
    );

    let (g, losses, w) = train(&spec, &file, 3);
    eprintln!("mixed (lora): losses {losses:?}");
    assert!(losses.windows(2).all(|p| p[1] < p[0]), "{losses:?}");
    let updated: Vec<&str> = g
        .outputs()
        .iter()
        .filter(|o| o.param)
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(updated.len(), 8, "{updated:?}");
    assert!(
        updated
            .iter()
            .all(|n| n.ends_with(".lora_a") || n.ends_with(".lora_b")),
        "{updated:?}"
    );
    assert!(
        g.params().all(|(_, p, _)| !p.name.contains(".adam_")),
        "sgd has no state"
    );
    let before = weights(&g, 1);
    for (_, p, _) in g.params() {
        let moved = w[&p.name] != before[&p.name];
        assert_eq!(moved, updated.contains(&p.name.as_str()), "@{}", p.name);
    }
}
