//! Which of two copies of a block is newer, when both verify but differ.
//!
//! A member that keeps checksums (`IntegrityDisk`) counts the writes of every block in its tag
//! (its *generation*, 31 bits that wrap), and answers it through
//! [`Disk::generation`](txdisk_disk::Disk::generation). Both members see the same writes, so of
//! two copies that differ the one with the higher count saw more of them: a member that lost a
//! write together with its tag (the one loss its own checksums cannot see) holds the older,
//! consistent copy, and the other member's count shows it. The inspector, the resync and the
//! scrub all decide with [`newer_copy`], so that what `fsck` says is right is what the repair
//! keeps.

use crate::meta::Role;

/// Half the generation space: a count that is ahead of another by less than this is newer
/// (serial-number arithmetic, as TCP compares sequence numbers), so a wrap does not invert the
/// order.
const HALF_SPACE: u32 = 1 << 30;
/// Generations are counted modulo 2³¹ (the tag's top bit is a flag).
const GENERATION_MASK: u32 = (1 << 31) - 1;

/// The member whose copy is newer by its write generation (`None` from a disk that keeps
/// none, or for a block it never wrote): a written copy beats one never written; two equal
/// counts, or none at all, decide nothing (`None`), and the caller keeps its own preference.
pub fn newer_copy(d1: Option<u32>, d2: Option<u32>) -> Option<Role> {
    match (d1, d2) {
        (Some(_), None) => Some(Role::D1),
        (None, Some(_)) => Some(Role::D2),
        (None, None) => None,
        (Some(a), Some(b)) if a == b => None,
        (Some(a), Some(b)) => {
            let ahead = a.wrapping_sub(b) & GENERATION_MASK;
            if ahead < HALF_SPACE {
                Some(Role::D1)
            } else {
                Some(Role::D2)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_higher_count_is_newer_across_a_wrap() {
        assert_eq!(newer_copy(Some(8), Some(7)), Some(Role::D1));
        assert_eq!(newer_copy(Some(7), Some(8)), Some(Role::D2));
        assert_eq!(newer_copy(Some(3), Some(3)), None);
        assert_eq!(newer_copy(None, None), None);
        assert_eq!(newer_copy(Some(1), None), Some(Role::D1));
        assert_eq!(newer_copy(None, Some(1)), Some(Role::D2));
        // Just past the wrap, 0 follows the largest count.
        assert_eq!(newer_copy(Some(0), Some(GENERATION_MASK)), Some(Role::D1));
        assert_eq!(newer_copy(Some(GENERATION_MASK), Some(2)), Some(Role::D2));
    }
}
