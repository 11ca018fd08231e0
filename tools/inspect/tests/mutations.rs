//! Bad input never panics or hangs: 10,000 random bit flips and byte writes in the checksums,
//! metadata and log of a valid replicated pair (half with transactions pending, half clean; on
//! a clean pair a flip in one member shows as a copy failing verification that the other
//! member repairs), and 2,000 in a single image, each
//! checked with the function `txdisk fsck` calls. Every run must end in a one-line diagnosis
//! and an e2fsck exit code of 0 or 4 (8 as an operational error); every 50th mutation is also
//! repaired on a copy, which must end in 0, 1 or 4 and, when it claims 1, check clean after.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::BLOCK_SIZE;
use txdisk_inspect::damaged::{make, Damage, Geometry, LOG_BLOCKS};
use txdisk_inspect::{check, CheckOptions};
use txdisk_log::tooling::LOG_START;

const SEED: u64 = 0x7d15_c0de;
const REPAIR_EVERY: u64 = 50;

/// One mutation: a byte offset in one file and the new value of that byte.
#[derive(Clone, Copy, Debug)]
struct Mutation {
    file: usize,
    offset: u64,
    value: u8,
}

/// A mutation inside the metadata and log blocks (`first_block..first_block + blocks`), biased
/// towards the first 64 bytes of a block, where the fields are.
fn pick(
    rng: &mut SplitMix64,
    files: usize,
    first_block: u64,
    blocks: u64,
    original: &dyn Fn(usize, u64) -> u8,
) -> Mutation {
    let file = (rng.next_u64() % files as u64) as usize;
    let block = first_block + rng.next_u64() % blocks;
    let byte = if rng.next_u64() % 2 == 0 {
        rng.next_u64() % 64
    } else {
        rng.next_u64() % BLOCK_SIZE as u64
    };
    let offset = block * BLOCK_SIZE as u64 + byte;
    let old = original(file, offset);
    let value = if rng.next_u64() % 2 == 0 {
        old ^ (1 << (rng.next_u64() % 8))
    } else {
        rng.next_u64() as u8
    };
    Mutation {
        file,
        offset,
        value,
    }
}

fn write_byte(path: &Path, offset: u64, value: u8) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&[value], offset).unwrap();
}

#[derive(Default, Debug)]
struct Tally {
    by_code: [u64; 9],
}

/// Checks the (mutated) images read-only and returns the exit code, asserting the diagnosis.
fn check_once(images: &[PathBuf], repair: bool, context: &str) -> i32 {
    let options = CheckOptions {
        repair,
        ..CheckOptions::default()
    };
    let (code, line) = match check(images, &options) {
        Ok(report) => (report.exit_code(), report.summary()),
        Err(error) => (8, error.to_string()),
    };
    assert!(
        !line.is_empty() && !line.contains('\n'),
        "{context}: diagnosis not one line: {line:?}"
    );
    let allowed: &[i32] = if repair { &[0, 1, 4, 8] } else { &[0, 4, 8] };
    assert!(allowed.contains(&code), "{context}: exit {code}: {line}");
    code
}

/// Mutates `count` bytes, one at a time, of the file blocks from the first (the checksum
/// superblocks) through the end of the log region, checking after each.
fn mutate_many(damage: Damage, count: u64, seed: u64) -> Tally {
    let restored_code = if damage == Damage::CleanPair { 0 } else { 4 };
    // Thousands of small checks: on a memory file system where there is one.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let images = make(damage, dir.path()).unwrap();
    // Every member has the same layout: the checksum superblocks and tags, the pair metadata,
    // the log's superblock, headers and region.
    let geometry = Geometry::of(&images[0]).unwrap();
    let (first_block, blocks) = (0, geometry.raw_of_log(LOG_START + LOG_BLOCKS));
    let originals: Vec<Vec<u8>> = images.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let original = |file: usize, offset: u64| originals[file][offset as usize];
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let copies: Vec<PathBuf> = images
        .iter()
        .map(|p| scratch.join(p.file_name().unwrap()))
        .collect();
    let mut rng = SplitMix64::new(seed);
    let mut tally = Tally::default();
    for round in 0..count {
        let mutation = pick(&mut rng, images.len(), first_block, blocks, &original);
        let context = format!("seed {seed:#x} round {round} {damage:?} {mutation:?}");
        write_byte(&images[mutation.file], mutation.offset, mutation.value);
        let code = check_once(&images, false, &context);
        tally.by_code[code as usize] += 1;
        if round % REPAIR_EVERY == 0 {
            for (image, copy) in images.iter().zip(&copies) {
                std::fs::copy(image, copy).unwrap();
            }
            if check_once(&copies, true, &format!("{context} --repair")) == 1 {
                assert_eq!(
                    check_once(&copies, false, &format!("{context} after repair")),
                    0,
                    "{context}: repair claimed success"
                );
            }
        }
        write_byte(
            &images[mutation.file],
            mutation.offset,
            original(mutation.file, mutation.offset),
        );
    }
    // The images are back as they were: the original verdict again.
    assert_eq!(check_once(&images, false, "restored"), restored_code);
    tally
}

#[test]
fn ten_thousand_mutations_of_a_pair() {
    // Both members: their metadata slots, and the log's superblock, headers and region; half
    // on a pair with transactions pending, half on a clean one (where a flip in an unused log
    // block changes nothing).
    let pending = mutate_many(Damage::PendingPair, 5_000, SEED);
    let clean = mutate_many(Damage::CleanPair, 5_000, SEED + 2);
    println!(
        "pending pair: exit codes {:?}; clean pair: {:?}",
        pending.by_code, clean.by_code
    );
    assert!(
        pending.by_code[4] > 0,
        "no mutation was ever noticed: {pending:?}"
    );
    assert!(
        clean.by_code[4] > 0,
        "no mutation was ever noticed: {clean:?}"
    );
    assert!(
        clean.by_code[0] > 0,
        "no mutation ever hit unused space: {clean:?}"
    );
}

#[test]
fn mutations_of_a_single_image() {
    let tally = mutate_many(Damage::TornTail, 2_000, SEED + 1);
    println!("single: exit codes {:?}", tally.by_code);
    assert!(
        tally.by_code[4] > 0,
        "no mutation was ever noticed: {tally:?}"
    );
    assert!(
        tally.by_code[0] > 0,
        "no mutation ever made the pending record look torn: {tally:?}"
    );
}
