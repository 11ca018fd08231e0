//! The rule that picks the member a pair is served from, and what becomes of the other one.
//!
//! One owner: `open` assembles the pair with it, and the inspector (`txdisk fsck`) reports with
//! it what `open` would do. Each member says how far it got (`events`), the newest event it
//! knows its peer holds (`peer_events`), and whether it went on without its peer
//! (`peer_failed`). A member **ran alone past** the other when it went on without it to an event
//! the other never saw it at (`peer_failed && events > other.peer_events`): it holds writes the
//! other lacks.
//!
//! * Both ran alone past each other: a split brain (as DRBD calls it), refused, never merged.
//! * One did: it is the source, and the other is stale — rebuilt from it, never served.
//! * Neither: the member with the most events is the source (d1 on a tie), as md takes it;
//!   the other is stale if it has fewer events than the source's `peer_events` (the source
//!   knew it at a newer event: an older copy of it, put back), else in sync — equal, or behind
//!   only in metadata (a crash between the two members' writes of one update), and resynced.
//!
//! A member that advanced its events alone *without* going degraded (the first member written
//! by a Dirty or Clean mark, cut short by a crash) did not write data its peer lacks, so more
//! events alone never outranks a member that ran alone.

use crate::error::{ReplicatedError, Result};
use crate::meta::{MetaState, ReplicaMeta, Role};

/// What one member slot of a pair holds, as the source choice sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Valid pair metadata (of this pair: the caller has checked pair id and role).
    Meta(ReplicaMeta),
    /// A blank disk: a replacement to rebuild.
    Blank,
    /// No disk, or one that failed while its metadata was read.
    Absent,
}

/// What happens to the member that is not the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberPlan {
    /// Both current: nothing to copy if both were closed clean, else a resync.
    InSync {
        /// Both members' metadata says Clean.
        clean: bool,
    },
    /// Stale, half-rebuilt or blank: rebuilt whole from the source.
    Rebuild {
        /// Why the member cannot be resynced.
        why: String,
    },
    /// Absent: the pair runs on the source alone.
    Degraded,
}

/// The current member among `metas` (`[d1, d2]`, of one pair): never a half-rebuilt member; the
/// most events; d1 on a tie. Refuses a split brain and a pair with no current member.
pub fn choose_source(metas: [Option<ReplicaMeta>; 2]) -> Result<ReplicaMeta> {
    let candidates: Vec<ReplicaMeta> = metas
        .iter()
        .flatten()
        .filter(|meta| meta.state != MetaState::Rebuilding)
        .copied()
        .collect();
    let [first, second] = match candidates.as_slice() {
        [] => {
            return Err(ReplicatedError::NoCurrentReplica {
                reason: "every member left is an unfinished rebuild".into(),
            })
        }
        [only] => return Ok(*only),
        [first, second] => [*first, *second],
        _ => unreachable!("replicated: a pair has two members"),
    };
    match (
        ran_alone_past(&first, &second),
        ran_alone_past(&second, &first),
    ) {
        (true, true) => {
            let (d1, d2) = match first.role {
                Role::D1 => (first, second),
                Role::D2 => (second, first),
            };
            Err(ReplicatedError::SplitBrain {
                d1_events: d1.events,
                d1_alone_since: d1.peer_events,
                d2_events: d2.events,
                d2_alone_since: d2.peer_events,
            })
        }
        (true, false) => Ok(first),
        (false, true) => Ok(second),
        // `candidates` is in role order, so d1 wins a tie.
        (false, false) if second.events > first.events => Ok(second),
        (false, false) => Ok(first),
    }
}

/// `member` went on without its peer to an event `other` never saw it at: it holds writes
/// `other` lacks.
fn ran_alone_past(member: &ReplicaMeta, other: &ReplicaMeta) -> bool {
    member.peer_failed && member.events > other.peer_events
}

/// What `open` does with `other`, given the chosen `source`.
pub fn plan_other(source: &ReplicaMeta, other: &Peer) -> MemberPlan {
    match other {
        Peer::Meta(meta) if meta.state == MetaState::Rebuilding => MemberPlan::Rebuild {
            why: "its last rebuild did not finish".into(),
        },
        // The source ran on alone after this member last saw it: it missed writes.
        Peer::Meta(meta) if ran_alone_past(source, meta) => MemberPlan::Rebuild {
            why: format!(
                "stale: it last saw the current replica at event {}, which ran on alone to {}",
                meta.peer_events, source.events
            ),
        },
        // The source knew this member at a newer event: this is an older copy of it.
        Peer::Meta(meta) if meta.events < source.peer_events => MemberPlan::Rebuild {
            why: format!(
                "stale: {} events, the current replica knew it at {}",
                meta.events, source.peer_events
            ),
        },
        // Equal, or behind in metadata only (no data written since the source knew it).
        Peer::Meta(meta) => MemberPlan::InSync {
            clean: meta.state == MetaState::Clean
                && source.state == MetaState::Clean
                && meta.events == source.events,
        },
        Peer::Blank => MemberPlan::Rebuild {
            why: "a blank replacement".into(),
        },
        Peer::Absent => MemberPlan::Degraded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(role: Role, events: u64, peer_events: u64, state: MetaState) -> ReplicaMeta {
        ReplicaMeta {
            pair_id: 7,
            role,
            state,
            peer_failed: peer_events < events,
            seq: 3,
            events,
            data_size_blocks: 10,
            peer_events,
            chunk_blocks: 1,
        }
    }

    #[test]
    fn most_events_wins_and_d1_wins_a_tie() {
        let d1 = member(Role::D1, 5, 5, MetaState::Clean);
        let d2 = member(Role::D2, 5, 5, MetaState::Clean);
        assert_eq!(choose_source([Some(d1), Some(d2)]).unwrap().role, Role::D1);
        let newer = member(Role::D2, 6, 6, MetaState::Dirty);
        assert_eq!(
            choose_source([Some(d1), Some(newer)]).unwrap().role,
            Role::D2
        );
        assert!(matches!(
            plan_other(&newer, &Peer::Meta(d1)),
            MemberPlan::Rebuild { .. }
        ));
    }

    #[test]
    fn a_rebuilding_member_is_never_the_source() {
        let d1 = member(Role::D1, 0, 0, MetaState::Rebuilding);
        let d2 = member(Role::D2, 3, 3, MetaState::Clean);
        assert_eq!(choose_source([Some(d1), Some(d2)]).unwrap().role, Role::D2);
        assert!(matches!(
            choose_source([Some(d1), None]),
            Err(ReplicatedError::NoCurrentReplica { .. })
        ));
    }

    #[test]
    fn a_member_that_fell_behind_is_stale_not_a_split_brain() {
        // d2 failed at 4; d1 ran on alone (bumped to 5, then 6, 7).
        let d1 = member(Role::D1, 7, 4, MetaState::Clean);
        // d2 had itself run alone once before (peer_events 2) and was rebuilt since.
        let d2 = ReplicaMeta {
            peer_failed: true,
            ..member(Role::D2, 4, 2, MetaState::Dirty)
        };
        let source = choose_source([Some(d1), Some(d2)]).unwrap();
        assert_eq!(source.role, Role::D1);
        assert!(matches!(
            plan_other(&source, &Peer::Meta(d2)),
            MemberPlan::Rebuild { .. }
        ));
    }

    #[test]
    fn a_member_behind_within_one_metadata_update_is_resynced_not_rebuilt() {
        // d1 wrote the new event; a crash came before d2 got it (no data written since).
        let d1 = ReplicaMeta {
            peer_failed: false,
            ..member(Role::D1, 6, 5, MetaState::Dirty)
        };
        let d2 = member(Role::D2, 5, 5, MetaState::Clean);
        let source = choose_source([Some(d1), Some(d2)]).unwrap();
        assert_eq!(source.role, Role::D1);
        assert_eq!(
            plan_other(&source, &Peer::Meta(d2)),
            MemberPlan::InSync { clean: false }
        );
        // Once d1 knew d2 at 6, a d2 at 5 is an older copy.
        let knew = member(Role::D1, 6, 6, MetaState::Dirty);
        assert!(matches!(
            plan_other(&knew, &Peer::Meta(d2)),
            MemberPlan::Rebuild { .. }
        ));
    }

    #[test]
    fn two_members_that_each_ran_alone_are_refused() {
        let d1 = member(Role::D1, 6, 4, MetaState::Clean);
        let d2 = member(Role::D2, 5, 4, MetaState::Clean);
        match choose_source([Some(d1), Some(d2)]) {
            Err(ReplicatedError::SplitBrain {
                d1_events: 6,
                d2_events: 5,
                ..
            }) => {}
            other => panic!("split brain not refused: {other:?}"),
        }
        // A rebuild that finished on one side only (the other still says alone) is not one.
        let rebuilt = member(Role::D2, 6, 6, MetaState::Dirty);
        let source = choose_source([Some(d1), Some(rebuilt)]).unwrap();
        assert_eq!(
            plan_other(&source, &Peer::Meta(rebuilt)),
            MemberPlan::InSync { clean: false }
        );
    }
}
