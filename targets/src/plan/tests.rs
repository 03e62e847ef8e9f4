use super::*;
use bfly_ir::kernel::{Body, BodyId, Buffer, BufferId, BufferKind, Kernel, KernelKind, Phase};
use bfly_ir::{DType, Dim};
use proptest::prelude::*;

fn buffer(id: usize, dims: Vec<Dim>, dtype: DType, kind: BufferKind) -> Buffer {
    Buffer {
        id: BufferId(id as u32),
        name: format!("v{id}"),
        dtype,
        dims,
        kind,
    }
}

/// A program whose kernels use the given buffers (plan_memory reads only args and buffers).
fn program(buffers: Vec<Buffer>, uses: Vec<Vec<usize>>) -> KernelProgram {
    KernelProgram {
        name: "p".into(),
        bounds: vec![("T".into(), 16), ("B".into(), 2)],
        buffers,
        bodies: vec![Body {
            params: vec![],
            stmts: vec![],
            num_vars: 0,
            num_locals: 0,
        }],
        kernels: uses
            .into_iter()
            .enumerate()
            .map(|(i, args)| Kernel {
                name: format!("k{i}"),
                kind: KernelKind::Other { op: "x".into() },
                body: BodyId(0),
                args: args.into_iter().map(|a| BufferId(a as u32)).collect(),
                phase: Phase::Step,
                computes: vec![],
            })
            .collect(),
    }
}

fn temp(id: usize, n: u64) -> Buffer {
    buffer(
        id,
        vec![Dim::sym("T"), Dim::Const(n)],
        DType::F32,
        BufferKind::Temp,
    )
}

/// No two temps live at the same time share a byte; offsets are aligned and in the arena.
fn check(plan: &MemoryPlan) {
    let temps: Vec<&BufferPlan> = plan
        .buffers
        .iter()
        .filter(|b| b.region == Region::Arena && b.live.is_some())
        .collect();
    // Temps no kernel uses take no space.
    for b in plan
        .buffers
        .iter()
        .filter(|b| b.region != Region::Arena || b.live.is_some())
    {
        assert_eq!(b.offset % ALIGN, 0, "{b:?}");
        assert!(b.offset + b.bytes <= plan.region_bytes(b.region), "{b:?}");
    }
    for (i, a) in temps.iter().enumerate() {
        for b in &temps[i + 1..] {
            let (af, al) = a.live.unwrap_or_default();
            let (bf, bl) = b.live.unwrap_or_default();
            let live_together = af <= bl && bf <= al;
            let disjoint = a.offset + a.bytes <= b.offset || b.offset + b.bytes <= a.offset;
            assert!(
                !live_together || disjoint || a.bytes == 0 || b.bytes == 0,
                "{a:?} and {b:?} overlap"
            );
        }
    }
    assert!(plan.arena_bytes() <= plan.temp_bytes);
}

#[test]
fn reuses_dead_temps_and_keeps_kernel_scratch_to_its_kernel() {
    // t0 → t1 → t2 → t3, a chain: each temp dies after its consumer.
    let bufs = vec![temp(0, 16), temp(1, 16), temp(2, 16), temp(3, 16)];
    let p = program(bufs, vec![vec![0], vec![0, 1], vec![1, 2], vec![2, 3]]);
    let plan = plan_memory(&p).unwrap();
    check(&plan);
    // Two live at a time: 2 × 16 × 16 × 4 bytes.
    assert_eq!(plan.arena_bytes(), 2 * 1024);
    assert_eq!(plan.temp_bytes, 4 * 1024);
    assert_eq!(plan.buffers[0].live, Some((0, 1)));
    assert_eq!(plan.buffers[3].live, Some((3, 3)));
}

#[test]
fn persistent_regions_and_totals() {
    let bufs = vec![
        buffer(
            0,
            vec![Dim::Const(3)],
            DType::I8,
            BufferKind::Param { name: "w".into() },
        ),
        buffer(
            1,
            vec![Dim::Const(5)],
            DType::F16,
            BufferKind::Param { name: "v".into() },
        ),
        buffer(
            2,
            vec![Dim::Const(64), Dim::Const(8)],
            DType::F32,
            BufferKind::State,
        ),
        buffer(
            3,
            vec![Dim::sym("B"), Dim::sym("T")],
            DType::I32,
            BufferKind::Input { index: 0 },
        ),
        buffer(4, vec![], DType::F32, BufferKind::Output { index: 0 }),
        temp(5, 1),
        temp(6, 1000),
    ];
    let p = program(bufs, vec![vec![0, 1, 2, 3, 5], vec![5, 4]]);
    let plan = plan_memory(&p).unwrap();
    check(&plan);
    assert_eq!(plan.param_bytes(), 128);
    assert_eq!(plan.buffers[1].offset, 64);
    assert_eq!(plan.state_bytes(), 2048);
    assert_eq!(plan.io_bytes(), 128 + 64);
    assert_eq!(plan.arena_bytes(), 64);
    assert_eq!(plan.buffers[6].live, None);
    assert_eq!(plan.region_start(Region::Io), 128 + 2048);
    assert_eq!(plan.absolute_offset(BufferId(4)), Some(128 + 2048 + 128));
    assert_eq!(plan.total_bytes(), 128 + 2048 + 192 + 64);
    let text = plan.render(&p);
    assert!(text.contains("memory plan @p (T <= 16, B <= 2)"), "{text}");
    assert!(
        text.contains("arena (peak)    64 B; without reuse 64 B, saved 0 B"),
        "{text}"
    );
    assert!(
        text.contains("         0          64       0..1  b5 `v5` f32[T, 1]"),
        "{text}"
    );
    assert!(
        text.contains("(1 temps no kernel uses take no space)"),
        "{text}"
    );
}

#[test]
fn errors_instead_of_overflowing() {
    let huge = buffer(
        0,
        vec![Dim::Const(u64::MAX / 2), Dim::Const(4)],
        DType::F32,
        BufferKind::Temp,
    );
    assert!(plan_memory(&program(vec![huge], vec![vec![0]])).is_err());
    let unbound = buffer(0, vec![Dim::sym("N")], DType::F32, BufferKind::Temp);
    let e = plan_memory(&program(vec![unbound], vec![vec![0]])).unwrap_err();
    assert!(e.contains("without a bound"), "{e}");
    let near = buffer(0, vec![Dim::Const(1 << 62)], DType::I8, BufferKind::State);
    let near2 = buffer(1, vec![Dim::Const(1 << 62)], DType::I8, BufferKind::Temp);
    let e = plan_memory(&program(vec![near, near2], vec![vec![1]])).unwrap_err();
    assert!(e.contains("overflows"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn live_temps_never_overlap(
        sizes in prop::collection::vec(0u64..300, 1..24),
        uses in prop::collection::vec(prop::collection::vec(0usize..24, 0..5), 1..20),
    ) {
        let bufs: Vec<Buffer> = sizes.iter().enumerate().map(|(i, &n)| temp(i, n)).collect();
        let uses = uses
            .into_iter()
            .map(|k| k.into_iter().filter(|&a| a < bufs.len()).collect())
            .collect();
        let plan = plan_memory(&program(bufs, uses)).unwrap();
        check(&plan);
    }
}
