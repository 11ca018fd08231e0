//! `txdisk fsck` and the pair's write-intent bitmap, through the real binary on pairs made by
//! `txdisk::format`: a data block of d2 changed behind the pair's back (through its checksums,
//! so both copies verify) is an error when recovery would not copy its chunk, and only a
//! fixable difference when the chunk is marked; the report shows the bitmap (chunk size, the
//! chunks recovery copies, the first marked ones); a damaged bitmap block on one member is
//! fixable. `--repair` leaves each pair clean.

use std::path::{Path, PathBuf};
use std::process::Command;
use txdisk::integrity::IntegrityDisk;
use txdisk::{Block, Disk, FileDisk, FormatOptions, LogicalError, OpenOptions};
use txdisk_inspect::damaged::Geometry;

/// Blocks of each image: several chunks of the default size.
const SIZE_BLOCKS: u64 = 2048;
const LOG_BLOCKS: u64 = 64;
/// The logical block the tests change on d2.
const HOME: u64 = 300;

struct Run {
    code: i32,
    stdout: String,
}

fn fsck(args: &[&str], images: &[PathBuf]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_txdisk"))
        .arg("fsck")
        .args(args)
        .args(images)
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    }
}

fn fsck_json(images: &[PathBuf]) -> (i32, serde_json::Value) {
    let run = fsck(&["--json"], images);
    let value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|error| panic!("{error}: {}", run.stdout));
    (run.code, value)
}

/// The findings of a JSON report with `code`.
fn findings<'a>(report: &'a serde_json::Value, code: &str) -> Vec<&'a serde_json::Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|finding| finding["code"] == code)
        .collect()
}

/// A pair formatted by `txdisk::format`, some transactions written, closed cleanly.
fn written_pair(dir: &Path) -> Vec<PathBuf> {
    let images = vec![dir.join("d1.img"), dir.join("d2.img")];
    txdisk::format(
        &images,
        &FormatOptions {
            size_blocks: SIZE_BLOCKS,
            log_blocks: LOG_BLOCKS,
        },
    )
    .unwrap();
    let stack = txdisk::open(&images, OpenOptions::default()).unwrap();
    for base in [0, HOME - 4] {
        stack
            .transaction(|tx| {
                for addr in base..base + 8 {
                    tx.write(addr, &Block::filled(addr as u8))?;
                }
                Ok::<(), LogicalError>(())
            })
            .unwrap();
    }
    stack.close().unwrap();
    images
}

/// The pair address of logical block `home`.
fn pair_addr(image: &Path, home: u64) -> u64 {
    Geometry::of(image).unwrap().log.data_start + home
}

/// Writes `block` at pair address `addr` of one member, through its checksums (so it verifies,
/// with a newer generation than the other member's copy) and behind the pair's back.
fn change_member(image: &Path, addr: u64, block: &Block) {
    let geometry = Geometry::of(image).unwrap();
    let disk = IntegrityDisk::open(FileDisk::open(image).unwrap()).unwrap();
    disk.write(geometry.checked_of_log(addr), block).unwrap();
    disk.sync().unwrap();
}

/// After `--repair` (exit 1) the pair is clean and its members agree; returns what the repair
/// printed.
fn assert_repaired(images: &[PathBuf]) -> String {
    let repaired = fsck(&["--repair"], images);
    assert_eq!(repaired.code, 1, "{}", repaired.stdout);
    let (code, report) = fsck_json(images);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["replicas"]["differing_blocks"], 0, "{report:#}");
    repaired.stdout
}

#[test]
fn a_difference_recovery_would_not_copy_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let images = written_pair(dir.path());
    let addr = pair_addr(&images[1], HOME);
    change_member(&images[1], addr, &Block::filled(0xd2));

    let (code, report) = fsck_json(&images);
    assert_eq!(code, 4, "{report:#}");
    let unmarked = findings(&report, "replicated.unmarked_difference");
    assert_eq!(unmarked.len(), 1, "{report:#}");
    assert_eq!(unmarked[0]["severity"], "error", "{report:#}");
    let message = unmarked[0]["message"].as_str().unwrap();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(message.contains("recovery would not copy"), "{message}");
    assert_eq!(report["replicas"]["unmarked_blocks"], 1, "{report:#}");
    assert_eq!(report["replicas"]["first_unmarked"][0], addr, "{report:#}");
    assert_eq!(report["bitmap"]["resync_chunks"], 0, "{report:#}");

    let text = fsck(&[], &images);
    assert!(
        text.stdout.contains("error   replicated:"),
        "{}",
        text.stdout
    );
    let repaired = assert_repaired(&images);
    assert!(
        repaired.contains("resynced the members: 1 of"),
        "the repair's resync reads every block: {repaired}"
    );
}

#[test]
fn a_difference_in_a_marked_chunk_is_only_fixable_and_the_bitmap_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let images = written_pair(dir.path());
    let addr = pair_addr(&images[1], HOME);
    // A write through the pair sets its chunk's bit on both members before the data reaches
    // either; dropping the pair without `close` is a crash: it stays Dirty with the bit set.
    let opened = txdisk::open_disk(&images, &mut |_| {}).unwrap();
    let pair = opened.pair.as_ref().unwrap();
    pair.write(addr, &Block::filled(0x5a)).unwrap();
    pair.sync().unwrap();
    let chunk = addr / pair.bitmap_layout().chunk_blocks;
    assert_eq!(pair.marked_chunks(), [chunk].into());
    drop(opened);
    change_member(&images[1], addr, &Block::filled(0xd2));

    let (code, report) = fsck_json(&images);
    assert_eq!(code, 4, "{report:#}");
    assert_eq!(
        findings(&report, "replicated.differ").len(),
        1,
        "{report:#}"
    );
    assert!(
        findings(&report, "replicated.unmarked_difference").is_empty(),
        "{report:#}"
    );
    let worst = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|finding| finding["severity"] == "error")
        .count();
    assert_eq!(worst, 0, "{report:#}");
    assert_eq!(report["replicas"]["differing_blocks"], 1, "{report:#}");
    assert_eq!(report["replicas"]["unmarked_blocks"], 0, "{report:#}");
    let bitmap = &report["bitmap"];
    let chunk_blocks = txdisk::replicated::DEFAULT_CHUNK_BLOCKS;
    assert_eq!(bitmap["chunk_blocks"], chunk_blocks, "{report:#}");
    assert_eq!(bitmap["chunk_kib"], chunk_blocks * 4, "{report:#}");
    assert_eq!(bitmap["marked_chunks"], 1, "{report:#}");
    assert_eq!(bitmap["resync_chunks"], 1, "{report:#}");
    assert_eq!(bitmap["first_marked_chunks"][0], chunk, "{report:#}");
    for member in bitmap["members"].as_array().unwrap() {
        assert_eq!(member["marked_chunks"], 1, "{report:#}");
        assert_eq!(member["unusable_blocks"], 0, "{report:#}");
    }
    let summary = findings(&report, "replicated.bitmap");
    assert_eq!(summary.len(), 1, "{report:#}");
    assert_eq!(summary[0]["severity"], "info", "{report:#}");

    let text = fsck(&[], &images).stdout;
    assert!(
        text.contains(&format!(
            "1 marked (first: {chunk}); the next open copies 1"
        )),
        "{text}"
    );
    assert!(
        text.contains("write-intent bitmap: 1 of")
            && text.contains(&format!(
                "chunk(s) of {} blocks",
                txdisk::replicated::DEFAULT_CHUNK_BLOCKS
            )),
        "{text}"
    );
    assert_repaired(&images);
}

#[test]
fn a_damaged_bitmap_block_on_one_member_is_fixable() {
    let dir = tempfile::tempdir().unwrap();
    let images = written_pair(dir.path());
    {
        // Through the checksums: the block verifies, and only the bitmap's own checksum fails.
        let disk = IntegrityDisk::open(FileDisk::open(&images[0]).unwrap()).unwrap();
        let meta = txdisk::replicated::inspect_member(&disk).unwrap().unwrap();
        let block = meta.bitmap_layout().first_bitmap_block();
        let mut contents = disk.read(block).unwrap();
        contents.as_bytes_mut()[40] ^= 0x01;
        disk.write(block, &contents).unwrap();
        disk.sync().unwrap();
    }
    let (code, report) = fsck_json(&images);
    assert_eq!(code, 4, "{report:#}");
    let damaged = findings(&report, "replicated.bitmap_damaged");
    assert_eq!(damaged.len(), 1, "{report:#}");
    assert_eq!(damaged[0]["severity"], "fixable", "{report:#}");
    let message = damaged[0]["message"].as_str().unwrap();
    assert!(message.contains("d1.img"), "{message}");
    assert!(message.contains("block 0: bad checksum"), "{message}");
    assert!(
        message.contains("the other member's copies are valid"),
        "{message}"
    );
    let members = report["bitmap"]["members"].as_array().unwrap();
    assert_eq!(members[0]["unusable_blocks"], 1, "{report:#}");
    assert_eq!(
        members[0]["first_unusable"][0]["reason"], "bad checksum",
        "{report:#}"
    );
    assert_eq!(members[1]["unusable_blocks"], 0, "{report:#}");
    // d2's copy vouches for every chunk of the block: nothing counts as marked.
    assert_eq!(report["bitmap"]["marked_chunks"], 0, "{report:#}");
    let text = fsck(&[], &images).stdout;
    assert!(
        text.contains("marks 0 chunk(s); 1 block(s) unusable (block 0: bad checksum)"),
        "{text}"
    );
    // Here the repair's log recovery, writing the log header, marks a chunk of block 0 and so
    // rewrites the block on both members (a block no write reaches is rewritten after the
    // close: tools/inspect/tests/damaged.rs).
    assert_repaired(&images);
    let (_, report) = fsck_json(&images);
    assert_eq!(
        report["bitmap"]["members"][0]["unusable_blocks"], 0,
        "{report:#}"
    );
}
