//! Keeps `FORMAT.md` (version 2) true: encodes a superblock, an inode and directory nodes with
//! the crate's encoders, then checks every documented field at its documented offset, the zero
//! padding, the checksum by the documented rule, and the key function's documented range.

use byteorder::{ByteOrder, LittleEndian as LE};
use txdisk_disk::Block;
use txdisk_fs::format::{
    name_key, DirNode, Inode, Record, Superblock, FIRST_KEY, INODES_PER_BLOCK, INODE_BYTES, VERSION,
};
use txdisk_fs::{Kind, Timestamp};

#[test]
fn superblock_bytes() {
    let sb = Superblock::layout(10_000, 100)
        .expect("layout")
        .with_hash_seed([0x1111, 0x2222]);
    let block = sb.encode();
    let b = block.as_bytes();
    assert_eq!(&b[0..8], b"TXDSKFS\0");
    assert_eq!(VERSION, 2);
    assert_eq!(LE::read_u32(&b[8..]), 2, "version");
    assert_eq!(LE::read_u32(&b[12..]), 4096, "block size");
    assert_eq!(LE::read_u64(&b[16..]), 10_000, "total_blocks");
    assert_eq!(LE::read_u64(&b[24..]), 112, "inode_count, a multiple of 16");
    assert_eq!(LE::read_u64(&b[32..]), 1, "inode_bitmap_start");
    assert_eq!(LE::read_u64(&b[40..]), 1, "inode_bitmap_blocks");
    assert_eq!(LE::read_u64(&b[48..]), 2, "block_bitmap_start");
    assert_eq!(LE::read_u64(&b[56..]), 1, "block_bitmap_blocks");
    assert_eq!(LE::read_u64(&b[64..]), 3, "inode_table_start");
    assert_eq!(LE::read_u64(&b[72..]), 112 / 16, "inode_table_blocks");
    assert_eq!(LE::read_u64(&b[80..]), 3 + 7, "data_start");
    assert_eq!(LE::read_u64(&b[88..]), 10_000 - 10, "data_blocks");
    assert_eq!(LE::read_u64(&b[96..]), 1, "root inode");
    assert_eq!(LE::read_u64(&b[104..]), 0x1111, "hash key k0");
    assert_eq!(LE::read_u64(&b[112..]), 0x2222, "hash key k1");
    assert_eq!(
        LE::read_u32(&b[120..]),
        crc32c::crc32c(&b[..120]),
        "crc32c of bytes 0..120"
    );
    assert!(b[124..].iter().all(|&x| x == 0), "zero after byte 124");
    assert_eq!(Superblock::decode(&block, 10_000).expect("decodes"), sb);
}

#[test]
fn inode_bytes() {
    assert_eq!((INODE_BYTES, INODES_PER_BLOCK), (256, 16));
    let inode = Inode {
        mode: Kind::Symlink.type_bits() | 0o777,
        nlink: 3,
        uid: 1234,
        gid: 5678,
        size_bytes: 0x0102_0304,
        blocks: 5,
        parent: 0,
        atime: Timestamp::new(-7, 11),
        mtime: Timestamp::new(1_234_567_890, 123_456_789),
        ctime: Timestamp::new(2_000_000_000, 999_999_999),
        rdev: 0x0801,
        direct: [21, 22, 23, 24, 25, 26, 27, 28, 29, 30],
        indirect: 31,
        double_indirect: 32,
    };
    let mut block = Block::zeroed();
    inode.encode_into(&mut block, 5);
    let b = &block.as_bytes()[5 * 256..6 * 256];
    assert_eq!(LE::read_u32(&b[0..]), 0o120_777, "mode: S_IFLNK | 0777");
    assert_eq!(LE::read_u32(&b[4..]), 3, "nlink");
    assert_eq!(LE::read_u32(&b[8..]), 1234, "uid");
    assert_eq!(LE::read_u32(&b[12..]), 5678, "gid");
    assert_eq!(LE::read_u64(&b[16..]), 0x0102_0304, "size");
    assert_eq!(LE::read_u64(&b[24..]), 5, "blocks");
    assert_eq!(LE::read_u64(&b[32..]), 0, "parent");
    assert_eq!(LE::read_i64(&b[40..]), -7, "atime seconds");
    assert_eq!(LE::read_i64(&b[48..]), 1_234_567_890, "mtime seconds");
    assert_eq!(LE::read_i64(&b[56..]), 2_000_000_000, "ctime seconds");
    assert_eq!(LE::read_u32(&b[64..]), 11, "atime nanoseconds");
    assert_eq!(LE::read_u32(&b[68..]), 123_456_789, "mtime nanoseconds");
    assert_eq!(LE::read_u32(&b[72..]), 999_999_999, "ctime nanoseconds");
    assert_eq!(LE::read_u32(&b[76..]), 0x0801, "rdev");
    for i in 0..10 {
        assert_eq!(LE::read_u64(&b[80 + 8 * i..]), 21 + i as u64, "direct[{i}]");
    }
    assert_eq!(LE::read_u64(&b[160..]), 31, "indirect");
    assert_eq!(LE::read_u64(&b[168..]), 32, "double indirect");
    assert!(b[176..].iter().all(|&x| x == 0), "reserved bytes zero");
    assert!(block.as_bytes()[..5 * 256].iter().all(|&x| x == 0));
    assert_eq!(Inode::decode(&block, 5), inode);
}

#[test]
fn file_type_codes_are_mode_bits_and_d_type() {
    let documented = [
        (Kind::Fifo, 1),
        (Kind::CharDevice, 2),
        (Kind::Dir, 4),
        (Kind::BlockDevice, 6),
        (Kind::File, 8),
        (Kind::Symlink, 10),
        (Kind::Socket, 12),
    ];
    for (kind, code) in documented {
        assert_eq!(kind.code(), code, "{kind:?}");
        assert_eq!(kind.type_bits(), u32::from(code) << 12, "{kind:?}");
        assert_eq!(Kind::from_mode(kind.type_bits() | 0o644), Some(kind));
    }
}

#[test]
fn directory_leaf_bytes() {
    let seed = [3, 4];
    let names: [&[u8]; 2] = [b"alpha", b"b"];
    let mut records: Vec<Record> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Record {
            key: name_key(seed, name),
            ino: 40 + i as u64,
            kind_code: Kind::File.code(),
            name: name.to_vec(),
        })
        .collect();
    records.sort_by(|a, b| (a.key, &a.name).cmp(&(b.key, &b.name)));
    let leaf = DirNode::Leaf(records.clone());
    let block = leaf.encode();
    let b = block.as_bytes();
    assert_eq!(&b[0..4], b"TXDN");
    assert_eq!(b[4], 0, "level of a leaf");
    assert_eq!(b[5], 0);
    assert_eq!(LE::read_u16(&b[6..]), 2, "record count");
    assert!(b[8..16].iter().all(|&x| x == 0));
    let mut at = 16;
    for record in &records {
        assert_eq!(LE::read_u64(&b[at..]), record.key, "key");
        assert_eq!(LE::read_u64(&b[at + 8..]), record.ino, "inode");
        assert_eq!(b[at + 16], 8, "file type");
        assert_eq!(usize::from(b[at + 17]), record.name.len(), "name length");
        assert_eq!(&b[at + 18..at + 18 + record.name.len()], &record.name[..]);
        at += 18 + record.name.len();
    }
    assert!(b[at..].iter().all(|&x| x == 0), "zero after the records");
    assert_eq!(DirNode::decode(&block).expect("decodes"), leaf);
}

#[test]
fn directory_interior_bytes() {
    let node = DirNode::Interior {
        level: 2,
        children: vec![(0, 500), (1 << 40, 501), (1 << 61, 502)],
    };
    let block = node.encode();
    let b = block.as_bytes();
    assert_eq!(&b[0..4], b"TXDN");
    assert_eq!(b[4], 2, "level");
    assert_eq!(LE::read_u16(&b[6..]), 3, "children");
    for (i, (key, child)) in [(0u64, 500u64), (1 << 40, 501), (1 << 61, 502)]
        .into_iter()
        .enumerate()
    {
        assert_eq!(LE::read_u64(&b[16 + 16 * i..]), key, "child {i} key");
        assert_eq!(LE::read_u64(&b[24 + 16 * i..]), child, "child {i} address");
    }
    assert!(b[64..].iter().all(|&x| x == 0));
    assert_eq!(DirNode::decode(&block).expect("decodes"), node);
}

#[test]
fn keys_lie_in_the_documented_range() {
    let seed = [0xdead, 0xbeef];
    for i in 0..10_000u32 {
        let key = name_key(seed, format!("name{i}").as_bytes());
        assert!(
            (FIRST_KEY..FIRST_KEY + (1 << 62)).contains(&key),
            "key {key}"
        );
    }
    assert_eq!(FIRST_KEY, 3);
    // The key depends on the file system's hash key.
    assert_ne!(name_key([1, 2], b"x"), name_key([2, 1], b"x"));
}
