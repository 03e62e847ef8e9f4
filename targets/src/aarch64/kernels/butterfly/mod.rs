//! The butterfly forward layer (`KernelKind::Butterfly`, layout `pairs-in-lanes`): the
//! product's signature kernel, DESIGN §4 / §6.
//!
//! ```text
//! matcher.rs   geometry from the body, rebuilt with the lowering's builder, compared
//! epilogue.rs  the tail loop (bias, residual add, SiLU·mul, GELU…) as NEON, exp polynomial
//! codelets.rs  in-register stages on a tile of q registers (renaming map, TRN/UZP/ZIP)
//! lanes.rs     pairs in lanes: chunk passes (radix-2^k codelets), radix-4 / radix-2 passes
//! tokens.rs    tokens in lanes: 4 rows transposed to [n][4], by-element twiddles
//! tokens_radix8.rs  tokens in lanes: 3 stages fused on 2 octets of vectors
//! twiddle.rs   f32 or f16 twiddle storage (f16 widened on load for f32 arithmetic)
//! ```
//!
//! One function runs rows `lo..hi` of the section: while at least 4 rows remain (and the
//! row fits the 16·n-byte stack buffer, n ≥ 8), 4 rows go through tokens-in-lanes; the
//! rest one by one through pairs-in-lanes. For each row and each (group, stack), exactly
//! as the body: `work ← x` zero-padded, every stage of every block, then the tail.
//!
//! Token passes (the tile comment lists them): the descriptor's stage grouping
//! (`ButterflyDesc::radix`, one pass per group) when set, else greedy radix-8 (three
//! stages per load/store, `tokens_radix8.rs`), radix-4, radix-2. A grouping that does not
//! cover a block is declined. The pairs-in-lanes passes keep their own chunked plan.
//!
//! Variants by twiddle dtype (DESIGN §5) — the name says which:
//! - `butterfly.f32.*`: f32 twiddles.
//! - `butterfly.f16w.*`: f16 twiddles widened on load (FCVTL), f32 arithmetic: the f32
//!   kernel's exact results on the widened twiddles. Any aarch64 CPU; chosen when the CPU
//!   lacks FEAT_FP16 (or it is disabled with `BFLY_AARCH64_FEATURES`), or n is outside the
//!   f16 variant's range.
//! - `butterfly.f16.tokens8+tokens+pairs`: FEAT_FP16, 8 ≤ n ≤ 2048: while 8 rows remain
//!   they are transposed as two f32 halves, narrowed to one `[n][8]` f16 buffer (FCVTN /
//!   FCVTN2), every stage runs `FMUL`/`FMLA .8h` by element on the f16 twiddles, and the
//!   buffer is widened back (FCVTL / FCVTL2) before the tail; the remaining rows run the
//!   f16w code. Accuracy: f16 rounding of the inputs and of each stage (≈ 2^-11 relative).

mod codelets;
mod epilogue;
mod lanes;
mod matcher;
mod tokens;
mod tokens_radix8;
mod twiddle;

use super::{Microkernel, SectionCtx, Selection};
use crate::aarch64::emit::{ARGS, Asm, Cond, HI, LO, X};
use bfly_ir::DType;
use bfly_ir::kernel::KernelKind;
use epilogue::{IndexRegs, TailPlan, Vars};
use lanes::{Pass, RowRegs, StageRef};
use matcher::Matched;
use tokens::{Math, TokenPass};
use twiddle::TwStore;

/// Largest row the tokens variant transposes onto the stack (64 KiB buffer).
const TOKENS_MAX_N: u32 = 4096;
/// Largest row of the f16 tokens variant (two f32 halves: 64 KiB buffer).
const TOKENS8_MAX_N: u32 = 2048;

/// Pointers loaded once: param bases.
const X_BASE: X = X(4);
const TW_BASE: X = X(5);
const WORK_BASE: X = X(7);
/// Loop indices and per-(row, group, stack) pointers.
const ROW: X = LO;
const GROUP: X = X(8);
const STACK: X = X(9);
const WORK: X = X(10);
const XROW: X = X(11);
const TWS: X = X(12);
/// Tokens variant: the 4 rows' work pointers, the tail's row and counter.
const TOK_WORK: [X; 4] = [X(19), X(20), X(21), X(22)];
const TOK_ROW: X = X(27);
const TOK_COUNT: X = X(28);
const SAVED: [X; 10] = [
    X(19),
    X(20),
    X(21),
    X(22),
    X(23),
    X(24),
    X(25),
    X(26),
    X(27),
    X(28),
];

pub fn try_emit(ctx: &SectionCtx) -> Selection {
    let KernelKind::Butterfly(desc) = &ctx.kernel.kind else {
        return Selection::NotMine;
    };
    let m = match matcher::recognize(ctx.body, desc, ctx.section) {
        Ok(m) => m,
        Err(reason) => return Selection::Declined(reason),
    };
    let tail = match &m.tail {
        None => None,
        Some(t) => {
            let vars = Vars {
                row: m.row,
                group: m.group,
                stack: m.stack,
                j: t.var,
            };
            match epilogue::translate(&t.body, &vars, &m.lets, m.params.y, &ctx.body.params) {
                Ok(p) => Some(p),
                Err(reason) => return Selection::Declined(format!("epilogue: {reason}")),
            }
        }
    };
    let store = match ctx.body.params.get(m.params.tw as usize).map(|p| p.dtype) {
        Some(DType::F16) => TwStore::F16,
        _ => TwStore::F32,
    };
    let f16_math = store == TwStore::F16 && ctx.features.fp16;
    let Ok(n) = u32::try_from(m.geo.n) else {
        return Selection::Declined(format!("n = {} too large", m.geo.n));
    };
    let token_passes = match tokens::plan_grouped(&stage_list(&m), n, &desc.radix) {
        Ok(p) => p,
        Err(reason) => return Selection::Declined(format!("stage grouping: {reason}")),
    };
    match emit(
        &m,
        tail.as_ref(),
        &desc.epilogue,
        store,
        f16_math,
        token_passes,
    ) {
        Ok(micro) => Selection::Emitted(micro),
        Err(reason) => Selection::Declined(format!("emission: {reason}")),
    }
}

/// The flattened block × stage list with each stage's stride (DESIGN §4).
fn stage_list(m: &Matched) -> Vec<StageRef> {
    let g = &m.geo;
    let mut out = Vec::new();
    for blk in 0..g.blocks {
        let inc = g.stride.is_increasing() ^ (blk % 2 == 1);
        for st in 0..g.stages {
            let log = if inc { st } else { g.stages - 1 - st };
            out.push(StageRef {
                index: blk * g.stages + st,
                stride: 1 << log,
            });
        }
    }
    out
}

/// `d = base + 4·(c + Σ reg·coef)`.
fn affine_ptr(asm: &mut Asm, d: X, base: X, c: i64, terms: &[(X, i64)]) -> Result<(), String> {
    affine_bytes(asm, d, base, 4, c, terms)
}

/// `d = base + elem·(c + Σ reg·coef)` (`elem` bytes per element).
fn affine_bytes(
    asm: &mut Asm,
    d: X,
    base: X,
    elem: i64,
    c: i64,
    terms: &[(X, i64)],
) -> Result<(), String> {
    let c = u64::try_from(elem * c).map_err(|_| "negative offset")?;
    asm.add_imm(d, base, c);
    for &(reg, coef) in terms {
        if coef != 0 {
            asm.mov_imm(X(16), elem * coef);
            asm.madd(d, reg, X(16), d);
        }
    }
    Ok(())
}

struct Emitter<'a> {
    m: &'a Matched,
    tail: Option<&'a TailPlan>,
    passes: Vec<Pass>,
    token_passes: Vec<TokenPass>,
    n: u32,
    n_in: u32,
    store: TwStore,
}

impl Emitter<'_> {
    /// The work row of `row` for the current (group, stack).
    fn work_ptr(&self, asm: &mut Asm, d: X, row: X) -> Result<(), String> {
        let g = &self.m.geo;
        if self.m.shape.in_place {
            affine_ptr(
                asm,
                d,
                WORK_BASE,
                0,
                &[(row, self.m.shape.gi_n_out), (GROUP, g.n_out), (STACK, g.n)],
            )
        } else {
            affine_ptr(asm, d, WORK_BASE, 0, &[(row, g.n)])
        }
    }

    fn x_ptr(&self, asm: &mut Asm, d: X, row: X) -> Result<(), String> {
        let g = &self.m.geo;
        affine_ptr(
            asm,
            d,
            X_BASE,
            0,
            &[(row, self.m.shape.gi_n_in), (GROUP, g.n_in)],
        )
    }

    /// Packed twiddles of (group, stack): `(g·stacks + s)·blocks·stages·4·half` twiddles in.
    fn tw_ptr(&self, asm: &mut Asm) -> Result<(), String> {
        let g = &self.m.geo;
        let slab = (g.blocks * g.stages) as i64 * 4 * g.half;
        affine_bytes(
            asm,
            TWS,
            TW_BASE,
            i64::from(self.store.bytes()),
            0,
            &[(GROUP, g.stacks as i64 * slab), (STACK, slab)],
        )
    }

    /// `COUNT = min(n, n_out − s·n)` then the tail for `row`.
    fn tail(&self, asm: &mut Asm, row: X) -> Result<(), String> {
        let Some(plan) = self.tail else {
            return Ok(());
        };
        let g = &self.m.geo;
        let count = epilogue::COUNT;
        if g.stacks == 1 {
            asm.mov_imm(count, g.n.min(g.n_out));
        } else {
            asm.mov_imm(X(15), g.n);
            asm.mul(X(15), STACK, X(15));
            asm.mov_imm(count, g.n_out);
            asm.sub(count, count, X(15));
            asm.mov_imm(X(15), g.n);
            asm.cmp(count, X(15));
            asm.csel(count, X(15), count, Cond::Gt);
        }
        epilogue::emit(
            asm,
            plan,
            IndexRegs {
                row,
                group: GROUP,
                stack: STACK,
            },
        )
    }

    /// `for g in 0..groups { for s in 0..stacks { body } }` on GROUP / STACK.
    fn group_stack_loops(
        &self,
        asm: &mut Asm,
        body: &mut dyn FnMut(&mut Asm) -> Result<(), String>,
    ) -> Result<(), String> {
        let g = &self.m.geo;
        asm.mov_imm(GROUP, 0);
        let gl = asm.new_label();
        asm.bind(gl);
        asm.mov_imm(STACK, 0);
        let sl = asm.new_label();
        asm.bind(sl);
        body(asm)?;
        asm.add_imm(STACK, STACK, 1);
        asm.cmp_imm(STACK, g.stacks);
        asm.b_cond(Cond::Lo, sl);
        asm.add_imm(GROUP, GROUP, 1);
        asm.cmp_imm(GROUP, g.groups);
        asm.b_cond(Cond::Lo, gl);
        Ok(())
    }

    /// Points `TOK_WORK` at the work rows `ROW + first .. + 4`; with `copy`, fills them
    /// from `x` first.
    fn token_rows(&self, asm: &mut Asm, first: u64, copy: bool) -> Result<(), String> {
        for (k, w) in TOK_WORK.iter().enumerate() {
            asm.add_imm(TOK_ROW, ROW, first + k as u64);
            self.work_ptr(asm, *w, TOK_ROW)?;
            if copy {
                self.x_ptr(asm, XROW, TOK_ROW)?;
                lanes::copy_row(asm, *w, XROW, self.n_in, self.n);
            }
        }
        Ok(())
    }

    /// The rows `ROW..ROW+4` (f32 math) or `ROW..ROW+8` (f16 math) in tokens-in-lanes.
    fn tokens_block(&self, asm: &mut Asm, math: Math, hot: bool) -> Result<u32, String> {
        let mut useful = 0;
        let halves = if math == Math::F16 { 2 } else { 1 };
        let half_bytes = tokens::buffer_bytes(self.n);
        self.group_stack_loops(asm, &mut |asm| {
            self.tw_ptr(asm)?;
            for h in 0..halves {
                self.token_rows(asm, 4 * h, true)?;
                tokens::transpose(asm, TOK_WORK, self.n, h * half_bytes, true);
            }
            if math == Math::F16 {
                tokens::convert_halves(asm, self.n, true);
            }
            // The hot loop: the first radix-8 pass, else the first radix-4 pass.
            let has_radix8 = self
                .token_passes
                .iter()
                .any(|p| matches!(p, TokenPass::Radix8(..)));
            for pass in &self.token_passes {
                match *pass {
                    TokenPass::Radix8(sts) => {
                        let mark = hot && useful == 0;
                        let u = tokens_radix8::radix8(asm, sts, self.n, TWS, math, mark);
                        if mark {
                            useful = u;
                        }
                    }
                    TokenPass::Radix4(a, b) => {
                        let mark = hot && useful == 0 && !has_radix8;
                        let u = tokens::radix4(asm, (a, b), self.n, TWS, math, mark);
                        if mark {
                            useful = u;
                        }
                    }
                    TokenPass::Radix2(st) => {
                        tokens::stage(asm, st, self.n, TWS, math, false);
                    }
                }
            }
            if math == Math::F16 {
                tokens::convert_halves(asm, self.n, false);
            }
            for h in 0..halves {
                if halves > 1 {
                    self.token_rows(asm, 4 * h, false)?;
                }
                tokens::transpose(asm, TOK_WORK, self.n, h * half_bytes, false);
            }
            if self.tail.is_some() {
                asm.mov(TOK_ROW, ROW);
                asm.mov_imm(TOK_COUNT, 4 * halves as i64);
                let top = asm.new_label();
                asm.bind(top);
                self.tail(asm, TOK_ROW)?;
                asm.add_imm(TOK_ROW, TOK_ROW, 1);
                asm.subs_imm(TOK_COUNT, TOK_COUNT, 1);
                asm.b_cond(Cond::Ne, top);
            }
            Ok(())
        })?;
        Ok(useful)
    }

    /// Row `ROW` in pairs-in-lanes.
    fn pairs_row(&self, asm: &mut Asm, hot: bool) -> Result<u32, String> {
        let mut useful = 0;
        self.group_stack_loops(asm, &mut |asm| {
            self.work_ptr(asm, WORK, ROW)?;
            self.x_ptr(asm, XROW, ROW)?;
            self.tw_ptr(asm)?;
            lanes::copy_row(asm, WORK, XROW, self.n_in, self.n);
            let row = RowRegs {
                work: WORK,
                tw: TWS,
                store: self.store,
            };
            useful = lanes::emit_passes(asm, &self.passes, self.n, row, hot);
            self.tail(asm, ROW)
        })?;
        Ok(useful)
    }
}

fn emit(
    m: &Matched,
    tail: Option<&TailPlan>,
    epi_names: &[String],
    store: TwStore,
    f16_math: bool,
    token_passes: Vec<TokenPass>,
) -> Result<Microkernel, String> {
    let n = u32::try_from(m.geo.n).map_err(|_| "n")?;
    let n_in = u32::try_from(m.geo.n_in).map_err(|_| "n_in")?;
    let stages = stage_list(m);
    let passes = lanes::plan(&stages, n);
    let e = Emitter {
        m,
        tail,
        passes,
        token_passes,
        n,
        n_in,
        store,
    };
    let tokens = (8..=TOKENS_MAX_N).contains(&n);
    let tokens8 = f16_math && (8..=TOKENS8_MAX_N).contains(&n);
    let tokens_radix4 = tokens
        && e.token_passes
            .iter()
            .any(|p| matches!(p, TokenPass::Radix4(..) | TokenPass::Radix8(..)));
    // The hot loop: the tokens radix-8 / radix-4 codelet (prefill), else the pairs radix-4
    // (decode).
    let has_radix4 = !tokens_radix4 && e.passes.iter().any(|p| matches!(p, Pass::Radix4(..)));
    let mut asm = Asm::new();
    asm.comment(format!(
        "butterfly n = {n} (in {n_in}, out {}), {} block(s) × {} stages, {} group(s) × {} \
         stack(s); rows lo..hi",
        m.geo.n_out, m.geo.blocks, m.geo.stages, m.geo.groups, m.geo.stacks
    ));
    asm.save_callee_saved(&tokens::RADIX4_FREE, &SAVED);
    let ptr = |asm: &mut Asm, d: X, p: u32| asm.ldr_x(d, ARGS, 8 * p);
    ptr(&mut asm, X_BASE, m.params.x);
    ptr(&mut asm, TW_BASE, m.params.tw);
    ptr(&mut asm, WORK_BASE, m.params.work);
    let mut useful = 0;
    let buffer = tokens::buffer_bytes(n) * if tokens8 { 2 } else { 1 };
    if tokens {
        asm.sub_imm(X(31), X(31), buffer);
    }
    if tokens8 {
        asm.comment("f16 tokens in lanes (8 per .8h vector) while ≥ 8 rows remain");
        let (top, done) = (asm.new_label(), asm.new_label());
        asm.bind(top);
        asm.sub(X(16), HI, ROW);
        asm.cmp_imm(X(16), 8);
        asm.b_cond(Cond::Lt, done);
        useful = e.tokens_block(&mut asm, Math::F16, tokens_radix4)?;
        asm.add_imm(ROW, ROW, 8);
        asm.b(top);
        asm.bind(done);
    }
    if tokens {
        asm.comment("tokens in lanes while ≥ 4 rows remain");
        let (top, done) = (asm.new_label(), asm.new_label());
        asm.bind(top);
        asm.sub(X(16), HI, ROW);
        asm.cmp_imm(X(16), 4);
        asm.b_cond(Cond::Lt, done);
        let u = e.tokens_block(&mut asm, Math::F32(store), tokens_radix4 && !tokens8)?;
        if !tokens8 {
            useful = u;
        }
        asm.add_imm(ROW, ROW, 4);
        asm.b(top);
        asm.bind(done);
    }
    asm.comment("pairs in lanes, one row at a time");
    let (top, done) = (asm.new_label(), asm.new_label());
    asm.bind(top);
    asm.cmp(ROW, HI);
    asm.b_cond(Cond::Ge, done);
    let u = e.pairs_row(&mut asm, has_radix4)?;
    if has_radix4 {
        useful = u;
    }
    asm.add_imm(ROW, ROW, 1);
    asm.b(top);
    asm.bind(done);
    if tokens {
        asm.add_imm(X(31), X(31), buffer);
    }
    asm.restore_callee_saved(&tokens::RADIX4_FREE, &SAVED);
    asm.ret();
    let code = asm.finish()?;
    let variant = match (tokens8, tokens) {
        (true, _) => "tokens8+tokens+pairs",
        (false, true) => "tokens+pairs",
        (false, false) => "pairs",
    };
    let dtype = match (tokens8, store) {
        (true, _) => "f16",
        (false, TwStore::F16) => "f16w",
        (false, TwStore::F32) => "f32",
    };
    let mut name = format!(
        "butterfly.{dtype}.{variant} n{n}x{}",
        m.geo.blocks * m.geo.stages
    );
    if !epi_names.is_empty() {
        name.push_str(&format!(" +{}", epi_names.join("+")));
    }
    Ok(Microkernel {
        name,
        tile: tile_comment(
            &e,
            (tokens8, tokens),
            tokens_radix4,
            tail.is_some_and(TailPlan::uses_exp),
        ),
        code,
        useful_per_iter: useful,
    })
}

fn tile_comment(
    e: &Emitter,
    (tokens8, tokens): (bool, bool),
    tokens_radix4: bool,
    exp: bool,
) -> String {
    let mut t = String::new();
    if e.store == TwStore::F16 {
        t.push_str(
            "twiddles stored f16: every twiddle load is half as wide and widened by FCVTL \
             (f32 arithmetic, exact widening)\n",
        );
    }
    if tokens8 {
        t.push_str(
            "f16 tokens (8 rows at a time): two [n][4] f32 transposes narrowed by FCVTN/FCVTN2 \
             into one [n][8] f16 buffer (lane t = row t); the token passes below run on .8h \
             vectors with FMUL/FMLA .8h by element on raw f16 twiddles (D loads, lanes 0..3), \
             widened back by FCVTL/FCVTL2 before the tail; the rest of the rows as below\n",
        );
    }
    let name = |s: &StageRef| s.stride.to_string();
    if tokens {
        let passes: Vec<String> = e
            .token_passes
            .iter()
            .map(|p| match p {
                TokenPass::Radix8([a, b, c]) => {
                    format!("radix8[{},{},{}]", name(a), name(b), name(c))
                }
                TokenPass::Radix4(a, b) => format!("radix4[{},{}]", name(a), name(b)),
                TokenPass::Radix2(a) => format!("radix2[{}]", name(a)),
            })
            .collect();
        t.push_str(&format!(
            "tokens in lanes (4 rows at a time): work rows ↔ [{}][4] stack buffer by 4×4 \
             TRN transposes; passes {}\n",
            e.n,
            passes.join(" ")
        ));
        t.push_str(
            "  radix-4: v16..v31 = 4 quartets (p, p+s, p+2s, p+3s) × 4 tokens, v0..v7 = \
             twiddles (a,b,c,d per pair kind, lane l = quartet l; strides 1/2: two q loads per coefficient, lanes picked by element), \
             results renamed through v8..v11: 2 stages × 2 kinds × 4 lanes × (2 FMUL + 2 \
             FMLA by element) = 64 per 16 data loads + 16 stores + 16 twiddle loads\n",
        );
        t.push_str(
            "  radix-8: v16..v31 = 2 octets (p, p+s, …, p+7s) × 4 tokens, v0..v7 = twiddles \
             (a,b,c,d; stride ≥ 4: D loads per pair kind, lane = octet; strides 1/2: q loads \
             per stage), results renamed through v8..v11: 3 stages × 4 kinds × 2 octets × \
             (2 FMUL + 2 FMLA by element) = 96 per 16 data loads + 16 stores\n",
        );
        t.push_str("  radix-2: v16..v23 = 4 pairs × 4 tokens, v0..v3 twiddles, v24..v31 results\n");
    }
    let passes: Vec<String> = e
        .passes
        .iter()
        .map(|p| match p {
            Pass::Chunk(s) => {
                let st: Vec<String> = s.iter().map(name).collect();
                format!("chunk[{}]", st.join(","))
            }
            Pass::Radix4(a, b) => format!("radix4[{},{}]", name(a), name(b)),
            Pass::Radix2(a) => format!("radix2[{}]", name(a)),
        })
        .collect();
    t.push_str(&format!(
        "pairs in lanes (remaining rows): passes {}; chunk = {} floats in v16..v31 \
         (renamed through v4..v7), twiddles v0..v3, strides 2/1 via TRN .2d / UZP+ZIP .4s; \
         radix-4 quartet v16..v19: 2 stages × 2 pairs × (2 FMUL + 2 FMLA), 16 twiddle loads\n",
        passes.join(" "),
        lanes::chunk_len(e.n)
    ));
    let radix = if e
        .token_passes
        .iter()
        .any(|p| matches!(p, TokenPass::Radix8(..)))
    {
        "radix-8"
    } else {
        "radix-4"
    };
    t.push_str(&if tokens_radix4 && tokens8 {
        format!("hot loop = the first f16 tokens {radix} pass (8 tokens per vector)\n")
    } else if tokens_radix4 {
        format!("hot loop = the first tokens {radix} pass\n")
    } else if e.passes.iter().any(|p| matches!(p, Pass::Radix4(..))) {
        "hot loop = the first pairs radix-4 pass\n".to_string()
    } else {
        "no hot loop marked (row too small for a radix-4 loop)\n".to_string()
    });
    if exp {
        t.push_str("tail: exp by a degree-6 polynomial after 2^k range reduction (≤ 2 ulp)\n");
    }
    t
}
