//! Checks the latency histogram's percentiles against exact nearest-rank percentiles of the same
//! samples (seeded random sets of several shapes): within the stated 1/64 relative error.

use txdisk_bench::LatencyHistogram;
use txdisk_disk::rng::SplitMix64;

fn exact_percentile(sorted: &[u64], quantile: f64) -> u64 {
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

fn check_against_exact(samples: &[u64], seed: u64) {
    let mut histogram = LatencyHistogram::new();
    for &sample in samples {
        histogram.record_ns(sample);
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    for quantile in [0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
        let exact = exact_percentile(&sorted, quantile);
        let reported = histogram
            .percentile_ns(quantile)
            .expect("non-empty histogram");
        let error = reported.abs_diff(exact) as f64;
        assert!(
            error <= exact as f64 / 64.0,
            "seed {seed}: p{quantile} reported {reported} ns, exact {exact} ns"
        );
    }
    assert_eq!(histogram.count(), samples.len() as u64, "seed {seed}");
}

#[test]
fn percentiles_match_exact_ones_within_bucket_precision() {
    for seed in 0..20u64 {
        let mut rng = SplitMix64::new(seed);
        let count = 1 + rng.below(5000) as usize;
        // Log-uniform from 1 ns to about 17 s: every bucket group is exercised.
        let samples: Vec<u64> = (0..count)
            .map(|_| {
                let bits = rng.below(35);
                (1u64 << bits) + rng.below(1u64 << bits)
            })
            .collect();
        check_against_exact(&samples, seed);
    }
}

#[test]
fn small_values_are_exact() {
    let samples: Vec<u64> = (0..64).collect();
    let mut histogram = LatencyHistogram::new();
    for &sample in &samples {
        histogram.record_ns(sample);
    }
    assert_eq!(histogram.percentile_ns(0.5), Some(31));
    assert_eq!(histogram.percentile_ns(1.0), Some(63));
    assert_eq!(histogram.percentile_ns(0.0), Some(0), "rank is at least 1");
}

#[test]
fn a_slow_tail_shows_in_p99_and_not_in_p50() {
    let mut histogram = LatencyHistogram::new();
    for _ in 0..990 {
        histogram.record_ns(10_000);
    }
    for _ in 0..10 {
        histogram.record_ns(5_000_000);
    }
    let p50 = histogram.percentile_us(0.5);
    let p99 = histogram.percentile_us(0.99);
    let p999 = histogram.percentile_us(0.999);
    assert!((p50 - 10.0).abs() <= 10.0 / 64.0, "p50 {p50} µs");
    assert!(
        (p99 - 10.0).abs() <= 10.0 / 64.0,
        "p99 {p99} µs: 990 of 1000 are fast"
    );
    assert!((p999 - 5000.0).abs() <= 5000.0 / 64.0, "p99.9 {p999} µs");
}

#[test]
fn merging_equals_recording_everything_in_one() {
    let mut rng = SplitMix64::new(42);
    let (mut left, mut right, mut all) = (
        LatencyHistogram::new(),
        LatencyHistogram::new(),
        LatencyHistogram::new(),
    );
    for i in 0..10_000 {
        let value = rng.below(1 << 30);
        all.record_ns(value);
        if i % 3 == 0 {
            left.record_ns(value);
        } else {
            right.record_ns(value);
        }
    }
    left.merge(&right);
    assert_eq!(left, all);
}

#[test]
fn an_empty_histogram_has_no_percentile() {
    let histogram = LatencyHistogram::new();
    assert_eq!(histogram.percentile_ns(0.5), None);
    assert_eq!(histogram.percentile_us(0.99), 0.0);
}
