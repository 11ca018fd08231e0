//! Measures an NBD server's round trip as `NbdDisk` sees it: the median and 99th percentile of
//! one-block READs, of one-block WRITE+FLUSH pairs, and the time of a pipelined 16-block run.
//!
//! `cargo run --release -p txdisk-nbd-disk --example nbd_rtt -- nbd+unix:///x?socket=/tmp/s [count] [connections]`
//!
//! It writes to the export's last 16 blocks: give it a scratch export.

use std::time::{Duration, Instant};

use txdisk_disk::{Block, Disk};
use txdisk_nbd_disk::{NbdDisk, NbdOptions};

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p) as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let uri = args
        .next()
        .ok_or("usage: nbd_rtt URI [count] [connections]")?;
    let count: usize = args.next().map_or(Ok(2000), |c| c.parse())?;
    let mut options = NbdOptions::default();
    if let Some(connections) = args.next() {
        options.connections = connections.parse()?;
    }
    let disk = NbdDisk::open_uri(&uri, &options)?;
    let base = disk
        .size_blocks()
        .checked_sub(16)
        .ok_or("the export has fewer than 16 blocks")?;
    let block = Block::filled(0x5a);
    let mut reads = Vec::with_capacity(count);
    let mut writes = Vec::with_capacity(count);
    let mut runs = Vec::with_capacity(count);
    let run: Vec<&Block> = vec![&block; 16];
    for i in 0..count {
        let t = Instant::now();
        disk.read(base + (i % 16) as u64)?;
        reads.push(t.elapsed());
        let t = Instant::now();
        disk.write(base + (i % 16) as u64, &block)?;
        disk.sync()?;
        writes.push(t.elapsed());
        let t = Instant::now();
        disk.write_run(base, &run)?;
        runs.push(t.elapsed());
    }
    println!(
        "{uri}: {} connection(s), structured replies: {}",
        disk.connections(),
        disk.export_info().structured_replies
    );
    for (what, samples) in [
        ("READ 1 block", &mut reads),
        ("WRITE 1 block + FLUSH", &mut writes),
        ("WRITE run of 16 blocks (pipelined)", &mut runs),
    ] {
        println!(
            "{what:>36}: median {:>7.1} us, p99 {:>7.1} us ({count} samples)",
            percentile(samples, 0.5).as_secs_f64() * 1e6,
            percentile(samples, 0.99).as_secs_f64() * 1e6
        );
    }
    Ok(())
}
