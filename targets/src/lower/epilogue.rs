//! Epilogue fusion: the elementwise chain after a producer (`matmul`, `butterfly`, `monarch`,
//! `qmatmul`), folded into the producer's final store.
//!
//! The driver builds a fused site whose operands are the producer's own, then each link's
//! other operand (from outside the region: the residual stream, the SwiGLU `up` value), and
//! whose result is the chain's last value. A producer binds the epilogue after its own params
//! and calls [`Bound::apply`] on every value it stores: each link's other operand is loaded at
//! the same element (or its broadcast source), so the chain's intermediates never reach memory.

use super::elementwise::Ew;
use super::emit::{Kb, bind};
use super::shape::{Bcast, R, bcast, err, operand};
use super::site::{ArgRef, OpSite};
use bfly_ir::Type;
use bfly_ir::kernel::{BodyBuilder, Expr};

/// The other input of one link.
#[derive(Clone, Debug, PartialEq)]
pub enum Other {
    /// A unary function of the chain value.
    Unary,
    /// Both operands are the chain value (`mul v, v`).
    Chain,
    /// Operand `index` of the fused site; `chain_lhs` when the chain value is the link's
    /// first operand (order matters for `sub`, and keeps `add`/`mul` bit-identical).
    Operand { index: usize, chain_lhs: bool },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub ew: Ew,
    pub other: Other,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Epilogue {
    pub links: Vec<Link>,
    /// Operands `0..base` of the site are the producer's own (its bias included).
    pub base: usize,
}

impl Epilogue {
    /// No epilogue: every operand is the producer's.
    pub fn none(site: &OpSite) -> Epilogue {
        Epilogue {
            links: Vec::new(),
            base: site.operands.len(),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.links.iter().map(|l| l.ew.name()).collect()
    }

    /// Declares a param per other operand (after the producer's own) and plans its index
    /// against the producer's result `out`.
    pub(crate) fn bind(&self, kb: &mut Kb, site: &OpSite, out: &Type) -> R<Bound> {
        let mut links = Vec::with_capacity(self.links.len());
        for (k, l) in self.links.iter().enumerate() {
            if l.ew.arity() == 1 && l.other != Other::Unary {
                return err(site, format!("epilogue link {k} is unary"));
            }
            let other = match &l.other {
                Other::Unary => BoundOther::Unary,
                Other::Chain => BoundOther::Chain,
                Other::Operand { index, chain_lhs } => {
                    if *index < self.base {
                        return err(site, format!("epilogue operand {index} is the producer's"));
                    }
                    let t = operand(site, *index)?;
                    let plan = bcast(out, t)?;
                    let param = kb.arg(&format!("e{index}"), t.dtype, ArgRef::Operand(*index));
                    BoundOther::Load {
                        param,
                        plan,
                        chain_lhs: *chain_lhs,
                    }
                }
            };
            links.push((l.ew.clone(), other));
        }
        Ok(Bound { links })
    }
}

enum BoundOther {
    Unary,
    Chain,
    Load {
        param: u32,
        plan: Bcast,
        chain_lhs: bool,
    },
}

/// An epilogue bound to a kernel's params.
pub(crate) struct Bound {
    links: Vec<(Ew, BoundOther)>,
}

impl Bound {
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The chain applied to `v`, the producer's value at result row `o`, column `c`.
    pub fn apply(&self, b: &mut BodyBuilder, v: Expr, o: &Expr, c: &Expr) -> Expr {
        if self.links.is_empty() {
            return v;
        }
        let mut cur = bind(b, v);
        for (ew, other) in &self.links {
            let args = match other {
                BoundOther::Unary => vec![cur.clone()],
                BoundOther::Chain => vec![cur.clone(), cur.clone()],
                BoundOther::Load {
                    param,
                    plan,
                    chain_lhs,
                } => {
                    let x = Expr::Local(b.let_(Expr::load(*param, plan.index(o, c))));
                    if *chain_lhs {
                        vec![cur.clone(), x]
                    } else {
                        vec![x, cur.clone()]
                    }
                }
            };
            let next = ew.emit(b, &args);
            cur = Expr::Local(b.let_(next));
        }
        cur
    }
}
