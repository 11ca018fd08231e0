//! Damage at rest, after a clean close, beneath the checksums: bit flips at random offsets of
//! 160 random blocks, 20 home blocks overwritten with another address's block (misdirected
//! writes), 40 blocks rewritten through the stack and then given their earlier contents back
//! on one member (lost writes), and on a pair a damaged metadata slot and a damaged log
//! superblock block. Read through `txdisk::open`, a pair serves every block right and repairs
//! the copy it read; a single image refuses every damaged block with an error naming its
//! address, and no other. `txdisk scrub` counts what it finds per kind and member, repairs it,
//! and a second scrub and `fsck` find the pair clean; on a single image it reports every
//! damaged block and writes nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;
use txdisk::disk::rng::SplitMix64;
use txdisk::integrity::IntegrityDisk;
use txdisk::log::LogError;
use txdisk::{Block, Disk, FileDisk, FormatOptions, LogicalError, OpenOptions};
use txdisk_inspect::damaged::{
    distinct_block, flip_random_bit, misdirect, older_slot, patch_raw, put_back, snapshot, Geometry,
};

/// Logical blocks written (and damaged among).
const BLOCKS: u64 = 1024;
const LOG_BLOCKS: u64 = 256;
const FLIPPED: usize = 160;
const MISDIRECTED: usize = 20;
const LOST: usize = 40;
/// Blocks a transaction writes when the images are filled.
const BATCH: u64 = 64;

/// What was done to one logical block, and on which image (0 = d1, 1 = d2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Done {
    Flipped(usize),
    Misdirected { image: usize, from: u64 },
    Lost(usize),
}

/// Damaged images, and what every logical block must read as.
struct Scene {
    _dir: tempfile::TempDir,
    images: Vec<PathBuf>,
    expected: Vec<Block>,
    damage: BTreeMap<u64, Done>,
    /// The pair metadata slot damaged on d2 (a pair only).
    slot: Option<u64>,
    /// Where the images' blocks are (read before any damage).
    geometry: Geometry,
}

impl Scene {
    /// Blocks damaged in way `kind` on image `image`.
    fn count(&self, image: usize, kind: &str) -> u64 {
        self.damage
            .values()
            .filter(|done| match (kind, done) {
                ("flipped", Done::Flipped(i)) | ("stale", Done::Lost(i)) => *i == image,
                ("misdirected", Done::Misdirected { image: i, .. }) => *i == image,
                _ => false,
            })
            .count() as u64
    }

    /// The pair address of logical block `addr`.
    fn pair_addr(&self, addr: u64) -> u64 {
        self.geometry.log.data_start + addr
    }
}

fn write_blocks(images: &[PathBuf], values: &[(u64, Block)]) {
    let stack = txdisk::open(images, OpenOptions::default()).expect("open");
    for batch in values.chunks(BATCH as usize) {
        stack
            .transaction(|tx| {
                for (addr, block) in batch {
                    tx.write(*addr, block)?;
                }
                Ok::<(), LogicalError>(())
            })
            .expect("transaction");
    }
    stack.close().expect("close");
}

/// Formats one image or a pair, fills every logical block with a block of its own, closes,
/// then damages it at rest (module documentation). Seeded: the same damage every run.
fn damaged_scene(pair: bool, seed: u64) -> Scene {
    let dir = tempfile::tempdir().expect("tempdir");
    let names: &[&str] = if pair {
        &["d1.img", "d2.img"]
    } else {
        &["single.img"]
    };
    let images: Vec<PathBuf> = names.iter().map(|name| dir.path().join(name)).collect();
    let size_blocks = txdisk::image_blocks_for(BLOCKS, LOG_BLOCKS, images.len());
    txdisk::format(
        &images,
        &FormatOptions {
            size_blocks,
            log_blocks: LOG_BLOCKS,
        },
    )
    .expect("format");
    let mut expected: Vec<Block> = (0..BLOCKS).map(|a| distinct_block(a, seed)).collect();
    let first: Vec<(u64, Block)> = expected
        .iter()
        .cloned()
        .enumerate()
        .map(|(a, b)| (a as u64, b))
        .collect();
    write_blocks(&images, &first);
    let geometry = Geometry::of(&images[0]).expect("geometry");

    // Disjoint random addresses: flipped, misdirected, lost, and the misdirected blocks' origins.
    let mut rng = SplitMix64::new(seed);
    let mut addrs: Vec<u64> = (0..BLOCKS).collect();
    for i in (1..addrs.len()).rev() {
        addrs.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let (flipped, rest) = addrs.split_at(FLIPPED);
    let (misdirected, rest) = rest.split_at(MISDIRECTED);
    let (lost, rest) = rest.split_at(LOST);
    let origins = &rest[..MISDIRECTED];
    let members = images.len();
    let mut damage = BTreeMap::new();

    // Lost writes: the old contents saved, new ones written through the stack, the old ones
    // put back on d1 alone.
    let raw: Vec<u64> = lost.iter().map(|a| geometry.raw_of_home(*a)).collect();
    let before = snapshot(&images[0], &raw).expect("snapshot");
    let second: Vec<(u64, Block)> = lost
        .iter()
        .map(|a| (*a, distinct_block(*a, seed ^ 0x5eed)))
        .collect();
    write_blocks(&images, &second);
    for (addr, block) in &second {
        expected[*addr as usize] = block.clone();
        damage.insert(*addr, Done::Lost(0));
    }
    put_back(&images[0], &before).expect("put back");

    for (index, addr) in flipped.iter().enumerate() {
        let image = index % members;
        flip_random_bit(&images[image], geometry.raw_of_home(*addr), &mut rng).expect("flip");
        damage.insert(*addr, Done::Flipped(image));
    }
    for (index, (addr, from)) in misdirected.iter().zip(origins).enumerate() {
        let image = index % members;
        misdirect(
            &images[image],
            geometry.raw_of_home(*addr),
            geometry.raw_of_home(*from),
        )
        .expect("misdirect");
        damage.insert(*addr, Done::Misdirected { image, from: *from });
    }
    let slot = if pair {
        // The older metadata slot of d2, and the log superblock's block of d1.
        let slot = older_slot(&images[1]).expect("slots");
        patch_raw(&images[1], geometry.raw_of_checked(slot), 30, &[0xa5]).expect("slot");
        patch_raw(&images[0], geometry.raw_of_log(0), 20, &[0x5a]).expect("log superblock");
        Some(slot)
    } else {
        None
    };
    Scene {
        _dir: dir,
        images,
        expected,
        damage,
        slot,
        geometry,
    }
}

/// Verifies data block `home` of image `image` through its checksums, read-only.
fn verifies(scene: &Scene, image: usize, home: u64) -> bool {
    let disk = IntegrityDisk::open(FileDisk::open_read_only(&scene.images[image]).expect("open"))
        .expect("checksums");
    let addr = scene
        .geometry
        .checked_of_log(scene.geometry.log.data_start + home);
    disk.verify(addr).is_ok()
}

#[test]
fn a_damaged_pair_serves_every_block_and_repairs_the_copy_it_read() {
    let scene = damaged_scene(true, 0xa7_0001);
    assert_eq!(scene.damage.len(), FLIPPED + MISDIRECTED + LOST);
    let stack = txdisk::open(&scene.images, OpenOptions::default())
        .expect("the pair opens, reading d2's copy of the log superblock");
    for addr in 0..BLOCKS {
        assert_eq!(
            stack.read_committed(addr).expect("every block reads"),
            scene.expected[addr as usize],
            "block {addr} ({:?})",
            scene.damage.get(&addr)
        );
    }
    stack.close().expect("close");
    // d1's damaged copies were read first and written back from d2; d2's were never read
    // (d1's copy served): a scrub finds those.
    for (addr, done) in &scene.damage {
        let image = match done {
            Done::Flipped(image) | Done::Lost(image) => *image,
            Done::Misdirected { image, .. } => *image,
        };
        assert_eq!(
            verifies(&scene, image, *addr),
            image == 0,
            "block {addr} ({done:?}) on d{}",
            image + 1
        );
    }
}

#[test]
fn a_damaged_single_image_refuses_every_damaged_block_by_its_address_and_no_other() {
    let scene = damaged_scene(false, 0xa7_0002);
    let stack = txdisk::open(&scene.images, OpenOptions::default()).expect("open");
    for addr in 0..BLOCKS {
        let read = stack.read_committed(addr);
        let through_disk = Disk::read(&*stack, addr);
        match scene.damage.get(&addr) {
            None => {
                assert_eq!(
                    read.expect("an undamaged block reads"),
                    scene.expected[addr as usize],
                    "block {addr}"
                );
                assert!(through_disk.is_ok(), "block {addr}");
            }
            Some(done) => {
                match read {
                    Err(LogicalError::Image(LogError::DamagedBlock { addr: named, .. })) => {
                        assert_eq!(named, addr, "{done:?}")
                    }
                    other => {
                        panic!("block {addr} ({done:?}): expected DamagedBlock, got {other:?}")
                    }
                }
                match through_disk {
                    Err(txdisk::disk::DiskError::Corrupt {
                        addr: named,
                        damage,
                    }) => {
                        assert_eq!(named, addr, "{done:?}");
                        let kind = match done {
                            Done::Flipped(_) => "flipped",
                            Done::Misdirected { .. } => "misdirected",
                            Done::Lost(_) => "stale",
                        };
                        assert_eq!(damage.kind(), kind, "block {addr}");
                    }
                    other => panic!("block {addr} ({done:?}): expected Corrupt, got {other:?}"),
                }
            }
        }
    }
    stack.close().expect("close");
}

/// Runs the real binary.
fn txdisk_cli(args: &[&str], images: &[PathBuf]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_txdisk"))
        .args(args)
        .args(images)
        .output()
        .expect("run txdisk");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn txdisk_scrub_counts_each_kind_per_member_and_repairs_a_damaged_pair() {
    let scene = damaged_scene(true, 0xa7_0003);
    let started = Instant::now();
    let (code, text, stderr) = txdisk_cli(&["scrub"], &scene.images);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(code, 1, "everything repaired: {text}{stderr}");
    // d1: its flips and misdirected blocks, every lost write, and the log superblock's block.
    let d1 = format!(
        "d1.img (d1): {} flipped, {} misdirected, {} stale, 0 unreadable (first: ",
        scene.count(0, "flipped") + 1,
        scene.count(0, "misdirected"),
        LOST
    );
    let d2 = format!(
        "d2.img (d2): {} flipped, {} misdirected, 0 stale, 0 unreadable (first: ",
        scene.count(1, "flipped"),
        scene.count(1, "misdirected"),
    );
    assert!(text.contains(&d1), "{d1:?} not in {text}");
    assert!(text.contains(&d2), "{d2:?} not in {text}");
    assert!(
        text.contains("first: 0 flipped"),
        "the log superblock first: {text}"
    );
    let slot = scene.slot.expect("a pair");
    assert!(
        text.contains(&format!(
            "metadata slot {slot} damaged: the member's metadata was written again"
        )),
        "{text}"
    );
    let repaired = (FLIPPED + MISDIRECTED + LOST + 1) as u64;
    assert!(
        text.contains(&format!("repaired {repaired} block copies, lost 0 blocks")),
        "{text}"
    );
    let last = text.lines().last().unwrap_or_default();
    assert!(last.contains("errors corrected, now clean"), "{last}");
    println!(
        "scrub of a pair of {} blocks each: {seconds:.2} s (debug build, process included)",
        scene.geometry.integrity.data_blocks
    );

    // Nothing left: a second scrub is clean, and so is fsck.
    let (code, json, _) = txdisk_cli(&["scrub", "--json"], &scene.images);
    assert_eq!(code, 0, "{json}");
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(value["exit_code"], 0);
    assert_eq!(value["repaired_blocks"], 0);
    for member in value["members"].as_array().expect("members") {
        assert_eq!(member["flipped_blocks"], 0, "{member}");
        assert_eq!(member["ok_blocks"], value["scanned_blocks"], "{member}");
    }
    let (code, fsck, _) = txdisk_cli(&["fsck"], &scene.images);
    assert_eq!(code, 0, "{fsck}");
    // Every copy of every block verifies, and the pair reads what was written.
    for image in 0..2 {
        for addr in 0..BLOCKS {
            assert!(verifies(&scene, image, addr), "d{} block {addr}", image + 1);
        }
    }
    let stack = txdisk::open(&scene.images, OpenOptions::default()).expect("open");
    for addr in 0..BLOCKS {
        assert_eq!(
            stack.read_committed(addr).expect("read"),
            scene.expected[addr as usize]
        );
    }
    stack.close().expect("close");
}

#[test]
fn scrub_json_lists_the_first_faults_with_the_misdirected_blocks_origins() {
    let scene = damaged_scene(true, 0xa7_0004);
    let (code, json, stderr) = txdisk_cli(&["scrub", "--json"], &scene.images);
    assert_eq!(code, 1, "{json}{stderr}");
    assert!(stderr.is_empty(), "no progress bar when piped: {stderr}");
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    let members = value["members"].as_array().expect("members");
    for (image, member) in members.iter().enumerate() {
        assert_eq!(
            member["misdirected_blocks"],
            scene.count(image, "misdirected"),
            "{member}"
        );
        let faults = member["first_faults"].as_array().expect("faults");
        assert_eq!(faults.len(), 8, "the first 8 are listed: {member}");
        let addresses: Vec<u64> = faults
            .iter()
            .filter_map(|f| f["address"].as_u64())
            .collect();
        assert!(addresses.windows(2).all(|w| w[0] < w[1]), "{addresses:?}");
        for fault in faults {
            let addr = fault["address"].as_u64().expect("address");
            if fault["kind"] == "misdirected" {
                let home = addr - scene.geometry.log.data_start;
                let Some(Done::Misdirected { from, .. }) = scene.damage.get(&home) else {
                    panic!("{fault} was not misdirected")
                };
                assert_eq!(fault["belongs_at"], scene.pair_addr(*from), "{fault}");
            }
        }
    }
    assert_eq!(members[1]["damaged_slots"][0], scene.slot.expect("a pair"));
    assert_eq!(value["lost_blocks"], 0);
}

#[test]
fn a_scrub_of_a_single_image_reports_every_damaged_block_and_writes_nothing() {
    let scene = damaged_scene(false, 0xa7_0005);
    let before = std::fs::read(&scene.images[0]).expect("read");
    let scrubbed = txdisk::scrub(&scene.images, &mut |_| {}).expect("scrub");
    assert!(!scrubbed.replicated);
    let report = &scrubbed.report;
    let member = &report.members[0];
    assert_eq!(
        (
            member.flipped_blocks,
            member.misdirected_blocks,
            member.stale_blocks,
            member.unreadable_blocks
        ),
        (FLIPPED as u64, MISDIRECTED as u64, LOST as u64, 0)
    );
    assert_eq!(report.lost_blocks, (FLIPPED + MISDIRECTED + LOST) as u64);
    assert_eq!(report.repaired_blocks, 0);
    let damaged: Vec<u64> = scene.damage.keys().map(|a| scene.pair_addr(*a)).collect();
    assert_eq!(report.first_lost, damaged[..8].to_vec());
    assert!(!scrubbed.all_repaired());
    assert_eq!(
        std::fs::read(&scene.images[0]).expect("read"),
        before,
        "nothing to repair from: nothing written"
    );
    let (code, text, _) = txdisk_cli(&["scrub"], &scene.images);
    assert_eq!(code, 4, "{text}");
    assert!(
        text.contains("single.img: 160 flipped, 20 misdirected, 40 stale, 0 unreadable"),
        "{text}"
    );
    assert!(
        text.lines()
            .last()
            .unwrap_or_default()
            .contains("problems left uncorrected: 220 block(s)"),
        "{text}"
    );
}

#[test]
fn a_block_rotten_on_both_members_is_lost_and_the_scrub_exits_4() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images =
        txdisk_inspect::damaged::make(txdisk_inspect::damaged::Damage::CleanPair, dir.path())
            .expect("pair");
    let geometry = Geometry::of(&images[0]).expect("geometry");
    let mut rng = SplitMix64::new(0xb07);
    for image in &images {
        flip_random_bit(image, geometry.raw_of_home(3), &mut rng).expect("flip");
    }
    flip_random_bit(&images[1], geometry.raw_of_home(4), &mut rng).expect("flip");
    let (code, text, _) = txdisk_cli(&["scrub"], &images);
    assert_eq!(code, 4, "{text}");
    let lost = geometry.log.data_start + 3;
    assert!(
        text.contains(&format!(
            "repaired 1 block copies, lost 1 blocks (first: {lost})"
        )),
        "{text}"
    );
    // What could be repaired was; the lost block stays lost (and says so on every read).
    let (code, again, _) = txdisk_cli(&["scrub"], &images);
    assert_eq!(code, 4, "{again}");
    assert!(
        again.contains("repaired 0 block copies, lost 1 blocks"),
        "{again}"
    );
    let stack = txdisk::open(&images, OpenOptions::default()).expect("open");
    assert!(matches!(
        stack.read_committed(3),
        Err(LogicalError::Image(LogError::DamagedBlock { addr: 3, .. }))
    ));
    // Writing the block makes it good again on both members.
    stack
        .transaction(|tx| tx.write(3, &Block::filled(3)))
        .expect("write");
    stack.close().expect("close");
    let (code, clean, _) = txdisk_cli(&["scrub"], &images);
    assert_eq!(code, 0, "{clean}");
}
