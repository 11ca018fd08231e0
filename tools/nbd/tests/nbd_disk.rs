//! The client disk of `txdisk-nbd-disk` against this crate's server (both speaking the one
//! shared protocol module): blocks round-trip through a pipelined run and a FLUSH, the
//! server's simple replies are what the client negotiates (it offers no structured replies),
//! and a stopped server fails the disk rather than leaving it waiting.

mod common;

use std::sync::Arc;

use common::InProcess;
use txdisk::disk::{Block, Disk, DiskError};
use txdisk::nbd::{NbdDisk, NbdOptions};
use txdisk_nbd::{ExportBackend, MemBackend};

#[test]
fn the_client_disk_round_trips_through_this_server() {
    let server = InProcess::start(Arc::new(MemBackend::new(256 * 4096)));
    let uri = format!("nbd://{}/disk", server.addr);
    let disk = NbdDisk::open_uri(&uri, &NbdOptions::default()).unwrap();
    assert_eq!(disk.size_blocks(), 256);
    assert!(!disk.export_info().structured_replies);
    let blocks: Vec<Block> = (0..40u8).map(Block::filled).collect();
    let refs: Vec<&Block> = blocks.iter().collect();
    disk.write_run(100, &refs).unwrap();
    disk.sync().unwrap();
    for (i, b) in blocks.iter().enumerate() {
        assert_eq!(&disk.read(100 + i as u64).unwrap(), b);
    }
    let mut raw = vec![0u8; 4096];
    server.backend.read_at(105 * 4096, &mut raw).unwrap();
    assert_eq!(raw, vec![5u8; 4096]);
    drop(disk);
    server.stop();
}

#[test]
fn a_server_that_stops_fails_the_disk() {
    let server = InProcess::start(Arc::new(MemBackend::new(16 * 4096)));
    let uri = format!("nbd://{}/disk", server.addr);
    let options = NbdOptions {
        timeout_ms: 500,
        ..NbdOptions::default()
    };
    let disk = NbdDisk::open_uri(&uri, &options).unwrap();
    disk.write(1, &Block::filled(1)).unwrap();
    server.stop();
    assert!(matches!(disk.read(1), Err(DiskError::Failed)));
    assert!(disk.failure().is_some());
}
