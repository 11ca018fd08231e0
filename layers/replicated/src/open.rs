//! Formatting a pair and opening one: reading both members' metadata, refusing what is not one
//! pair, choosing the current replica by its event counter, and bringing the other up to date.

#[cfg(doc)]
use crate::bitmap::MAX_CHUNK_BLOCKS;
use crate::bitmap::{BitmapLayout, DEFAULT_CHUNK_BLOCKS};
use crate::error::{ReplicatedError, Result};
use crate::member::MemberDisk;
use crate::meta::{
    read_meta, write_both_slots, Found, MetaState, ReplicaMeta, Role, RESERVED_BLOCKS,
};
use crate::pair::{Member, PairMeta, ReplicaStatus, ReplicatedDisk};
use crate::resync::Progress;
use crate::source::{choose_source, plan_other, MemberPlan, Peer};
use std::collections::BTreeSet;
use txdisk_disk::{Disk, DiskError};

/// How to format a pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FormatOptions {
    /// The pair's identity; `None` draws one from the clock and the process id. Tests pass one
    /// so that runs are reproducible.
    pub pair_id: Option<u64>,
    /// The caller knows both disks hold the same data (e.g. two freshly created, zeroed image
    /// files): the pair starts Clean and the first open copies nothing. Otherwise it starts
    /// Dirty, every bit of its bitmap set, and the first open makes d2 equal to d1.
    pub assume_equal: bool,
    /// Data blocks per bit of the write-intent bitmap (a power of two up to
    /// [`MAX_CHUNK_BLOCKS`]); `None` is [`DEFAULT_CHUNK_BLOCKS`].
    pub chunk_blocks: Option<u32>,
}

impl FormatOptions {
    /// The chunk size these options format with.
    pub fn chunk_blocks(&self) -> u32 {
        self.chunk_blocks.unwrap_or(DEFAULT_CHUNK_BLOCKS)
    }
}

/// Blocks each member needs for a pair of `data_blocks` formatted with chunks of
/// `chunk_blocks` (`None` for a chunk size `format` refuses).
pub fn member_blocks_for(data_blocks: u64, chunk_blocks: u32) -> Option<u64> {
    BitmapLayout::new(data_blocks, u64::from(chunk_blocks)).map(|layout| layout.member_blocks())
}

/// The data blocks a pair of members of `member_blocks` each holds with chunks of
/// `chunk_blocks` (`None` if it holds none, or the chunk size is not a power of two up to
/// [`MAX_CHUNK_BLOCKS`]). The inverse, blocks a member needs: [`BitmapLayout::member_blocks`].
pub fn data_blocks_for(member_blocks: u64, chunk_blocks: u32) -> Option<u64> {
    BitmapLayout::for_member(member_blocks, u64::from(chunk_blocks))
        .map(|layout| layout.data_blocks)
}

/// What `open` found on one member.
#[derive(Debug)]
enum Seen {
    Meta(ReplicaMeta),
    Blank,
    Dead(DiskError),
    Missing,
}

fn random_pair_id() -> u64 {
    txdisk_disk::rng::random_seed().max(1)
}

impl<D: Disk + 'static> ReplicatedDisk<D> {
    /// Writes fresh pair metadata and bitmap on both disks (which must be of equal size, with
    /// room for the metadata, one data block and the bitmap) and returns the pair id. The data
    /// blocks are not touched; the pair holds [`data_blocks_for`] of them.
    pub fn format(d1: &D, d2: &D, options: &FormatOptions) -> Result<u64> {
        let (d1_blocks, d2_blocks) = (d1.size_blocks(), d2.size_blocks());
        if d1_blocks != d2_blocks {
            return Err(ReplicatedError::SizeMismatch {
                d1_blocks,
                d2_blocks,
            });
        }
        let chunk_blocks = options.chunk_blocks();
        if BitmapLayout::new(1, u64::from(chunk_blocks)).is_none() {
            return Err(ReplicatedError::BadChunkSize { chunk_blocks });
        }
        let Some(layout) = BitmapLayout::for_member(d1_blocks, u64::from(chunk_blocks)) else {
            let needed_blocks = RESERVED_BLOCKS + 2;
            return Err(ReplicatedError::TooSmall {
                replica: Role::D1,
                size_blocks: d1_blocks,
                needed_blocks,
            });
        };
        let pair_id = options.pair_id.unwrap_or_else(random_pair_id);
        let state = if options.assume_equal {
            MetaState::Clean
        } else {
            MetaState::Dirty
        };
        for (role, disk) in [(Role::D1, d1), (Role::D2, d2)] {
            let meta = ReplicaMeta {
                pair_id,
                role,
                state,
                peer_failed: false,
                seq: 1,
                events: 1,
                data_size_blocks: layout.data_blocks,
                peer_events: 1,
                chunk_blocks,
            };
            // The bitmap first: the metadata that makes the disk a member comes last. Members
            // not known equal start with every chunk marked, so the first open copies all.
            let marked: BTreeSet<u64> = if options.assume_equal {
                BTreeSet::new()
            } else {
                (0..layout.chunks()).collect()
            };
            let member = MemberDisk::new(disk);
            for index in 0..layout.bitmap_blocks() {
                let block = layout.encode_block(pair_id, index, &marked);
                member.write(layout.member_block(index), &block)?;
            }
            // d1 complete and durable before d2 is touched: a crash in between leaves d1 a
            // pair member and d2 blank, which the next open rebuilds.
            write_both_slots(member, &meta)?;
        }
        Ok(pair_id)
    }

    /// Opens a pair: reads both members' metadata, refuses disks of different pairs or not of a
    /// pair, takes the replica with the higher event counter (d1 on a tie) as current, and:
    /// copies nothing if both were closed clean; resyncs d1 → d2 after a crash; rebuilds a
    /// stale or blank member from the current one; runs degraded if one member is dead.
    pub fn open(d1: D, d2: D, progress: &mut dyn FnMut(Progress)) -> Result<Self> {
        let seen = [observe(&d1, Role::D1)?, observe(&d2, Role::D2)?];
        ReplicatedDisk::open_seen(seen, [Some(d1), Some(d2)], progress)
    }

    /// Opens a pair from one member alone (the other is lost): it runs degraded, after its
    /// event counter is bumped so that the lost member, should it come back, is never again
    /// taken for current. Add a replacement with [`ReplicatedDisk::rebuild`].
    pub fn open_degraded(disk: D, progress: &mut dyn FnMut(Progress)) -> Result<Self> {
        let role = match observe(&disk, Role::D1)? {
            Seen::Meta(meta) => meta.role,
            Seen::Blank => return Err(ReplicatedError::NotFormatted),
            Seen::Dead(error) => {
                return Err(ReplicatedError::AllReplicasFailed {
                    d1: error.to_string(),
                    d2: "missing".into(),
                })
            }
            Seen::Missing => unreachable!("replicated: observe never answers Missing"),
        };
        let mut seen = [Seen::Missing, Seen::Missing];
        let mut disks = [None, None];
        seen[role.index()] = observe(&disk, role)?;
        disks[role.index()] = Some(disk);
        ReplicatedDisk::open_seen(seen, disks, progress)
    }

    fn open_seen(
        seen: [Seen; 2],
        disks: [Option<D>; 2],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Self> {
        let source_meta = validate(&seen, &disks)?;
        let source = source_meta.role;
        let target = source.other();
        let plan = plan_other(&source_meta, &seen[target.index()].as_peer());
        tracing::info!(pair_id = source_meta.pair_id, %source, ?plan, "opening replicated pair");
        // After a crash, only the chunks either member's bitmap marks can differ. Whatever the
        // plan, the pair starts with the marks on disk (the source's alone unless both are
        // current): every bitmap block it writes keeps them, so no member ever loses a mark
        // its peer may not hold.
        let pair = assemble(source_meta, &seen, &plan, disks);
        let read_from = match plan {
            MemberPlan::InSync { .. } => vec![Role::D1, Role::D2],
            _ => vec![source],
        };
        let marked = pair.load_bitmap(&read_from)?;
        match plan {
            MemberPlan::InSync { clean: true } => {}
            MemberPlan::InSync { clean: false } => {
                tracing::info!(
                    chunks = marked.len(),
                    "resyncing the chunks the bitmaps mark"
                );
                pair.resync_from(source, Some(&marked), progress)?;
                pair.rewrite_bitmap()?;
                pair.mark_clean()?;
            }
            MemberPlan::Rebuild { .. } => {
                match pair.rebuild_member(target, progress) {
                    Ok(_) => {}
                    Err(
                        error @ (ReplicatedError::Disk(DiskError::Crashed)
                        | ReplicatedError::AllReplicasFailed { .. }),
                    ) => return Err(error),
                    Err(error) => {
                        tracing::warn!(%error, "rebuild at open failed; running degraded")
                    }
                }
                pair.mark_clean()?;
            }
            // Running alone is recorded (a new event, `peer_failed`) by the first data write,
            // as its Dirty mark: until then this member holds nothing its peer lacks.
            MemberPlan::Degraded => {}
        }
        #[cfg(debug_assertions)]
        pair.check_rep();
        Ok(pair)
    }
}

impl Seen {
    fn as_peer(&self) -> Peer {
        match self {
            Seen::Meta(meta) => Peer::Meta(*meta),
            Seen::Blank => Peer::Blank,
            Seen::Dead(_) | Seen::Missing => Peer::Absent,
        }
    }
}

fn observe<D: Disk>(disk: &D, role: Role) -> Result<Seen> {
    Ok(match read_meta(MemberDisk::new(disk), role)? {
        Found::Meta(meta) => Seen::Meta(meta),
        Found::Blank => Seen::Blank,
        Found::Unusable(error) => return Err(error),
        Found::Dead(error) => Seen::Dead(error),
    })
}

/// Checks that the members form one pair and returns the metadata of the current one.
fn validate<D: Disk>(seen: &[Seen; 2], disks: &[Option<D>; 2]) -> Result<ReplicaMeta> {
    let metas: Vec<ReplicaMeta> = seen
        .iter()
        .filter_map(|s| {
            if let Seen::Meta(m) = s {
                Some(*m)
            } else {
                None
            }
        })
        .collect();
    for (index, item) in seen.iter().enumerate() {
        if let Seen::Meta(meta) = item {
            let replica = Role::from_index(index);
            if meta.role != replica {
                return Err(ReplicatedError::WrongRole {
                    replica,
                    found: meta.role,
                    pair_id: meta.pair_id,
                });
            }
        }
    }
    if let [m1, m2] = metas.as_slice() {
        if m1.chunk_blocks != m2.chunk_blocks {
            return Err(ReplicatedError::ChunkMismatch {
                d1_chunk_blocks: m1.chunk_blocks,
                d2_chunk_blocks: m2.chunk_blocks,
            });
        }
        if m1.pair_id != m2.pair_id {
            return Err(ReplicatedError::PairMismatch {
                d1_pair_id: m1.pair_id,
                d2_pair_id: m2.pair_id,
            });
        }
        if m1.data_size_blocks != m2.data_size_blocks {
            return Err(ReplicatedError::GeometryMismatch {
                d1_data_blocks: m1.data_size_blocks,
                d2_data_blocks: m2.data_size_blocks,
            });
        }
    }
    let Some(any) = metas.first() else {
        if seen.iter().any(|s| matches!(s, Seen::Blank)) {
            return Err(ReplicatedError::NotFormatted);
        }
        let why = |s: &Seen| match s {
            Seen::Dead(error) => error.to_string(),
            _ => "missing".to_string(),
        };
        return Err(ReplicatedError::AllReplicasFailed {
            d1: why(&seen[0]),
            d2: why(&seen[1]),
        });
    };
    let needed_blocks = any.bitmap_layout().member_blocks();
    for (index, disk) in disks.iter().enumerate() {
        let Some(disk) = disk else { continue };
        if disk.size_blocks() < needed_blocks {
            return Err(ReplicatedError::TooSmall {
                replica: Role::from_index(index),
                size_blocks: disk.size_blocks(),
                needed_blocks,
            });
        }
    }
    let mut by_role = [None, None];
    for meta in &metas {
        by_role[meta.role.index()] = Some(*meta);
    }
    choose_source(by_role)
}

fn assemble<D: Disk + 'static>(
    source: ReplicaMeta,
    seen: &[Seen; 2],
    plan: &MemberPlan,
    disks: [Option<D>; 2],
) -> ReplicatedDisk<D> {
    let target = source.role.other();
    let mut seq = [0u64; 2];
    let mut failure: [Option<String>; 2] = [None, None];
    for (index, item) in seen.iter().enumerate() {
        if let Seen::Meta(meta) = item {
            seq[index] = meta.seq;
        }
    }
    let target_status = match (plan, &seen[target.index()]) {
        (MemberPlan::InSync { .. }, _) => ReplicaStatus::Active,
        (MemberPlan::Rebuild { why }, _) => {
            failure[target.index()] = Some(why.clone());
            ReplicaStatus::Failed
        }
        (MemberPlan::Degraded, Seen::Dead(error)) => {
            failure[target.index()] = Some(error.to_string());
            ReplicaStatus::Failed
        }
        (MemberPlan::Degraded, _) => ReplicaStatus::Missing,
    };
    let on_disk = match plan {
        MemberPlan::InSync { clean: true } => MetaState::Clean,
        MemberPlan::InSync { clean: false } => MetaState::Dirty,
        _ => source.state,
    };
    // Both current: each holds at least the lower of their events. Otherwise the source keeps
    // what it last knew of a peer.
    let confirmed = match (plan, &seen[target.index()]) {
        (MemberPlan::InSync { .. }, Seen::Meta(other)) => other.events.min(source.events),
        _ => source.peer_events,
    };
    let mut statuses = [ReplicaStatus::Active; 2];
    statuses[target.index()] = target_status;
    let [d1, d2] = disks;
    let members = [Member::new(d1, statuses[0]), Member::new(d2, statuses[1])];
    let meta = PairMeta {
        events: source.events,
        confirmed,
        on_disk,
        seq,
        failure,
    };
    ReplicatedDisk::assemble(members, meta, source.pair_id, source.bitmap_layout())
}
