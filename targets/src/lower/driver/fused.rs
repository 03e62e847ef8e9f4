//! Fused regions: one kernel each (see `region` for which fold into their producer).

use super::{Bound, Driver, R};
use crate::lower::merge::merge;
use crate::lower::ops::{lower_fused, takes_epilogue};
use crate::lower::region::epilogue_plan;
use bfly_ir::kernel::{Body, BufferId, Phase};
use bfly_ir::{NodeId, Op, Value};

impl<'g> Driver<'g> {
    /// One fused region: folded into its producer's store when it can be, else its members'
    /// kernels concatenated. Load-phase kernels (packings, tables) stay separate.
    pub(super) fn region(&mut self, members: &[NodeId]) -> R<()> {
        let g = self.g;
        let members: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|&id| !g.node(id).op.is_source())
            .collect();
        let Some(&first) = members.first() else {
            return Ok(());
        };
        let readers = &self.readers;
        let outputs = &self.output_values;
        let sole_reader = |v: Value| match readers.get(&v).map(Vec::as_slice) {
            Some([only]) if !outputs.contains(&v) => Some(*only),
            _ => None,
        };
        let plan = epilogue_plan(g, &members, &sole_reader);
        let mut bound = Vec::new();
        let lead = match plan {
            Some(plan) => {
                for &id in &plan.prefix {
                    bound.extend(self.node(id)?);
                }
                let last = plan.links.last().copied().unwrap_or(plan.anchor);
                let mut site = self.site(plan.anchor)?;
                for v in &plan.extra {
                    site.operands.push(self.operand_ty(*v)?);
                }
                site.results = vec![self.ty(Value::first(last))?];
                let lowering = lower_fused(&site, &plan.epilogue)?;
                let ops = g
                    .operands(plan.anchor)
                    .iter()
                    .chain(&plan.extra)
                    .map(|&v| self.buf_of(v))
                    .collect::<R<Vec<_>>>()?;
                let res = vec![self.result_buf(Value::first(last))];
                let computes = std::iter::once(plan.anchor)
                    .chain(plan.links.iter().copied())
                    .map(|n| self.names.get(Value::first(n)).to_string())
                    .collect();
                bound.extend(self.bind(plan.anchor, &site.name, lowering, &ops, &res, computes)?);
                plan.anchor
            }
            None => {
                for &id in &members {
                    bound.extend(self.node(id)?);
                }
                members
                    .iter()
                    .copied()
                    .find(|&id| {
                        let op = &g.node(id).op;
                        takes_epilogue(op) || matches!(op, Op::Grad(_))
                    })
                    .unwrap_or(first)
            }
        };
        let (load, step): (Vec<Bound>, Vec<Bound>) =
            bound.into_iter().partition(|b| b.phase == Phase::Load);
        self.push_all(load);
        if step.len() <= 1 {
            self.push_all(step);
            return Ok(());
        }
        let kind = step
            .iter()
            .find(|b| b.node == lead && b.main)
            .unwrap_or(&step[0])
            .kind
            .clone();
        let parts: Vec<(&Body, &[BufferId])> =
            step.iter().map(|b| (&b.body, b.args.as_slice())).collect();
        let (body, args) = merge(&parts);
        let computes = step
            .iter()
            .filter(|b| b.main)
            .flat_map(|b| b.computes.iter().cloned())
            .collect();
        // The whole region runs where its optimizer members would (last), if it has any.
        let node = step
            .iter()
            .map(|b| b.node)
            .find(|n| self.in_place.contains(n))
            .unwrap_or(lead);
        self.push_all(vec![Bound {
            kind,
            body,
            args,
            phase: Phase::Step,
            computes,
            node,
            main: true,
        }]);
        Ok(())
    }
}
