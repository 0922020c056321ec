//! Source trees for backups and ways to look at what a backup made of them: a tree with every
//! kind of metadata the rsync source must keep ([`populate_metadata_tree`]), large incompressible
//! files ([`noise`]), the `--fake-super` xattr (core-rsync-coda.md §9.6) and a content listing
//! of a whole tree ([`contents`]) for byte-for-byte comparisons.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Fills `src` (an existing directory) with: `plain.txt` ("hello\n", xattr `user.foo=bar`), a
/// set-uid `setuid` (04755), a sticky directory `sticky` (01777), `owned` (0664, owned by
/// 1234:5678; needs root), a symlink `link` -> `plain.txt`, hard links `hard1`/`hard2`,
/// `cache/junk.tmp` and `cache/keep`, and `skipme/secret` (for exclude tests).
pub fn populate_metadata_tree(src: &Path) {
    fs::write(src.join("plain.txt"), "hello\n").unwrap();
    xattr::set(src.join("plain.txt"), "user.foo", b"bar").unwrap();
    fs::write(src.join("setuid"), "#!/bin/sh\n").unwrap();
    chmod(&src.join("setuid"), 0o4755);
    fs::create_dir(src.join("sticky")).unwrap();
    chmod(&src.join("sticky"), 0o1777);
    fs::write(src.join("owned"), "owned by 1234\n").unwrap();
    chmod(&src.join("owned"), 0o664);
    std::os::unix::fs::chown(src.join("owned"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::symlink("plain.txt", src.join("link")).unwrap();
    fs::write(src.join("hard1"), "linked\n").unwrap();
    fs::hard_link(src.join("hard1"), src.join("hard2")).unwrap();
    fs::create_dir(src.join("cache")).unwrap();
    fs::write(src.join("cache/junk.tmp"), "excluded globally").unwrap();
    fs::write(src.join("cache/keep"), "kept").unwrap();
    fs::create_dir(src.join("skipme")).unwrap();
    fs::write(src.join("skipme/secret"), "excluded for this host").unwrap();
}

/// Sets the permission bits of `path`.
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The permission bits (with set-uid, set-gid, sticky) of `path`, not following a symlink.
pub fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// The `user.rsync.%stat` xattr rsync `--fake-super` keeps on `path` (§9.6), if any.
pub fn stat_xattr(path: &Path) -> Option<String> {
    xattr::get(path, "user.rsync.%stat")
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

/// `len` bytes of incompressible, reproducible data; another `seed` gives other bytes
/// everywhere, so rsync's delta transfer finds nothing to reuse.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    // xorshift64*: fast enough for tens of MiB in a debug build.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What a tree holds, for comparing trees: each path relative to the top, with `Some(bytes)`
/// for a regular file and `None` for a directory. Panics on anything else (the trees compared
/// this way hold only files and directories).
pub fn contents(top: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(top: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(top).unwrap().to_owned();
            let kind = fs::symlink_metadata(&path).unwrap().file_type();
            if kind.is_dir() {
                out.insert(rel, None);
                walk(top, &path, out);
            } else if kind.is_file() {
                out.insert(rel, Some(fs::read(&path).unwrap()));
            } else {
                panic!("{}: neither a file nor a directory", path.display());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(top, top, &mut out);
    out
}

/// Asserts that the trees `got` and `want` hold the same paths and bytes, naming the first
/// difference (without dumping megabytes of data).
pub fn assert_same_contents(got: &Path, want: &Path) {
    let (got_map, want_map) = (contents(got), contents(want));
    let names = |m: &BTreeMap<PathBuf, Option<Vec<u8>>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&got_map),
        names(&want_map),
        "{} and {} hold different paths",
        got.display(),
        want.display()
    );
    for (rel, data) in &want_map {
        assert!(
            got_map[rel] == *data,
            "{} differs from {}",
            got.join(rel).display(),
            want.join(rel).display()
        );
    }
}

/// Asserts that `copy` is what rsync `--fake-super` makes of a [`populate_metadata_tree`] tree
/// (core-rsync-coda.md §9.6): the same file data and `user.*` xattrs, the owner, the special
/// bits and the symlink in `user.rsync.%stat`, never a set-uid bit on the copy, and hard links
/// kept. `cache/junk.tmp` is left out (excluded by the tests' configs); `skipme` is not checked.
pub fn assert_fake_super_copy(copy: &Path) {
    let b = |rel: &str| copy.join(rel);
    let read = |rel: &str| {
        fs::read_to_string(b(rel)).unwrap_or_else(|e| panic!("{}: {e}", b(rel).display()))
    };
    assert_eq!(read("plain.txt"), "hello\n");
    assert_eq!(
        xattr::get(b("plain.txt"), "user.foo").unwrap().as_deref(),
        Some(&b"bar"[..])
    );
    assert_eq!(
        stat_xattr(&b("plain.txt")),
        None,
        "nothing to fake for a plain root file"
    );
    assert_eq!(read("owned"), "owned by 1234\n");
    assert_eq!(
        stat_xattr(&b("owned")).as_deref(),
        Some("100664 0,0 1234:5678")
    );
    assert_eq!(read("setuid"), "#!/bin/sh\n");
    assert_eq!(stat_xattr(&b("setuid")).as_deref(), Some("104755 0,0 0:0"));
    assert_eq!(
        mode(&b("setuid")) & 0o7000,
        0,
        "rsync never sets set-uid on the backup"
    );
    assert_eq!(stat_xattr(&b("sticky")).as_deref(), Some("41777 0,0 0:0"));
    // Linux refuses user xattrs on symlinks, so --fake-super stores them as regular files.
    assert_eq!(read("link"), "plain.txt");
    assert_eq!(stat_xattr(&b("link")).as_deref(), Some("120777 0,0 0:0"));
    let (h1, h2) = (
        fs::metadata(b("hard1")).unwrap(),
        fs::metadata(b("hard2")).unwrap(),
    );
    assert_eq!(read("hard2"), "linked\n");
    assert_eq!((h1.ino(), h1.nlink()), (h2.ino(), 2), "hard link kept");
    assert_eq!(read("cache/keep"), "kept");
    assert!(!b("cache/junk.tmp").exists(), "global exclude");
}
