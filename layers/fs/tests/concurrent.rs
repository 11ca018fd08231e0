//! Concurrency: threads sharing one file system (serialised by its lock), and two file-system
//! handles on one store, whose operations then really race in the store and are kept apart by
//! its serializable transactions (conflicts retried). Afterwards every file holds exactly what
//! its thread wrote and the invariant checker passes.

use std::sync::Arc;
use txdisk_fs::{check_invariants, Fs, FsOptions, MemStore, MkfsOptions, ROOT_INO};

const THREADS: usize = 4;
const FILES_PER_THREAD: usize = 120;

fn contents(thread: usize, file: usize) -> Vec<u8> {
    (0..3000 + file * 97)
        .map(|i| (i as u8) ^ (thread as u8 * 31) ^ (file as u8))
        .collect()
}

/// Each thread makes its own directory and files in it, rewrites some and removes others.
fn work(fs: &Fs<Arc<MemStore>>, thread: usize) {
    let dir = fs.mkdir(ROOT_INO, format!("t{thread}")).expect("mkdir");
    for file in 0..FILES_PER_THREAD {
        let ino = fs.create(dir, format!("f{file}")).expect("create");
        fs.write(ino, 0, &contents(thread, file)).expect("write");
        if file % 3 == 0 {
            fs.unlink(dir, format!("f{file}")).expect("unlink");
        }
    }
}

fn verify(fs: &Fs<Arc<MemStore>>) {
    for thread in 0..THREADS {
        let dir = fs
            .lookup(ROOT_INO, format!("t{thread}"))
            .expect("thread dir");
        assert_eq!(
            fs.readdir(dir).expect("readdir").len(),
            FILES_PER_THREAD - FILES_PER_THREAD.div_ceil(3)
        );
        for file in (0..FILES_PER_THREAD).filter(|f| f % 3 != 0) {
            let ino = fs.lookup(dir, format!("f{file}")).expect("file");
            let expected = contents(thread, file);
            assert!(
                fs.read(ino, 0, expected.len() + 1).expect("read") == expected,
                "thread {thread} file {file}"
            );
        }
    }
    check_invariants(fs.store()).expect("consistent");
}

#[test]
fn threads_sharing_one_file_system() {
    let store = Arc::new(MemStore::new(4096, 256));
    let fs = Arc::new(Fs::mkfs(Arc::clone(&store), &MkfsOptions::default()).expect("mkfs"));
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let fs = Arc::clone(&fs);
            scope.spawn(move || work(&fs, thread));
        }
    });
    verify(&fs);
}

#[test]
fn two_handles_racing_in_one_store() {
    let store = Arc::new(MemStore::new(4096, 256));
    drop(Fs::mkfs(Arc::clone(&store), &MkfsOptions::default()).expect("mkfs"));
    let handles: Vec<Fs<Arc<MemStore>>> = (0..2)
        .map(|_| Fs::open(Arc::clone(&store), FsOptions::default()).expect("open"))
        .collect();
    let start = std::sync::Barrier::new(THREADS);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (fs, start) = (&handles[thread % 2], &start);
            scope.spawn(move || {
                start.wait();
                work(fs, thread)
            });
        }
    });
    // Whether the threads overlapped is up to the scheduler; say how often they did.
    eprintln!("{} commits conflicted and were retried", store.conflicts());
    verify(&handles[0]);
}
