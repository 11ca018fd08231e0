//! User data crafted to look like the next log record is never replayed: a transaction writes a
//! forged record head (the format's magic, the exact next sequence number and durable_seq, a
//! victim address) and its data block; installation leaves both as stale copies in the log
//! region exactly where the next record will go. The run is then crashed at every disk operation
//! and every crash state (torn sectors too, sampled past a cap) is recovered on a `SimDisk`: the
//! contents must always be a prefix state, the victim untouched. Forgeries: the bytes a log with
//! another salt really wrote for that record, hand-made heads with guessed seeds, and a raw copy
//! of a real record of this same image from an earlier life (right salt, used sequence number).
//! A control forged with the image's own salt and the next sequence number must be replayed, so
//! the test shows it can fail.

mod common;
mod forge;

use common::{formatted, read_contents, states_of, Progress};
use std::sync::Arc;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Block, Disk, DiskImage, SimDisk};
use txdisk_log::tooling::{matches_prefix, scan_log, Contents, ScanStop, WalChecker};
use txdisk_log::{log_recover, Log, LogOptions};

const LOG_BLOCKS: u64 = 8;
const DATA_BLOCKS: u64 = 8;
const SIZE_BLOCKS: u64 = 3 + LOG_BLOCKS + DATA_BLOCKS;
const SALT: u64 = 0x5a17_0000_0000_0001;
const TWIN_SALT: u64 = 0x0bad_5a17;
/// The address the forged record would write; no real transaction touches it.
const VICTIM: u64 = 7;

#[derive(Clone, Debug)]
enum Step {
    /// A durable commit.
    Commit(Vec<(u64, Block)>),
    Install,
}

/// T1 writes `first` at addresses 0 and 1 (its data blocks land at log positions 1 and 2);
/// installation frees them; T2..T4 bring the log's head round to position 9, which is block 1
/// again; T5 writes `last`. Where T5 goes, T1's stale data blocks are waiting.
fn steps(first: [Block; 2], last: (u64, Block)) -> Vec<Step> {
    let [desc, data] = first;
    vec![
        Step::Commit(vec![(0, desc), (1, data)]),
        Step::Install,
        Step::Commit(vec![(2, forge::tagged("t2", 2))]),
        Step::Commit(vec![(3, forge::tagged("t3", 3))]),
        Step::Commit(vec![(4, forge::tagged("t4", 4))]),
        Step::Commit(vec![last]),
    ]
}

/// Runs `steps` until the first error; returns how far it got.
fn run(disk: Arc<dyn Disk>, steps: &[Step]) -> Progress {
    let mut progress = Progress::default();
    let options = LogOptions {
        background_installer: false,
        ..LogOptions::default()
    };
    let Ok(log) = Log::open(disk, options) else {
        return progress;
    };
    for step in steps {
        match step {
            Step::Commit(writes) => {
                progress.commits_called += 1;
                let Ok(Some(seq)) = log.append(writes.clone()) else {
                    break;
                };
                if log.wait_durable(seq).is_err() {
                    break;
                }
                progress.durable_commits = progress.commits_called;
            }
            Step::Install => {
                if log.install().is_err() {
                    break;
                }
            }
        }
    }
    progress
}

fn prefix_states(initial: &Contents, steps: &[Step]) -> Vec<Contents> {
    let mut states = vec![initial.clone()];
    for step in steps {
        if let Step::Commit(writes) = step {
            let mut next = states[states.len() - 1].clone();
            next.extend(writes.iter().cloned());
            states.push(next);
        }
    }
    states
}

/// An image and its logical contents: where a campaign starts.
#[derive(Clone)]
struct Scenario {
    base: DiskImage,
    initial: Contents,
}

fn fresh() -> Scenario {
    Scenario {
        base: formatted(SIZE_BLOCKS, LOG_BLOCKS, SALT),
        initial: Contents::new(),
    }
}

/// The sequence number, durable_seq and log position T5 gets on `scenario` (the same whatever
/// T1 writes), checked to be on top of T1's first data block.
fn next_record_slot(scenario: &Scenario) -> (u64, u64, u64) {
    let t1_pos = scan_log(&SimDisk::from_image(&scenario.base), false)
        .expect("scan the base")
        .end_pos;
    let sim = Arc::new(SimDisk::from_image(&scenario.base));
    let plain = [forge::tagged("plain", 0), forge::tagged("plain", 1)];
    let progress = run(sim.clone(), &steps(plain, (6, forge::tagged("t5", 5))));
    assert_eq!(progress.durable_commits, 5, "the clean run failed");
    let scan = scan_log(&*sim, false).expect("scan");
    let t5 = scan.records.last().expect("T5 in the log");
    assert_eq!(
        t5.pos % LOG_BLOCKS,
        (t1_pos + 1) % LOG_BLOCKS,
        "T5 at position {} does not overlay the first data block of T1 at {t1_pos}",
        t5.pos
    );
    (t5.seq, t5.durable_seq, t5.pos)
}

fn evil() -> Block {
    forge::tagged("EVIL: replayed from user data", 0xe7)
}

/// The bytes a log with another salt wrote for the record the forger wants: T5 = {VICTIM: evil}.
fn twin_forgery() -> Block {
    let sim = Arc::new(SimDisk::from_image(&formatted(
        SIZE_BLOCKS,
        LOG_BLOCKS,
        TWIN_SALT,
    )));
    let plain = [forge::tagged("plain", 0), forge::tagged("plain", 1)];
    let progress = run(sim.clone(), &steps(plain, (VICTIM, evil())));
    assert_eq!(progress.durable_commits, 5, "the twin's run failed");
    let scan = scan_log(&*sim, false).expect("scan the twin");
    let t5 = scan.records.last().expect("T5 in the twin");
    assert_eq!(t5.addrs, vec![VICTIM]);
    let sb = scan.superblock;
    assert!(
        sim.read(sb.log_addr(t5.pos + 1)).expect("read") == evil(),
        "the twin's data block is not the payload"
    );
    sim.read(sb.log_addr(t5.pos))
        .expect("read the twin's descriptor")
}

/// What checking every crash state of one forgery found.
#[derive(Debug, Default)]
struct Findings {
    states: u64,
    /// States in which recovery reached T5's place, found the forged head and payload there,
    /// and refused them: by their checksum, or by their sequence number.
    checksum_refusals: u64,
    sequence_refusals: u64,
    violations: Vec<String>,
}

/// Recovers `image` and checks it against the allowed prefix states.
fn check_state(
    image: &DiskImage,
    allowed: &[Contents],
    durable: usize,
) -> Result<ScanStop, String> {
    let sim = Arc::new(SimDisk::from_image(image));
    let checker = WalChecker::new(sim.clone(), false);
    let report = log_recover(&checker).map_err(|e| format!("recovery failed: {e}"))?;
    let contents = read_contents(&*sim);
    matches_prefix(&contents, allowed, durable).map_err(|v| v.to_string())?;
    match checker.violations().first() {
        Some(violation) => Err(violation.clone()),
        None => Ok(report.stop),
    }
}

/// Crashes the workload with T1 = {forged head, payload} at every operation and checks every
/// crash state (whole blocks: all; torn sectors: all up to a cap, else a seeded sample).
fn crash_campaign(scenario: &Scenario, forged: &Block, seed: u64) -> Findings {
    let (t5_seq, _, t5_pos) = next_record_slot(scenario);
    let work = steps([forged.clone(), evil()], (6, forge::tagged("t5", 5)));
    let states = prefix_states(&scenario.initial, &work);
    let total_ops = {
        let sim = Arc::new(SimDisk::from_image(&scenario.base));
        let progress = run(sim.clone(), &work);
        assert_eq!(
            progress.durable_commits, 5,
            "seed {seed:#x}: the clean run failed"
        );
        sim.ops()
    };
    let sb =
        txdisk_log::tooling::Superblock::layout(SIZE_BLOCKS, LOG_BLOCKS, SALT).expect("layout");
    let (head_addr, payload_addr) = (sb.log_addr(t5_pos), sb.log_addr(t5_pos + 1));
    let mut rng = SplitMix64::new(seed);
    let mut findings = Findings::default();
    for crash_op in 0..=total_ops {
        let sim = Arc::new(SimDisk::from_image(&scenario.base));
        sim.schedule_crash(crash_op);
        let progress = run(sim.clone(), &work);
        for torn in [false, true] {
            let (images, _) = states_of(&sim, torn, 1 << 10, 128, &mut rng);
            for image in images {
                findings.states += 1;
                let in_place = image.block(head_addr) == Some(forged)
                    && image.block(payload_addr) == Some(&evil());
                let allowed = &states[..=progress.commits_called];
                match check_state(&image, allowed, progress.durable_commits) {
                    Ok(stop) if in_place => tally_refusal(&mut findings, &stop, t5_pos, t5_seq),
                    Ok(_) => {}
                    Err(violation) => findings
                        .violations
                        .push(format!("crash at op {crash_op} torn {torn}: {violation}")),
                }
            }
        }
    }
    findings
}

/// Counts a recovery that reached T5's place with the forgery there and stopped on it.
fn tally_refusal(findings: &mut Findings, stop: &ScanStop, t5_pos: u64, t5_seq: u64) {
    match *stop {
        ScanStop::ChecksumMismatch { pos, seq, .. } if pos == t5_pos && seq == t5_seq => {
            findings.checksum_refusals += 1
        }
        ScanStop::WrongSequence {
            pos, expected_seq, ..
        } if pos == t5_pos && expected_seq == t5_seq => findings.sequence_refusals += 1,
        _ => {}
    }
}

#[test]
fn a_record_written_with_another_salt_is_not_replayed() {
    let slot = next_record_slot(&fresh());
    let forged = twin_forgery();
    assert_eq!(&forged.as_bytes()[..8], forge::RECORD_MAGIC);
    assert_eq!(
        forged.as_bytes()[8..16],
        slot.0.to_le_bytes(),
        "the forged head carries T5's sequence number"
    );
    let seed = 0x5a17_0010;
    let findings = crash_campaign(&fresh(), &forged, seed);
    println!(
        "twin forgery: {} states, {} refused by their checksum at T5's place",
        findings.states, findings.checksum_refusals
    );
    assert!(
        findings.violations.is_empty(),
        "seed {seed:#x}: {:#?}",
        findings.violations
    );
    assert!(
        findings.checksum_refusals > 0,
        "no crash state put the forgery where T5 goes"
    );
}

#[test]
fn hand_forged_heads_with_guessed_seeds_are_not_replayed() {
    let (t5_seq, t5_durable, _) = next_record_slot(&fresh());
    for (guess, seed) in [
        (forge::Seed::Unsalted, 0x5a17_0020),
        (forge::Seed::Salt(0), 0x5a17_0021),
        (forge::Seed::Salt(TWIN_SALT), 0x5a17_0022),
    ] {
        let forged = forge::record_descriptor(guess, t5_seq, t5_durable, &[VICTIM], &[&evil()]);
        let findings = crash_campaign(&fresh(), &forged, seed);
        println!(
            "{guess:?}: {} states, {} refused by their checksum at T5's place",
            findings.states, findings.checksum_refusals
        );
        assert!(
            findings.violations.is_empty(),
            "{guess:?}, seed {seed:#x}: {:#?}",
            findings.violations
        );
        assert!(
            findings.checksum_refusals > 0,
            "{guess:?}: no crash state put the forgery where T5 goes"
        );
    }
}

/// The control: a forger who knew the salt would succeed, so the campaign above can fail.
#[test]
fn control_a_head_forged_with_the_true_salt_is_replayed() {
    let (t5_seq, t5_durable, _) = next_record_slot(&fresh());
    let forged = forge::record_descriptor(
        forge::Seed::Salt(SALT),
        t5_seq,
        t5_durable,
        &[VICTIM],
        &[&evil()],
    );
    let findings = crash_campaign(&fresh(), &forged, 0x5a17_0030);
    println!(
        "true-salt control: {} states, {} violations",
        findings.states,
        findings.violations.len()
    );
    assert!(
        !findings.violations.is_empty(),
        "a record forged with the image's salt was never replayed: the test cannot fail"
    );
    assert!(
        findings
            .violations
            .iter()
            .any(|v| v.contains(&format!("address {VICTIM}"))),
        "the violations do not name the victim: {:#?}",
        &findings.violations[..findings.violations.len().min(3)]
    );
}

/// An image that once held the record {VICTIM: evil}, since overwritten by {VICTIM: good} and
/// installed; returns it with the raw bytes of that old record's descriptor, still in the log.
fn earlier_life() -> (Scenario, Block) {
    let sim = Arc::new(SimDisk::from_image(&formatted(
        SIZE_BLOCKS,
        LOG_BLOCKS,
        SALT,
    )));
    let options = LogOptions {
        background_installer: false,
        ..LogOptions::default()
    };
    let log = Log::open(sim.clone(), options).expect("open");
    let good = forge::tagged("good", 0x60);
    for block in [evil(), good.clone()] {
        let mut tx = log.begin();
        tx.write(VICTIM, &block).expect("in range");
        tx.commit().expect("commit");
    }
    let scan = scan_log(&*sim, false).expect("scan");
    let old = &scan.records[0];
    assert_eq!(old.addrs, vec![VICTIM]);
    let descriptor = sim
        .read(scan.superblock.log_addr(old.pos))
        .expect("read the old record");
    log.install().expect("install");
    drop(log);
    let initial = Contents::from([(VICTIM, good)]);
    let base = sim.durable_image();
    assert!(
        base.block(scan.superblock.log_addr(old.pos)) == Some(&descriptor),
        "the old record is no longer in the log region"
    );
    (Scenario { base, initial }, descriptor)
}

/// A raw copy of this image's own log (a device backup stored through the log) carries the right
/// salt; its records are refused by their sequence number, which is never expected again.
#[test]
fn a_copy_of_this_images_own_old_record_is_not_replayed() {
    let (scenario, copied) = earlier_life();
    let seed = 0x5a17_0040;
    let findings = crash_campaign(&scenario, &copied, seed);
    println!(
        "own old record: {} states, {} refused by their sequence number at T5's place",
        findings.states, findings.sequence_refusals
    );
    assert!(
        findings.violations.is_empty(),
        "seed {seed:#x}: {:#?}",
        findings.violations
    );
    assert!(
        findings.sequence_refusals > 0,
        "no crash state put the copied record where T5 goes"
    );
}
