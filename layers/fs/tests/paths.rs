//! Path-level helpers used by the command-line tool: streaming a file in and out (several
//! pieces), `mkdir -p`, listing, removing and renaming by path, and their errors.

use txdisk_fs::{check_invariants, Fs, FsError, Kind, MemStore, MkfsOptions, STREAM_PIECE_BYTES};

fn fs() -> Fs<MemStore> {
    Fs::mkfs(MemStore::new(4096, 256), &MkfsOptions::default()).expect("mkfs")
}

#[test]
fn put_and_get_a_file_of_several_pieces() {
    let fs = fs();
    fs.mkdir_path("/x/y", true).expect("mkdir -p");
    let data: Vec<u8> = (0..3 * STREAM_PIECE_BYTES + 17)
        .map(|i| (i % 241) as u8)
        .collect();
    let written = fs.put_file("/x/y/data", &mut &data[..]).expect("put");
    assert_eq!(written, data.len() as u64);
    let mut out = Vec::new();
    assert_eq!(
        fs.get_file("x/y/data", &mut out).expect("get"),
        data.len() as u64
    );
    assert!(out == data);
    // Putting again replaces the contents.
    fs.put_file("/x/y/data", &mut &b"short"[..])
        .expect("put again");
    let mut out = Vec::new();
    fs.get_file("/x/y/data", &mut out).expect("get");
    assert_eq!(out, b"short");
    check_invariants(fs.store()).expect("consistent");
}

#[test]
fn mkdir_list_rename_remove_by_path() {
    let fs = fs();
    fs.mkdir_path("/a/b/c", true).expect("mkdir -p");
    fs.mkdir_path("/a/b/c", true)
        .expect("mkdir -p of an existing directory");
    assert!(matches!(fs.mkdir_path("/a/b", false), Err(FsError::Exists)));
    fs.create_path("/a/f").expect("create");
    assert!(matches!(
        fs.mkdir_path("/a/f/g", true),
        Err(FsError::NotADirectory)
    ));
    let listing: Vec<(String, Kind)> = fs
        .list_path("/a")
        .expect("list")
        .into_iter()
        .map(|(entry, stat)| (entry.name_lossy(), stat.kind))
        .collect();
    assert_eq!(
        listing,
        [("b".to_string(), Kind::Dir), ("f".to_string(), Kind::File)]
    );
    fs.rename_path("/a/f", "/a/b/c/f2").expect("mv");
    assert_eq!(fs.stat_path("/a/b/c/f2").expect("stat").kind, Kind::File);
    assert!(matches!(fs.remove_path("/a/b/c"), Err(FsError::NotEmpty)));
    fs.remove_path("/a/b/c/f2").expect("rm file");
    fs.remove_path("/a/b/c").expect("rm empty dir");
    assert!(matches!(fs.stat_path("/a/b/c"), Err(FsError::NotFound)));
    assert!(matches!(
        fs.remove_path("/"),
        Err(FsError::InvalidArgument(_))
    ));
    check_invariants(fs.store()).expect("consistent");
}
