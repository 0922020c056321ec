//! Fake Coda tools for the coda source's tests (core-rsync-coda.md §13, test-infra.md §8):
//! codadump2tar-shaped ustar streams ([`CodaTar`]), fake `volutil` and `codadump2tar` scripts
//! that record their calls ([`FakeCoda`]), and the ssh stand-in of test-infra.md §1
//! ([`FakeCoda::fake_ssh`]) for the failure fixtures, where a real sshd adds nothing.
//!
//! [`CodaTar`] writes what codadump2tar writes (§10.5): plain ustar headers (no GNU or pax
//! extensions), names relative to `.` with a `./` prefix, gid 0, directories first with mode
//! 0755, then files and symlinks (an unresolved symlink has an empty target), then hard links
//! with full `./` link names, then `./..CodaACLs.yaml`, then two zero blocks. The order is the
//! caller's: the builder writes entries as they are added.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The volume id the fake `volutil info` reports.
pub const VOLUME_ID: &str = "7f000001";
/// The backup id the fake `volutil info` reports.
pub const BACKUP_ID: &str = "7f000004";

/// A codadump2tar-shaped ustar stream under construction.
#[derive(Debug, Default, Clone)]
pub struct CodaTar {
    bytes: Vec<u8>,
}

impl CodaTar {
    /// An empty stream.
    pub fn new() -> CodaTar {
        CodaTar::default()
    }

    /// A directory (`name` like `./docs`; the root is `.`), mode 0755 as codadump2tar always
    /// writes.
    pub fn dir(mut self, name: &[u8], uid: u64, mtime: u64) -> CodaTar {
        self.push(b'5', name, 0o755, uid, mtime, b"", b"");
        self
    }

    /// A regular file with `data`.
    pub fn file(mut self, name: &[u8], mode: u32, uid: u64, mtime: u64, data: &[u8]) -> CodaTar {
        self.push(b'0', name, mode, uid, mtime, b"", data);
        self
    }

    /// A symlink (an empty `target` is an unresolved link).
    pub fn symlink(mut self, name: &[u8], target: &[u8], uid: u64, mtime: u64) -> CodaTar {
        self.push(b'2', name, 0o777, uid, mtime, target, b"");
        self
    }

    /// A hard-link record: `name` is another name of `target` (a full `./` path).
    pub fn hardlink(mut self, name: &[u8], target: &[u8], uid: u64, mtime: u64) -> CodaTar {
        self.push(b'1', name, 0o644, uid, mtime, target, b"");
        self
    }

    /// `./..CodaACLs.yaml` (mode 0400, uid 0) with `yaml`.
    pub fn acls(self, yaml: &str, mtime: u64) -> CodaTar {
        self.file(b"./..CodaACLs.yaml", 0o400, 0, mtime, yaml.as_bytes())
    }

    /// An entry of any type flag (for the unexpected ones: FIFO `6`, AREGTYPE NUL).
    pub fn raw(mut self, typeflag: u8, name: &[u8], data: &[u8]) -> CodaTar {
        self.push(typeflag, name, 0o644, 0, 1_000_000_000, b"", data);
        self
    }

    /// The stream so far, without the end-of-archive marker.
    pub fn unfinished(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    /// The complete stream: the entries and two zero blocks.
    pub fn finish(&self) -> Vec<u8> {
        let mut bytes = self.bytes.clone();
        bytes.extend_from_slice(&[0u8; 1024]);
        bytes
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        typeflag: u8,
        name: &[u8],
        mode: u32,
        uid: u64,
        mtime: u64,
        link: &[u8],
        data: &[u8],
    ) {
        let mut h = [0u8; 512];
        let (prefix, short) = split_name(name);
        h[..short.len()].copy_from_slice(short);
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], uid);
        h[116..123].fill(b'0');
        octal(&mut h[124..136], data.len() as u64);
        octal(&mut h[136..148], mtime);
        h[156] = typeflag;
        let link = &link[..link.len().min(99)];
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[345..345 + prefix.len()].copy_from_slice(prefix);
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(text.as_bytes());
        self.bytes.extend_from_slice(&h);
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
    }
}

/// ustar's split of a long name into prefix (≤ 155) and name (≤ 100).
fn split_name(name: &[u8]) -> (&[u8], &[u8]) {
    if name.len() <= 100 {
        return (b"", name);
    }
    let cut = (0..name.len())
        .rev()
        .find(|&i| name[i] == b'/' && i <= 155 && name.len() - i - 1 <= 100)
        .expect("a name ustar can split");
    (&name[..cut], &name[cut + 1..])
}

/// A zero-padded octal number filling `field` but its last byte (NUL).
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    assert!(text.len() == width, "{value} does not fit");
    field[..width].copy_from_slice(text.as_bytes());
    field[width] = 0;
}

/// Fake `volutil` and `codadump2tar` in a directory of their own, with their call log and the
/// fixtures the fake `codadump2tar` serves.
pub struct FakeCoda {
    dir: PathBuf,
}

impl FakeCoda {
    /// Writes the tools into `dir` (created).
    ///
    /// `volutil`: appends `volutil <args>` to `calls.log`; `info` prints a `vol-info.cc`-shaped
    /// block with [`VOLUME_ID`] and [`BACKUP_ID`]; `dump` prints `dump <args>` (the "dump" the
    /// fake codadump2tar reads); a file `fail-<subcommand>` makes that subcommand exit with the
    /// status it holds (after printing nothing for `dump`).
    ///
    /// `codadump2tar`: appends `codadump2tar <args> <- <what it read>` to the log, then writes
    /// `incremental.tar` when its input says `-i -1` and `full.tar` otherwise; a file
    /// `c2t-sleep` makes it sleep that many seconds afterwards, and `c2t-exit` sets its exit
    /// status.
    pub fn new(dir: &Path) -> FakeCoda {
        fs::create_dir_all(dir).unwrap();
        let d = dir.display();
        let volutil = format!(
            "#!/bin/sh\nD='{d}'\necho \"volutil $*\" >> \"$D/calls.log\"\n\
             if [ -f \"$D/fail-$1\" ]; then echo \"volutil $1: failed on purpose\" >&2; \
             exit \"$(cat \"$D/fail-$1\")\"; fi\n\
             case \"$1\" in\n\
             info) printf 'Volume header for volume {VOLUME_ID} (%s.0)\\nstamp.magic = 1, \
             stamp.version = 1\\nid = {VOLUME_ID}, parentId = {VOLUME_ID}, cloneId = 00000000, \
             backupId = {BACKUP_ID}, restoredFromId = 00000000\\npartition = (/vicepa)\\n' \"$2\" ;;\n\
             lock) echo 'Locked volume {VOLUME_ID} had a VVV of (1, 0, 0, 0, 0, 0, 0, 0)' ;;\n\
             backup) echo 'Backup (id = {BACKUP_ID}) of Volume {VOLUME_ID} created' ;;\n\
             dump) echo \"dump $*\" ;;\n\
             esac\nexit 0\n"
        );
        let c2t = format!(
            "#!/bin/sh\nD='{d}'\nin=$(cat)\necho \"codadump2tar $* <- $in\" >> \"$D/calls.log\"\n\
             case \"$in\" in\n*'-i -1'*) cat \"$D/incremental.tar\" ;;\n*) cat \"$D/full.tar\" ;;\nesac\n\
             if [ -f \"$D/c2t-sleep\" ]; then sleep \"$(cat \"$D/c2t-sleep\")\"; fi\n\
             if [ -f \"$D/c2t-exit\" ]; then exit \"$(cat \"$D/c2t-exit\")\"; fi\nexit 0\n"
        );
        let fake = FakeCoda {
            dir: dir.to_path_buf(),
        };
        fake.script("volutil", &volutil);
        fake.script("codadump2tar", &c2t);
        fake.script(
            "ssh",
            "#!/bin/sh\n# ssh stand-in (test-infra.md section 1): drop the options and the host,\n\
             # run the remote command with sh as ssh would hand it to the login shell.\n\
             while [ $# -gt 0 ]; do\n  case \"$1\" in\n    -l|-p|-i|-o|-F) shift 2 ;;\n    \
             -*) shift ;;\n    *) shift; break ;;\n  esac\ndone\nexec sh -c \"$*\"\n",
        );
        fake.set_full(&CodaTar::new().dir(b".", 0, 1).finish());
        fake.set_incremental(&CodaTar::new().dir(b".", 0, 1).finish());
        fake
    }

    fn script(&self, name: &str, text: &str) {
        let path = self.dir.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The fake `volutil` (for `coda-volutil-path`).
    pub fn volutil(&self) -> PathBuf {
        self.dir.join("volutil")
    }

    /// The fake `codadump2tar` (for `coda-codadump2tar-path`).
    pub fn codadump2tar(&self) -> PathBuf {
        self.dir.join("codadump2tar")
    }

    /// The ssh stand-in (for `DELTAIC_SSH`).
    pub fn fake_ssh(&self) -> PathBuf {
        self.dir.join("ssh")
    }

    /// What a full dump streams.
    pub fn set_full(&self, stream: &[u8]) {
        fs::write(self.dir.join("full.tar"), stream).unwrap();
    }

    /// What an incremental dump streams.
    pub fn set_incremental(&self, stream: &[u8]) {
        fs::write(self.dir.join("incremental.tar"), stream).unwrap();
    }

    /// Makes `volutil <subcommand>` exit with `status` (0 removes the failure).
    pub fn fail(&self, subcommand: &str, status: i32) {
        let path = self.dir.join(format!("fail-{subcommand}"));
        if status == 0 {
            let _ = fs::remove_file(path);
        } else {
            fs::write(path, status.to_string()).unwrap();
        }
    }

    /// Makes `codadump2tar` exit with `status` after writing its stream.
    pub fn codadump2tar_exit(&self, status: i32) {
        fs::write(self.dir.join("c2t-exit"), status.to_string()).unwrap();
    }

    /// Makes `codadump2tar` sleep `seconds` after writing its stream (a hung server).
    pub fn codadump2tar_sleep(&self, seconds: u32) {
        fs::write(self.dir.join("c2t-sleep"), seconds.to_string()).unwrap();
    }

    /// The recorded calls, one per line, and clears the log.
    pub fn take_calls(&self) -> Vec<String> {
        let path = self.dir.join("calls.log");
        let text = fs::read_to_string(&path).unwrap_or_default();
        let _ = fs::remove_file(&path);
        text.lines().map(str::to_string).collect()
    }
}
