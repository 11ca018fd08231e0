//! The NBD wire protocol: the one copy lives in `txdisk-nbd-disk` (a layer crate, so that the
//! client disk can use it without depending on this tool); the server speaks it from there.

pub use txdisk_nbd_disk::proto::*;
