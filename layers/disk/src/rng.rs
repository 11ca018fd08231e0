//! A small deterministic random number generator (SplitMix64), so that every simulated run is
//! reproducible from one `u64` seed on every platform and in every version of this crate.
//!
//! Not test support: it is part of the simulated disk's interface
//! ([`SimDisk::random_crash_state`](crate::SimDisk::random_crash_state) draws from it), the
//! crash-point fuzzer, the benchmarks and the demo ship with it, and the replicated layer draws
//! a pair's identifier from it. Forty lines with no dependency, so it stays in the release
//! library rather than behind a feature.

/// SplitMix64 (Steele, Lea and Flood): one `u64` of state, every output a mix of it.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next value of the stream, uniform over `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound`; `bound` must be positive.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "rng: below(0)");
        // Lemire's multiply-shift; the tiny bias is irrelevant for test scheduling.
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }

    /// Fills `bytes` from the stream, eight bytes per draw (little-endian).
    pub fn fill_bytes(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    /// A new generator whose stream is independent of this one's continuation.
    pub fn fork(&mut self) -> SplitMix64 {
        SplitMix64::new(self.next_u64() ^ 0x5851_f42d_4c95_7f2d)
    }
}

/// A fresh value for identities and salts of new images (a log's salt, a pair's id, a
/// checksum salt): not secret, and never the same twice in practice. From the standard
/// library's per-process random hasher keys, the time and the process id; not reproducible,
/// so never for simulated runs.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}
