//! POSIX error values for the cases the model test does not reach (no space, no inodes, name
//! too long, file too large, hard links, moving a directory into itself), the retry path for
//! store conflicts, and refusal of a store whose transactions are too small.

use std::sync::Arc;
use txdisk_fs::format::NAME_MAX;
use txdisk_fs::{check_invariants, errno, Fs, FsError, MemStore, MkfsOptions, ROOT_INO};

fn small_fs(blocks: u64, inodes: u64) -> Fs<Arc<MemStore>> {
    let store = Arc::new(MemStore::new(blocks, 64));
    Fs::mkfs(
        store,
        &MkfsOptions {
            inode_count: Some(inodes),
            ..MkfsOptions::default()
        },
    )
    .expect("mkfs")
}

#[test]
fn running_out_of_blocks_is_no_space_and_leaves_a_consistent_fs() {
    let fs = small_fs(128, 64);
    let ino = fs.create(ROOT_INO, "fill").expect("create");
    let data_blocks = fs.superblock().data_blocks;
    let error = fs
        .write(ino, 0, &vec![5u8; (data_blocks as usize + 1) * 4096])
        .expect_err("more than the disk holds");
    assert!(matches!(error, FsError::NoSpace { .. }), "{error}");
    assert_eq!(error.errno(), errno::ENOSPC);
    check_invariants(fs.store()).expect("consistent after ENOSPC");
    // The chunks that fit were written; the file reads back as the bytes that made it.
    let size = fs.stat(ino).expect("stat").size_bytes;
    assert!(size > 0);
    assert!(fs
        .read(ino, 0, size as usize)
        .expect("read")
        .iter()
        .all(|&b| b == 5));
    fs.truncate(ino, 0).expect("truncate frees the space");
    let report = check_invariants(fs.store()).expect("consistent");
    assert_eq!(
        report.blocks_used, 1,
        "only the root directory's block is left"
    );
}

#[test]
fn running_out_of_inodes_is_no_space() {
    let fs = small_fs(256, 32);
    // Inodes 0 (reserved) and 1 (root) are taken.
    for i in 0..30 {
        fs.create(ROOT_INO, format!("f{i}")).expect("create");
    }
    let error = fs.create(ROOT_INO, "one-more").expect_err("no inode left");
    assert!(matches!(error, FsError::NoSpace { .. }), "{error}");
    check_invariants(fs.store()).expect("consistent");
}

#[test]
fn names_are_checked() {
    let fs = small_fs(256, 64);
    let long = "x".repeat(NAME_MAX + 1);
    let error = fs.create(ROOT_INO, &long).expect_err("too long");
    assert!(
        matches!(error, FsError::NameTooLong { len, max } if len == NAME_MAX + 1 && max == NAME_MAX)
    );
    assert_eq!(error.errno(), errno::ENAMETOOLONG);
    fs.create(ROOT_INO, "x".repeat(NAME_MAX))
        .expect("the longest name fits");
    for bad in ["", ".", "..", "a/b", "a\0b"] {
        let error = fs.mkdir(ROOT_INO, bad).expect_err("invalid name");
        assert_eq!(error.errno(), errno::EINVAL, "{bad:?}: {error}");
    }
    assert!(matches!(fs.lookup(ROOT_INO, "a/b"), Err(FsError::NotFound)));
    assert!(matches!(fs.rmdir(ROOT_INO, ".."), Err(FsError::NotEmpty)));
}

#[test]
fn file_size_is_bounded() {
    let fs = small_fs(256, 64);
    let ino = fs.create(ROOT_INO, "f").expect("create");
    let max = txdisk_fs::format::MAX_FILE_BYTES;
    assert!(max >= 1 << 30);
    let error = fs.write(ino, max, b"x").expect_err("past the largest file");
    assert_eq!(error.errno(), errno::EFBIG);
    assert!(matches!(
        fs.truncate(ino, max + 1),
        Err(FsError::FileTooLarge { .. })
    ));
    // A sparse file of the largest size costs no blocks until written.
    fs.truncate(ino, max).expect("truncate to the largest size");
    fs.write(ino, max - 3, b"end")
        .expect("write the last bytes");
    assert_eq!(fs.read(ino, max - 5, 10).expect("read"), b"\0\0end");
    let stat = fs.stat(ino).expect("stat");
    assert_eq!(
        stat.blocks, 3,
        "data block, its double-indirect child and root"
    );
    check_invariants(fs.store()).expect("consistent");
}

#[test]
fn hard_links_count_and_free_with_the_last_name() {
    let fs = small_fs(256, 64);
    let dir = fs.mkdir(ROOT_INO, "d").expect("mkdir");
    let ino = fs.create(ROOT_INO, "f").expect("create");
    fs.write(ino, 0, b"shared").expect("write");
    fs.link(ino, dir, "g").expect("link");
    assert_eq!(fs.stat(ino).expect("stat").nlink, 2);
    assert!(matches!(
        fs.link(dir, ROOT_INO, "dd"),
        Err(FsError::IsADirectory)
    ));
    check_invariants(fs.store()).expect("consistent with two names");
    fs.unlink(ROOT_INO, "f").expect("unlink one name");
    assert_eq!(
        fs.read(fs.lookup(dir, "g").expect("lookup"), 0, 6)
            .expect("read"),
        b"shared"
    );
    fs.rename(dir, "g", ROOT_INO, "h")
        .expect("rename the remaining name");
    fs.unlink(ROOT_INO, "h").expect("unlink the last name");
    let report = check_invariants(fs.store()).expect("consistent");
    assert_eq!(report.files, 0);
}

#[test]
fn a_directory_cannot_move_into_itself() {
    let fs = small_fs(256, 64);
    let a = fs.mkdir(ROOT_INO, "a").expect("mkdir");
    let b = fs.mkdir(a, "b").expect("mkdir");
    let error = fs
        .rename(ROOT_INO, "a", b, "a")
        .expect_err("into its own subtree");
    assert_eq!(error.errno(), errno::EINVAL);
    let error = fs.rename(ROOT_INO, "a", a, "x").expect_err("into itself");
    assert_eq!(error.errno(), errno::EINVAL);
    fs.rename(a, "b", ROOT_INO, "b")
        .expect("moving out is fine");
    assert_eq!(fs.stat(ROOT_INO).expect("stat").nlink, 4);
    assert_eq!(fs.stat(a).expect("stat").nlink, 2);
    check_invariants(fs.store()).expect("consistent");
}

#[test]
fn store_conflicts_are_retried_then_reported_as_busy() {
    let fs = small_fs(256, 64);
    fs.store().force_conflicts(5);
    fs.create(ROOT_INO, "after-five-conflicts")
        .expect("retried to success");
    fs.store().force_conflicts(txdisk_fs::MAX_ATTEMPTS);
    let error = fs
        .create(ROOT_INO, "never")
        .expect_err("conflicts every time");
    assert!(matches!(error, FsError::Busy { .. }), "{error}");
    assert_eq!(fs.readdir(ROOT_INO).expect("readdir").len(), 1);
    check_invariants(fs.store()).expect("consistent");
}

#[test]
fn a_store_with_tiny_transactions_is_refused() {
    let store = MemStore::new(1024, 8);
    let error = Fs::mkfs(store, &MkfsOptions::default())
        .err()
        .expect("refused");
    assert!(
        matches!(error, FsError::TxTooSmall { max_blocks: 8, .. }),
        "{error}"
    );
}

#[test]
fn each_write_chunk_fits_the_store_limit() {
    // A write across the double-indirect boundary with the smallest accepted limit: every
    // chunk must commit (the MemStore refuses a transaction over its limit).
    for max_tx_blocks in [17, 18, 24, 40, 600] {
        let store = Arc::new(MemStore::new(2048, max_tx_blocks));
        let fs = match Fs::mkfs(
            Arc::clone(&store),
            &MkfsOptions {
                inode_count: Some(64),
                ..MkfsOptions::default()
            },
        ) {
            Ok(fs) => fs,
            Err(FsError::TxTooSmall { .. }) => continue,
            Err(error) => panic!("mkfs with limit {max_tx_blocks}: {error}"),
        };
        let ino = fs.create(ROOT_INO, "f").expect("create");
        let data: Vec<u8> = (0..600 * 4096).map(|i| (i % 251) as u8).collect();
        fs.write(ino, 500 * 4096 + 17, &data)
            .unwrap_or_else(|e| panic!("limit {max_tx_blocks}: {e}"));
        assert!(fs.read(ino, 500 * 4096 + 17, data.len()).expect("read") == data);
        fs.unlink(ROOT_INO, "f").expect("unlink");
        check_invariants(&store).expect("consistent");
    }
}

#[test]
fn an_inode_number_naming_no_inode_is_not_found() {
    let fs = small_fs(256, 64);
    let ino = fs.create(ROOT_INO, "f").expect("create");
    fs.unlink(ROOT_INO, "f").expect("unlink");
    for stale in [0, ino, 63, 64, u64::MAX] {
        assert!(
            matches!(fs.stat(stale), Err(FsError::NotFound)),
            "stat {stale}"
        );
        assert!(
            matches!(fs.read(stale, 0, 1), Err(FsError::NotFound)),
            "read {stale}"
        );
        assert!(
            matches!(fs.write(stale, 0, b"x"), Err(FsError::NotFound)),
            "write {stale}"
        );
        assert!(
            matches!(fs.readdir(stale), Err(FsError::NotFound)),
            "readdir {stale}"
        );
        assert!(
            matches!(fs.create(stale, "x"), Err(FsError::NotFound)),
            "create in {stale}"
        );
    }
    check_invariants(fs.store()).expect("consistent");
}
