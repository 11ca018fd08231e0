//! Model test: random operation sequences (quickcheck) run on the file system over a MemStore
//! and on an in-memory tree must give the same results, the same final tree, and a file
//! system that passes the invariant checker. A small transaction limit makes large writes
//! split into chunks.

use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use txdisk_fs::oracle::{dump, op_time, run_op_errno, Model, Op, Path};
use txdisk_fs::{check_invariants, Clock, Fs, FsOptions, MemStore, MkfsOptions, RenameMode};

#[derive(Clone, Debug)]
struct Ops(Vec<Op>);

/// Mostly short paths (over three names), so that most operations find what they name.
fn path(g: &mut Gen, min_len: usize) -> Path {
    let len = match u8::arbitrary(g) % 10 {
        0 => min_len,
        1..=5 => 1,
        6..=8 => 2,
        _ => 3,
    };
    (0..len).map(|_| u8::arbitrary(g) % 3).collect()
}

fn offset(g: &mut Gen) -> u64 {
    let base = *g
        .choose(&[
            0u64,
            1,
            4095,
            4096,
            10 * 4096 - 3,
            522 * 4096 + 5,
            3 * 4096 + 100,
        ])
        .unwrap_or(&0);
    base + u64::from(u16::arbitrary(g) % 512)
}

fn length(g: &mut Gen) -> u32 {
    match u8::arbitrary(g) % 8 {
        0 => 0,
        1 => 80_000 + u32::from(u16::arbitrary(g)),
        2 => 4096,
        _ => u32::from(u16::arbitrary(g) % 9000),
    }
}

/// A random operation (a function: `Op` and `Arbitrary` are both foreign here).
fn arbitrary_op(g: &mut Gen) -> Op {
    match u8::arbitrary(g) % 25 {
        0..=2 => Op::Create(path(g, 1)),
        3..=5 => Op::Mkdir(path(g, 1)),
        6..=8 => Op::Write {
            path: path(g, 1),
            offset: offset(g),
            len: length(g),
            seed: u8::arbitrary(g),
        },
        9 => Op::Read {
            path: path(g, 1),
            offset: offset(g),
            len: length(g),
        },
        10 => Op::Truncate(path(g, 1), offset(g)),
        11 => Op::Unlink(path(g, 1)),
        12 => Op::Rmdir(path(g, 1)),
        13 => Op::Rename(path(g, 1), path(g, 1)),
        14 => Op::Readdir(path(g, 0)),
        15 => Op::Symlink(path(g, 1), u8::arbitrary(g) % 4),
        16 => Op::Link(path(g, 1), path(g, 1)),
        17 => Op::Mkfifo(path(g, 1)),
        18 => Op::Chmod(path(g, 0), u32::from(u16::arbitrary(g)) & 0o7777),
        19 => Op::Chown(path(g, 0), u32::arbitrary(g) % 3, u32::arbitrary(g) % 3),
        20 => Op::Utimens(
            path(g, 0),
            i64::from(i32::arbitrary(g)),
            i64::from(u32::arbitrary(g)),
        ),
        21 => Op::RenameWith(path(g, 1), path(g, 1), RenameMode::Exchange),
        22 => Op::RenameWith(path(g, 1), path(g, 1), RenameMode::NoReplace),
        23 => Op::Readlink(path(g, 1)),
        _ => Op::Stat(path(g, 0)),
    }
}

impl Arbitrary for Ops {
    fn arbitrary(g: &mut Gen) -> Ops {
        let len = usize::from(u8::arbitrary(g)) % 60;
        Ops((0..len).map(|_| arbitrary_op(g)).collect())
    }

    /// Shorter sequences: the first half, then each with one operation left out.
    fn shrink(&self) -> Box<dyn Iterator<Item = Ops>> {
        let ops = self.0.clone();
        let half = Ops(ops[..ops.len() / 2].to_vec());
        let without_one = (0..ops.len()).map(move |skip| {
            Ops(ops
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, op)| op.clone())
                .collect())
        });
        Box::new(
            std::iter::once(half)
                .filter(|h| !h.0.is_empty())
                .chain(without_one),
        )
    }
}

fn same_as_model(ops: Ops) -> TestResult {
    // 36 blocks per transaction: writes past 30 blocks (120 KiB) are split into chunks.
    let store = MemStore::new(2048, 36);
    let manual = FsOptions {
        clock: Clock::manual(0),
        ..FsOptions::default()
    };
    let fs = match Fs::mkfs_with(
        store,
        &MkfsOptions {
            inode_count: Some(128),
            hash_seed: Some([u64::from(ops.0.len() as u32), 7]),
        },
        manual,
    ) {
        Ok(fs) => fs,
        Err(error) => return TestResult::error(format!("mkfs: {error}")),
    };
    let mut model = Model::default();
    for (step, op) in ops.0.iter().enumerate() {
        let now = op_time(step as u64);
        let expected = model.apply(op, now);
        let found = run_op_errno(&fs, op, now);
        if expected != found {
            return TestResult::error(format!(
                "step {step} {op:?}: model {expected:?}, file system {found:?}"
            ));
        }
    }
    if let Err(violation) = check_invariants(fs.store()) {
        return TestResult::error(format!("invariant: {violation}"));
    }
    match dump(&fs) {
        Ok(tree) if tree == model.tree() => TestResult::passed(),
        Ok(tree) => TestResult::error(format!(
            "final tree differs: {tree:?} vs {:?}",
            model.tree()
        )),
        Err(error) => TestResult::error(format!("dump: {error}")),
    }
}

#[test]
fn operations_match_the_in_memory_model() {
    // QUICKCHECK_TESTS overrides the count for long runs.
    let tests = std::env::var("QUICKCHECK_TESTS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(500);
    QuickCheck::new()
        .tests(tests)
        .quickcheck(same_as_model as fn(Ops) -> TestResult);
}

#[test]
fn a_known_sequence_matches_the_model() {
    let ops = vec![
        Op::Mkdir(vec![0]),
        Op::Mkdir(vec![0, 1]),
        Op::Create(vec![0, 1, 2]),
        Op::Write {
            path: vec![0, 1, 2],
            offset: 522 * 4096 + 5,
            len: 100_000,
            seed: 7,
        },
        Op::Rename(vec![0], vec![0, 1, 0]),
        Op::Rename(vec![0, 1], vec![1]),
        Op::Truncate(vec![1, 2], 4097),
        Op::Rmdir(vec![1]),
        Op::Unlink(vec![1, 2]),
        Op::Rmdir(vec![0]),
        Op::Stat(vec![]),
    ];
    let result = same_as_model(Ops(ops));
    assert!(!result.is_failure(), "{result:?}");
}
