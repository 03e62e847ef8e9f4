//! The exact body form the butterfly-backward microkernels implement.
//!
//! Matching rebuilds, for a candidate geometry, the first two sections of the butterfly VJP
//! with the lowering's own builder (`lower::grad::butterfly::vjp_sections`, DESIGN §4) and
//! requires the kernel's sections to equal them statement for statement, index for index
//! (`section_match`: up to the numbering of loop variables and locals, params in the same
//! places). The assembly implements that form; a change to the lowering that it does not
//! follow fails `aarch64_butterfly_grad` (run on aarch64 against the f64 reference).

use crate::lower::grad::butterfly::{self as lowering, stage_stride, vjp_sections};
use bfly_ir::DType;
use bfly_ir::kernel::{Access, Body, BodyBuilder, Expr};

/// Geometry of one butterfly layer's backward: `groups × stacks` slabs, each `blocks`
/// blocks of `l = log2 n` stages over `n` positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geo {
    pub groups: u64,
    pub stacks: u64,
    pub blocks: u64,
    pub n: u64,
    pub l: u64,
    pub n_in: u64,
    pub n_out: u64,
    pub increasing: bool,
}

impl Geo {
    pub fn stages(&self) -> u64 {
        self.blocks * self.l
    }

    pub fn half(&self) -> u64 {
        self.n / 2
    }

    /// One unpadded stack: the first stage's input gradient is stored straight into `dx`.
    pub fn direct_dx(&self) -> bool {
        self.stacks == 1 && self.n_in == self.n
    }

    /// Stride of stage `st` (over all blocks), as the lowering orders them.
    pub fn stride(&self, st: u64) -> u64 {
        stage_stride(st, self.l, self.increasing) as u64
    }

    /// The lowering's geometry (its stride order is passed separately).
    fn lowering(&self) -> lowering::Geo {
        lowering::Geo {
            groups: self.groups,
            stacks: self.stacks,
            blocks: self.blocks,
            n: self.n,
            l: self.l,
            n_in: self.n_in,
            n_out: self.n_out,
        }
    }
}

/// Body params, in order.
pub const X: u32 = 0;
pub const TW: u32 = 1;
pub const DY: u32 = 2;
pub const XS: u32 = 3;
pub const GS: u32 = 4;
pub const DX: u32 = 5;
pub const DTW: u32 = 6;
const NAMES: [&str; 7] = ["x", "tw", "dy", "xs", "gs", "dx", "dtw"];

/// Whether `body`'s params are the f32 butterfly-backward params (plus `dbias` with a
/// bias).
pub fn params_match(body: &Body, has_bias: bool) -> bool {
    let want = NAMES.len() + usize::from(has_bias);
    body.params.len() == want
        && body.params.iter().all(|p| p.dtype == DType::F32)
        && body
            .params
            .iter()
            .zip(NAMES.iter().chain(["dbias"].iter()))
            .all(|(p, n)| p.name == *n)
}

/// The first two sections (rows, then twiddle gradients) for `geo` with `rows` rows, params
/// at the indices above.
pub fn build(geo: &Geo, rows: &Expr) -> Body {
    let mut b = BodyBuilder::new();
    let [x, tw, dy, xs, gs, dx, dtw] = NAMES.map(|name| b.param(name, DType::F32, Access::Read));
    let params = lowering::Params {
        x,
        tw,
        dy,
        xs,
        gs,
        dx,
        dtw,
    };
    vjp_sections(
        &mut b,
        &geo.lowering(),
        &params,
        rows.clone(),
        geo.increasing,
    );
    b.finish()
}
