//! A latency histogram of fixed size: log-linear buckets, so recording millions of reads costs
//! no memory that would show up in the peak RSS being measured.
//!
//! Values below 2^SUB_BITS ns are exact; above, every power of two is split into 2^SUB_BITS
//! equal buckets, so a percentile is reported within 1/2^SUB_BITS (1.6 %) of the true sample.

const SUB_BITS: u32 = 6;
const SUB_COUNT: usize = 1 << SUB_BITS;
/// Bucket groups: one exact group for values below `SUB_COUNT`, then one per leading-bit
/// position from `SUB_BITS` to 63.
const GROUPS: usize = 64 - SUB_BITS as usize + 1;
const BUCKETS: usize = GROUPS * SUB_COUNT;

/// Where a row's latency CDF is sampled: every 5 % of the body, then ever finer into the tail,
/// where durable stores differ most. 0 is the fastest sample and 1 the slowest.
pub const CDF_QUANTILES: [f64; 31] = [
    0.0, 0.01, 0.02, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65,
    0.70, 0.75, 0.80, 0.85, 0.90, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999, 1.0,
];

/// Counts of latencies in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
    min_ns: u64,
    max_ns: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS],
            total: 0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }

    /// Records one latency in nanoseconds.
    pub fn record_ns(&mut self, value_ns: u64) {
        self.counts[bucket_of(value_ns)] += 1;
        self.total += 1;
        self.min_ns = self.min_ns.min(value_ns);
        self.max_ns = self.max_ns.max(value_ns);
    }

    /// Records one latency.
    pub fn record(&mut self, latency: std::time::Duration) {
        self.record_ns(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds every latency `other` recorded (a worker thread's histogram, say).
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The nearest-rank percentile `quantile` (0 < quantile ≤ 1) in nanoseconds: the middle of
    /// the bucket holding the sample of rank ⌈quantile·count⌉, clamped to the recorded range.
    /// None when nothing was recorded.
    pub fn percentile_ns(&self, quantile: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, high) = bucket_range(index);
                let middle = low + (high - low) / 2;
                return Some(middle.clamp(self.min_ns, self.max_ns));
            }
        }
        unreachable!(
            "bench histogram: counts sum to fewer than total {} (rank {rank})",
            self.total
        )
    }

    /// The distribution as (quantile, latency µs) points at `quantiles` (ascending): the
    /// latency below which that fraction of operations completed, from the same buckets as the
    /// percentiles. Empty when nothing was recorded.
    pub fn cdf_us(&self, quantiles: &[f64]) -> Vec<(f64, f64)> {
        if self.total == 0 {
            return Vec::new();
        }
        quantiles
            .iter()
            .map(|&q| (q, self.percentile_us(q)))
            .collect()
    }

    /// `percentile_ns` in microseconds, 0 when empty.
    pub fn percentile_us(&self, quantile: f64) -> f64 {
        self.percentile_ns(quantile).unwrap_or(0) as f64 / 1000.0
    }
}

/// The bucket of `value_ns`.
pub(crate) fn bucket_of(value_ns: u64) -> usize {
    if value_ns < SUB_COUNT as u64 {
        return value_ns as usize;
    }
    let leading_bit = 63 - value_ns.leading_zeros();
    let shift = leading_bit - SUB_BITS;
    // The top SUB_BITS+1 bits, in SUB_COUNT..2*SUB_COUNT.
    let mantissa = (value_ns >> shift) as usize;
    ((shift as usize + 1) << SUB_BITS) + (mantissa - SUB_COUNT)
}

/// The smallest and largest value in bucket `index`.
pub(crate) fn bucket_range(index: usize) -> (u64, u64) {
    let group = index >> SUB_BITS;
    let offset = (index & (SUB_COUNT - 1)) as u64;
    if group == 0 {
        return (offset, offset);
    }
    let width = 1u64 << (group - 1);
    let low = (SUB_COUNT as u64 + offset) << (group - 1);
    (low, low + (width - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use txdisk_disk::rng::SplitMix64;

    #[test]
    fn every_value_falls_in_its_buckets_range() {
        let mut rng = SplitMix64::new(7);
        let mut values: Vec<u64> = (0..2000).collect();
        values.extend((0..64).map(|bit| 1u64 << bit));
        values.extend((1..64).map(|bit| (1u64 << bit) - 1));
        values.extend((0..10_000).map(|_| rng.next_u64() >> rng.below(64)));
        values.push(u64::MAX);
        for value in values {
            let index = bucket_of(value);
            assert!(index < BUCKETS, "value {value} -> bucket {index}");
            let (low, high) = bucket_range(index);
            assert!(
                low <= value,
                "value {value} below bucket {index} [{low}, {high}]"
            );
            assert!(
                value <= high,
                "value {value} above bucket {index} [{low}, {high}]"
            );
        }
    }

    #[test]
    fn buckets_tile_the_line_without_gaps() {
        for index in 1..BUCKETS {
            let (_, previous_high) = bucket_range(index - 1);
            let (low, _) = bucket_range(index);
            assert_eq!(low, previous_high + 1, "gap before bucket {index}");
        }
        assert_eq!(bucket_range(BUCKETS - 1).1, u64::MAX);
    }
}
