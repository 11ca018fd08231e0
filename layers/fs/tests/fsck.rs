//! The invariant checker: a clean file system passes with the right counts, and each kind of
//! hand-made corruption (one test per `Violation` variant) is reported naming the inode or
//! block at fault. Corruptions are written with raw store transactions using the format module.

use std::sync::Arc;
use txdisk_disk::{Addr, Block};
use txdisk_fs::format::{
    name_key, put_u64_at, set_bit, DirNode, Inode, Record, Superblock, BITS_PER_BLOCK,
    MAX_FILE_BYTES,
};
use txdisk_fs::{
    check_invariants, Fs, Ino, Kind, MemStore, MkfsOptions, TxHandle, TxStore, Violation, ROOT_INO,
};

/// `/d/f` (11 blocks, so it has an indirect block), `/g` (100 bytes), `/d` a directory.
struct Image {
    store: Arc<MemStore>,
    sb: Superblock,
    d: Ino,
    f: Ino,
    g: Ino,
}

fn image() -> Image {
    let store = Arc::new(MemStore::new(1024, 64));
    let fs = Fs::mkfs(
        Arc::clone(&store),
        &MkfsOptions {
            inode_count: Some(64),
            hash_seed: Some([1, 2]),
        },
    )
    .expect("mkfs");
    let d = fs.mkdir(ROOT_INO, "d").expect("mkdir");
    let f = fs.create(d, "f").expect("create f");
    fs.write(f, 0, &vec![7u8; 11 * 4096]).expect("write f");
    let g = fs.create(ROOT_INO, "g").expect("create g");
    fs.write(g, 0, &[9u8; 100]).expect("write g");
    let sb = *fs.superblock();
    check_invariants(&store).expect("the image starts clean");
    Image { store, sb, d, f, g }
}

impl Image {
    fn edit_block(&self, addr: Addr, edit: impl FnOnce(&mut Block)) {
        let mut tx = self.store.begin();
        let mut block = tx.read(addr).expect("read");
        edit(&mut block);
        tx.write(addr, &block).expect("write");
        tx.commit().expect("commit");
    }

    fn inode(&self, ino: Ino) -> Inode {
        let (addr, slot) = self.sb.inode_location(ino);
        let mut tx = self.store.begin();
        Inode::decode(&tx.read(addr).expect("read"), slot)
    }

    fn edit_inode(&self, ino: Ino, edit: impl FnOnce(&mut Inode)) {
        let (addr, slot) = self.sb.inode_location(ino);
        self.edit_block(addr, |block| {
            let mut inode = Inode::decode(block, slot);
            edit(&mut inode);
            inode.encode_into(block, slot);
        });
    }

    /// Edits the root directory's record called `name` (in its one leaf), and gives it the
    /// key of its new name and its place in the order, as a consistent index would.
    fn edit_root_entry(&self, name: &[u8], edit: impl FnOnce(&mut Record)) {
        let seed = self.sb.hash_seed;
        self.edit_root_leaf(|records| {
            let record = records
                .iter_mut()
                .find(|record| record.name == name)
                .expect("entry present");
            edit(record);
            record.key = name_key(seed, &record.name);
            records.sort_by(|a, b| (a.key, &a.name).cmp(&(b.key, &b.name)));
        });
    }

    /// Edits the records of the root directory's one leaf as they are.
    fn edit_root_leaf(&self, edit: impl FnOnce(&mut Vec<Record>)) {
        let addr = self.inode(ROOT_INO).direct[0];
        self.edit_block(addr, |block| {
            let DirNode::Leaf(mut records) = DirNode::decode(block).expect("a node") else {
                panic!("the root directory is one leaf");
            };
            edit(&mut records);
            *block = DirNode::Leaf(records).encode();
        });
    }

    fn set_block_bit(&self, index: u64, value: bool) {
        let addr = self.sb.block_bitmap_start + index / BITS_PER_BLOCK;
        self.edit_block(addr, |block| set_bit(block, index % BITS_PER_BLOCK, value));
    }

    fn set_inode_bit(&self, ino: Ino, value: bool) {
        let addr = self.sb.inode_bitmap_start + ino / BITS_PER_BLOCK;
        self.edit_block(addr, |block| set_bit(block, ino % BITS_PER_BLOCK, value));
    }

    fn violation(&self) -> Violation {
        match check_invariants(&self.store) {
            Ok(report) => panic!("corruption not detected: {report:?}"),
            Err(violation) => violation,
        }
    }
}

#[test]
fn a_clean_image_passes_with_its_counts() {
    let image = image();
    let report = check_invariants(&image.store).expect("clean");
    assert_eq!(report.files, 2);
    assert_eq!(report.directories, 2);
    assert_eq!(report.file_bytes, 11 * 4096 + 100);
    // f: 11 data + 1 indirect; g: 1; root and d: one block each.
    assert_eq!(report.blocks_used, 12 + 1 + 2);
    assert_eq!(
        report.blocks_used + report.blocks_free,
        image.sb.data_blocks
    );
}

#[test]
fn superblock_crc_mismatch() {
    let image = image();
    image.edit_block(0, |block| put_u64_at(block, 16, 999));
    assert!(matches!(image.violation(), Violation::Superblock(_)));
}

#[test]
fn root_not_a_directory() {
    let image = image();
    let mode = Kind::File.type_bits() | 0o644;
    image.edit_inode(ROOT_INO, |inode| inode.mode = mode);
    let v = image.violation();
    assert!(
        matches!(v, Violation::RootNotDirectory { ino: ROOT_INO, mode: m } if m == mode),
        "{v}"
    );
}

#[test]
fn unknown_inode_kind() {
    let image = image();
    image.edit_inode(image.g, |inode| inode.mode = 0o070_644);
    let v = image.violation();
    assert!(
        matches!(v, Violation::BadKind { ino, mode: 0o070_644 } if ino == image.g),
        "{v}"
    );
}

#[test]
fn pointer_outside_the_data_region() {
    let image = image();
    image.edit_inode(image.g, |inode| inode.direct[0] = 3);
    let v = image.violation();
    assert!(
        matches!(v, Violation::PointerOutOfRange { ino, addr: 3 } if ino == image.g),
        "{v}"
    );
}

#[test]
fn owned_block_not_marked() {
    let image = image();
    let addr = image.inode(image.g).direct[0];
    image.set_block_bit(addr - image.sb.data_start, false);
    let v = image.violation();
    assert!(
        matches!(v, Violation::BlockNotMarked { ino, addr: a } if ino == image.g && a == addr),
        "{v}"
    );
}

#[test]
fn block_owned_twice() {
    let image = image();
    let shared = image.inode(image.f).direct[0];
    image.edit_inode(image.g, |inode| {
        inode.direct[0] = shared;
        // A whole block, so that the tail check does not fire first.
        inode.size_bytes = 4096;
    });
    let v = image.violation();
    assert!(
        matches!(v, Violation::BlockOwnedTwice { addr, first, second } if addr == shared && first == image.g && second == image.f),
        "{v}"
    );
}

#[test]
fn marked_block_owned_by_no_one() {
    let image = image();
    let index = image.sb.data_blocks - 1;
    image.set_block_bit(index, true);
    let v = image.violation();
    assert!(
        matches!(v, Violation::BlockLeaked { addr } if addr == image.sb.data_start + index),
        "{v}"
    );
}

#[test]
fn bitmap_bit_past_the_data_region() {
    let image = image();
    let index = image.sb.data_blocks;
    assert!(index < image.sb.block_bitmap_blocks * BITS_PER_BLOCK);
    image.set_block_bit(index, true);
    let v = image.violation();
    assert!(
        matches!(v, Violation::BitmapTail { bit } if bit == index),
        "{v}"
    );
}

#[test]
fn reachable_inode_not_marked() {
    let image = image();
    image.set_inode_bit(image.g, false);
    let v = image.violation();
    assert!(
        matches!(v, Violation::InodeNotMarked { ino } if ino == image.g),
        "{v}"
    );
}

#[test]
fn marked_inode_not_reachable() {
    let image = image();
    image.set_inode_bit(40, true);
    let v = image.violation();
    assert!(matches!(v, Violation::InodeLeaked { ino: 40 }), "{v}");
}

#[test]
fn reserved_inode_zero_unmarked() {
    let image = image();
    image.set_inode_bit(0, false);
    let v = image.violation();
    assert!(
        matches!(v, Violation::InodeBitmapReserved { ino: 0 }),
        "{v}"
    );
}

#[test]
fn entry_naming_a_free_inode() {
    let image = image();
    image.edit_inode(image.g, |inode| *inode = Inode::default());
    let v = image.violation();
    assert!(
        matches!(&v, Violation::DanglingEntry { dir: ROOT_INO, name, ino } if name == "g" && *ino == image.g),
        "{v}"
    );
}

#[test]
fn entry_kind_differs_from_inode_kind() {
    let image = image();
    image.edit_root_entry(b"g", |entry| entry.kind_code = Kind::Dir.code());
    let v = image.violation();
    assert!(
        matches!(
            v,
            Violation::EntryKind {
                dir: ROOT_INO,
                expected: 4,
                found: 8,
                ..
            }
        ),
        "{v}"
    );
}

#[test]
fn invalid_entry_name() {
    let image = image();
    image.edit_root_entry(b"g", |entry| entry.name = b"x/y".to_vec());
    let v = image.violation();
    assert!(
        matches!(&v, Violation::BadName { dir: ROOT_INO, name, .. } if name == "x/y"),
        "{v}"
    );
}

#[test]
fn duplicate_entry_name() {
    let image = image();
    image.edit_root_entry(b"g", |entry| entry.name = b"d".to_vec());
    let v = image.violation();
    assert!(
        matches!(&v, Violation::DuplicateName { dir: ROOT_INO, name } if name == "d"),
        "{v}"
    );
}

#[test]
fn directory_named_twice() {
    let image = image();
    let d = image.d;
    image.edit_root_entry(b"g", |entry| {
        entry.ino = d;
        entry.kind_code = Kind::Dir.code();
        entry.name = b"e".to_vec();
    });
    let v = image.violation();
    assert!(
        matches!(v, Violation::DirectoryLinkedTwice { ino, dir: ROOT_INO } if ino == d),
        "{v}"
    );
}

#[test]
fn directory_parent_field_wrong() {
    let image = image();
    image.edit_inode(image.d, |inode| inode.parent = 5);
    let v = image.violation();
    assert!(
        matches!(v, Violation::WrongParent { ino, expected: ROOT_INO, found: 5 } if ino == image.d),
        "{v}"
    );
}

#[test]
fn wrong_link_count() {
    let image = image();
    image.edit_inode(image.g, |inode| inode.nlink = 2);
    let v = image.violation();
    assert!(
        matches!(v, Violation::LinkCount { ino, expected: 1, found: 2 } if ino == image.g),
        "{v}"
    );
    let image = self::image();
    image.edit_inode(ROOT_INO, |inode| inode.nlink = 2);
    let v = image.violation();
    assert!(
        matches!(
            v,
            Violation::LinkCount {
                ino: ROOT_INO,
                expected: 3,
                found: 2
            }
        ),
        "{v}"
    );
}

#[test]
fn size_past_the_largest_file() {
    let image = image();
    image.edit_inode(image.g, |inode| inode.size_bytes = MAX_FILE_BYTES + 1);
    let v = image.violation();
    assert!(
        matches!(v, Violation::SizeTooLarge { ino, .. } if ino == image.g),
        "{v}"
    );
}

#[test]
fn block_mapped_past_the_end_of_file() {
    let image = image();
    image.edit_inode(image.f, |inode| inode.size_bytes = 4096);
    let v = image.violation();
    assert!(
        matches!(v, Violation::BlockPastEof { ino, index: 1, size_bytes: 4096 } if ino == image.f),
        "{v}"
    );
}

#[test]
fn garbage_past_the_end_of_file() {
    let image = image();
    let addr = image.inode(image.g).direct[0];
    image.edit_block(addr, |block| block.as_bytes_mut()[100] = 1);
    let v = image.violation();
    assert!(
        matches!(v, Violation::TailNotZero { ino, size_bytes: 100 } if ino == image.g),
        "{v}"
    );
}

#[test]
fn directory_size_not_its_nodes() {
    let image = image();
    image.edit_inode(image.d, |inode| inode.size_bytes = 4097);
    let v = image.violation();
    assert!(
        matches!(v, Violation::DirectorySize { ino, size_bytes: 4097, expected: 4096 } if ino == image.d),
        "{v}"
    );
}

#[test]
fn directory_index_disagrees_with_its_entries() {
    // A key that is not its name's hash: a lookup by name would miss the entry.
    let image = image();
    image.edit_root_leaf(|records| records[0].key += 1);
    let v = image.violation();
    assert!(
        matches!(&v, Violation::DirectoryTree { dir: ROOT_INO, what, .. } if what.contains("not the hash")),
        "{v}"
    );
    // Records out of key order: a search would stop early.
    let image = self::image();
    image.edit_root_leaf(|records| records.reverse());
    let v = image.violation();
    assert!(
        matches!(&v, Violation::DirectoryTree { dir: ROOT_INO, what, .. } if what.contains("order")),
        "{v}"
    );
    // Bytes past the records, which the format says are zero.
    let image = self::image();
    let leaf = image.inode(ROOT_INO).direct[0];
    image.edit_block(leaf, |block| block.as_bytes_mut()[4095] = 1);
    let v = image.violation();
    assert!(
        matches!(&v, Violation::DirectoryTree { dir: ROOT_INO, what, .. } if what.contains("zero after")),
        "{v}"
    );
    // A node that is no node.
    let image = self::image();
    let leaf = image.inode(image.d).direct[0];
    image.edit_block(leaf, |block| block.as_bytes_mut()[0] = b'X');
    let v = image.violation();
    assert!(
        matches!(v, Violation::DirectoryTree { dir, addr, .. } if dir == image.d && addr == leaf),
        "{v}"
    );
}

#[test]
fn hard_link_count_short_of_its_names() {
    let image = image();
    let fs = Fs::open(Arc::clone(&image.store), Default::default()).expect("open");
    fs.link(image.g, image.d, "g2").expect("link");
    drop(fs);
    check_invariants(&image.store).expect("two names, two links");
    image.edit_inode(image.g, |inode| inode.nlink = 1);
    let v = image.violation();
    assert!(
        matches!(v, Violation::LinkCount { ino, expected: 2, found: 1 } if ino == image.g),
        "{v}"
    );
}

#[test]
fn symlink_without_a_target() {
    let image = image();
    let fs = Fs::open(Arc::clone(&image.store), Default::default()).expect("open");
    let link = fs.symlink(ROOT_INO, "l", "g", 0, 0).expect("symlink");
    drop(fs);
    check_invariants(&image.store).expect("a link with a target");
    image.edit_inode(link, |inode| inode.size_bytes = 0);
    let v = image.violation();
    assert!(
        matches!(v, Violation::BadSymlink { ino, .. } if ino == link),
        "{v}"
    );
}

#[test]
fn impossible_metadata() {
    let image = image();
    image.edit_inode(image.g, |inode| inode.mtime.nanos = 1_000_000_000);
    let v = image.violation();
    assert!(
        matches!(v, Violation::BadMetadata { ino, .. } if ino == image.g),
        "{v}"
    );
    let image = self::image();
    image.edit_inode(image.g, |inode| inode.rdev = 0x0801);
    let v = image.violation();
    assert!(
        matches!(v, Violation::BadMetadata { ino, .. } if ino == image.g),
        "{v}"
    );
}

#[test]
fn wrong_block_count() {
    let image = image();
    image.edit_inode(image.f, |inode| inode.blocks = 11);
    let v = image.violation();
    assert!(
        matches!(v, Violation::BlockCount { ino, expected: 12, found: 11 } if ino == image.f),
        "{v}"
    );
}

#[test]
fn operations_refuse_a_damaged_image_without_panicking() {
    let image = image();
    image.edit_inode(image.g, |inode| inode.direct[0] = 3);
    let fs = Fs::open(Arc::clone(&image.store), Default::default()).expect("open");
    let error = fs
        .read(image.g, 0, 10)
        .expect_err("a pointer into metadata is corruption");
    assert!(
        matches!(error, txdisk_fs::FsError::Corrupt { .. }),
        "{error}"
    );
    image.edit_inode(image.d, |inode| inode.direct[0] = 3);
    let error = fs
        .readdir(image.d)
        .expect_err("a directory root in metadata");
    assert!(
        matches!(error, txdisk_fs::FsError::Corrupt { .. }),
        "{error}"
    );
    image.edit_inode(image.f, |inode| inode.size_bytes = MAX_FILE_BYTES + 1);
    let error = fs
        .read(image.f, 0, 1 << 20)
        .expect_err("an impossible file size");
    assert!(
        matches!(error, txdisk_fs::FsError::Corrupt { .. }),
        "{error}"
    );
    image.edit_block(0, |block| block.as_bytes_mut()[0] = b'X');
    let error = Fs::open(Arc::clone(&image.store), Default::default())
        .err()
        .expect("bad magic");
    assert!(
        matches!(error, txdisk_fs::FsError::NotAFileSystem),
        "{error}"
    );
}
