//! Applying an export-diff stream to the sparse backup file (github-rgw-rbd.md §3.5), with
//! constant memory and as few writes as possible.
//!
//! * The file is opened read-only and reopened read-write only at the first change, so a diff
//!   that changes nothing leaves the file (and its mtime) untouched.
//! * `w` data is compared with the file in [`CHUNK`]s; only the [`BLOCK`]s that differ are
//!   written, so unchanged blocks stay shared with older snapshots (btrfs, LVM thin). Where the
//!   file has a hole (`SEEK_DATA`), zero blocks are not written, so holes stay holes.
//! * `z` ranges are made to read as zeros: data extents in them (found with `SEEK_DATA`/
//!   `SEEK_HOLE`) are read and punched (`fallocate PUNCH_HOLE`) only where they hold non-zero
//!   bytes.
//! * `s` truncates or extends the file (the new tail is a hole).
//!
//! [`Mode::Full`] is for a full export (the first fetch, a re-fetch, a scrub): there, ranges the
//! stream does not mention are unallocated in RBD, so they are made to read as zeros too: the
//! whole file ends up equal to the image, whatever it held before. The counts in [`Stats`] are
//! the scrub's mismatches (D6).

use super::diff::{DiffError, DiffReader, Record};
use rustix::fs::{FallocateFlags, SeekFrom};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Comparison and I/O unit: data is read from the stream and the file this much at a time.
pub const CHUNK: usize = 1 << 20;
/// Write granularity: a block is written only when it differs.
pub const BLOCK: usize = 4096;

/// How the stream relates to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An incremental diff: ranges it does not mention are unchanged.
    Incremental,
    /// A full export: ranges it does not mention read as zeros.
    Full,
}

/// What applying changed in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// `w` payload bytes received.
    pub data_bytes: u64,
    /// Bytes of the file rewritten because they differed.
    pub bytes_written: u64,
    /// Bytes zeroed (punched) because they held non-zero data.
    pub bytes_zeroed: u64,
    /// Separate ranges that differed (written or zeroed; adjacent ones count once), the
    /// scrub's mismatch count.
    pub ranges_changed: u64,
    /// End of the last changed range, to count adjacent ones once.
    last_changed_end: Option<u64>,
    /// Whether the size changed.
    pub resized: bool,
    /// The size at the end.
    pub size: u64,
    /// The `f` record, if any.
    pub from_snap: Option<String>,
    /// The `t` record, if any.
    pub to_snap: Option<String>,
}

impl Stats {
    /// Records a changed range `[at, at + len)`.
    fn count_change(&mut self, at: u64, len: u64) {
        if self.last_changed_end != Some(at) {
            self.ranges_changed += 1;
        }
        self.last_changed_end = Some(at + len);
    }

    /// Whether anything in the file changed.
    pub fn changed(&self) -> bool {
        self.ranges_changed > 0 || self.resized
    }
}

impl std::fmt::Display for Stats {
    /// One line for the unit's output: what came in and what changed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes of data, {} rewritten, {} zeroed, {} ranges changed, {} total",
            self.data_bytes, self.bytes_written, self.bytes_zeroed, self.ranges_changed, self.size
        )
    }
}

/// Failure while applying: the stream was bad, or the file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The stream is malformed or truncated.
    #[error(transparent)]
    Diff(#[from] DiffError),
    /// An I/O error on the backup file.
    #[error("{context} {path}: {source}")]
    File {
        /// What was being done.
        context: &'static str,
        /// The backup file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A full export whose records are not in ascending order (rbd always sorts them).
    #[error("full export-diff stream record at offset {offset} is out of order")]
    Unordered {
        /// The record's offset.
        offset: u64,
    },
    /// A full export without a size record.
    #[error("full export-diff stream has no size record")]
    NoSize,
}

/// The backup image file, opened read-only until the first change.
pub struct ImageFile {
    path: PathBuf,
    file: File,
    writable: bool,
    size: u64,
}

impl ImageFile {
    /// Opens `path` read-only, creating it empty first when `create` is set and it is missing.
    pub fn open(path: &Path, create: bool) -> Result<ImageFile, ApplyError> {
        let err = |context, source| ApplyError::File {
            context,
            path: path.to_owned(),
            source,
        };
        if create {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(err("creating", e)),
            }
        }
        let file = File::open(path).map_err(|e| err("opening", e))?;
        let size = file
            .metadata()
            .map_err(|e| err("reading the size of", e))?
            .len();
        Ok(ImageFile {
            path: path.to_owned(),
            file,
            writable: false,
            size,
        })
    }

    /// The file's current size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the file was changed (reopened read-write).
    pub fn was_written(&self) -> bool {
        self.writable
    }

    fn err(&self, context: &'static str, source: io::Error) -> ApplyError {
        ApplyError::File {
            context,
            path: self.path.clone(),
            source,
        }
    }

    fn make_writable(&mut self) -> Result<(), ApplyError> {
        if !self.writable {
            tracing::debug!("re-opening {} rw", self.path.display());
            self.file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.path)
                .map_err(|e| self.err("re-opening read-write", e))?;
            self.writable = true;
        }
        Ok(())
    }

    /// Truncates or extends to `size`; returns whether it changed.
    pub fn set_size(&mut self, size: u64) -> Result<bool, ApplyError> {
        if size == self.size {
            return Ok(false);
        }
        self.make_writable()?;
        self.file
            .set_len(size)
            .map_err(|e| self.err("resizing", e))?;
        self.size = size;
        Ok(true)
    }

    /// fsyncs the file when it was written (so a phase is durable before it is declared done).
    pub fn sync(&self) -> Result<(), ApplyError> {
        if self.writable {
            self.file.sync_all().map_err(|e| self.err("syncing", e))?;
        }
        Ok(())
    }

    /// The start of the first data extent at or after `offset` and before `end`, if any.
    fn next_data(&self, offset: u64, end: u64) -> Result<Option<u64>, ApplyError> {
        if offset >= end || offset >= self.size {
            return Ok(None);
        }
        match rustix::fs::seek(&self.file, SeekFrom::Data(offset)) {
            Ok(at) if at < end => Ok(Some(at)),
            Ok(_) => Ok(None),
            Err(rustix::io::Errno::NXIO) => Ok(None),
            Err(e) => Err(self.err("looking for data (SEEK_DATA) in", e.into())),
        }
    }

    /// The end of the data extent holding `offset` (the next hole), capped at `end`.
    fn data_end(&self, offset: u64, end: u64) -> Result<u64, ApplyError> {
        match rustix::fs::seek(&self.file, SeekFrom::Hole(offset)) {
            Ok(at) => Ok(at.min(end)),
            Err(rustix::io::Errno::NXIO) => Ok(end),
            Err(e) => Err(self.err("looking for holes (SEEK_HOLE) in", e.into())),
        }
    }

    /// Reads `buf.len()` bytes at `offset`; bytes past the end of the file read as zeros.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ApplyError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self
                .file
                .read_at(&mut buf[filled..], offset + filled as u64)
            {
                Ok(0) => {
                    buf[filled..].fill(0);
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err("reading", e)),
            }
        }
        Ok(())
    }

    /// Makes `[offset, offset + data.len())` hold `data`, writing only the differing blocks.
    /// `scratch` must be at least `data.len()` long. Adds what changed to `stats`.
    pub fn write_if_changed(
        &mut self,
        offset: u64,
        data: &[u8],
        scratch: &mut [u8],
        stats: &mut Stats,
    ) -> Result<(), ApplyError> {
        let end = offset + data.len() as u64;
        let hole = self.next_data(offset, end)?.is_none();
        let current = &mut scratch[..data.len()];
        if hole {
            current.fill(0);
        } else {
            self.read_at(offset, current)?;
        }
        // Walk BLOCK-aligned pieces (aligned on file offsets) and write runs of differing ones.
        let mut run: Option<(usize, usize)> = None;
        let mut i = 0;
        while i < data.len() {
            let block_end = ((offset + i as u64) / BLOCK as u64 + 1) * BLOCK as u64;
            let j = data.len().min((block_end - offset) as usize);
            if data[i..j] != current[i..j] {
                run = Some(run.map_or((i, j), |(s, _)| (s, j)));
            } else if let Some((s, e)) = run.take() {
                self.write_run(offset + s as u64, &data[s..e], stats)?;
            }
            i = j;
        }
        if let Some((s, e)) = run {
            self.write_run(offset + s as u64, &data[s..e], stats)?;
        }
        Ok(())
    }

    fn write_run(&mut self, at: u64, data: &[u8], stats: &mut Stats) -> Result<(), ApplyError> {
        self.make_writable()?;
        self.file
            .write_all_at(data, at)
            .map_err(|e| self.err("writing", e))?;
        stats.bytes_written += data.len() as u64;
        stats.count_change(at, data.len() as u64);
        Ok(())
    }

    /// Makes `[offset, offset + len)` read as zeros: punches the chunks of its data extents that
    /// hold non-zero bytes. Adds what changed to `stats`.
    pub fn ensure_zero(
        &mut self,
        offset: u64,
        len: u64,
        scratch: &mut [u8],
        stats: &mut Stats,
    ) -> Result<(), ApplyError> {
        let end = (offset + len).min(self.size);
        let mut at = offset;
        let mut run: Option<(u64, u64)> = None;
        while let Some(data) = self.next_data(at, end)? {
            let data_end = self.data_end(data, end)?;
            let mut pos = data;
            while pos < data_end {
                let n = (data_end - pos).min(scratch.len() as u64) as usize;
                self.read_at(pos, &mut scratch[..n])?;
                if scratch[..n].iter().any(|&b| b != 0) {
                    run = match run {
                        Some((s, e)) if e == pos => Some((s, pos + n as u64)),
                        Some((s, e)) => {
                            self.punch(s, e - s, stats)?;
                            Some((pos, pos + n as u64))
                        }
                        None => Some((pos, pos + n as u64)),
                    };
                }
                pos += n as u64;
            }
            at = data_end;
        }
        if let Some((s, e)) = run {
            self.punch(s, e - s, stats)?;
        }
        Ok(())
    }

    fn punch(&mut self, at: u64, len: u64, stats: &mut Stats) -> Result<(), ApplyError> {
        self.make_writable()?;
        rustix::fs::fallocate(
            &self.file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            at,
            len,
        )
        .map_err(|e| self.err("punching a hole (fallocate) in", e.into()))?;
        stats.bytes_zeroed += len;
        stats.count_change(at, len);
        Ok(())
    }
}

/// Applies the rest of `reader`'s stream to `file` (see the module doc); the stream must end
/// with its end record. On error the file may hold part of the stream: callers mark it
/// incomplete first (the pending or missing snapshot xattr).
pub fn apply<R: Read>(
    reader: &mut DiffReader<R>,
    file: &mut ImageFile,
    mode: Mode,
) -> Result<Stats, ApplyError> {
    let mut stats = Stats::default();
    let mut data = vec![0u8; CHUNK];
    let mut scratch = vec![0u8; CHUNK];
    // Full mode: everything before `covered` has been made equal to the image.
    let mut covered = 0u64;
    let mut sized = false;
    loop {
        let record = reader.next_record()?;
        if mode == Mode::Full
            && let Record::Write { offset, len } | Record::Zero { offset, len } = record
        {
            if !sized {
                return Err(ApplyError::NoSize);
            }
            if offset < covered {
                return Err(ApplyError::Unordered { offset });
            }
            file.ensure_zero(covered, offset - covered, &mut scratch, &mut stats)?;
            covered = offset + len;
        }
        match record {
            Record::FromSnap(name) => stats.from_snap = Some(name),
            Record::ToSnap(name) => stats.to_snap = Some(name),
            Record::Size(size) => {
                stats.resized |= file.set_size(size)?;
                sized = true;
            }
            Record::Write { offset, .. } => {
                let mut at = offset;
                loop {
                    // Reads end on CHUNK-aligned offsets, so blocks are compared whole.
                    let want = CHUNK - (at % CHUNK as u64) as usize;
                    let n = reader.read_data(&mut data[..want])?;
                    if n == 0 {
                        break;
                    }
                    stats.data_bytes += n as u64;
                    file.write_if_changed(at, &data[..n], &mut scratch, &mut stats)?;
                    at += n as u64;
                }
            }
            Record::Zero { offset, len } => {
                file.ensure_zero(offset, len, &mut scratch, &mut stats)?;
            }
            Record::End => break,
        }
    }
    if mode == Mode::Full {
        if !sized {
            return Err(ApplyError::NoSize);
        }
        let size = file.size();
        file.ensure_zero(
            covered,
            size.saturating_sub(covered),
            &mut scratch,
            &mut stats,
        )?;
    }
    stats.size = file.size();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::super::diff::Record;
    use super::super::diff::testing::{fixture, stream};
    use super::*;

    fn apply_bytes(path: &Path, bytes: &[u8], mode: Mode) -> Result<Stats, ApplyError> {
        let mut reader = DiffReader::new(bytes)?;
        let mut file = ImageFile::open(path, true)?;
        let stats = apply(&mut reader, &mut file, mode)?;
        file.sync()?;
        Ok(stats)
    }

    fn sha256(path: &Path) -> String {
        let out = std::process::Command::new("sha256sum")
            .arg(path)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()[..64].to_string()
    }

    /// Allocated bytes of the file (st_blocks × 512).
    fn allocated(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().blocks() * 512
    }

    const S4: &str = "824274bcc4bfbb9333099c2da5a6a717974e1a3aeb0eda3be012c6f4cc0d1368";
    const S2: &str = "979718acb3907999965be05d651b06757cf145be9c2a17ef757adf326a6b2561";
    const S3: &str = "1f079875f55245e3f35274f31d52fb8dea77b449e68dd1c8818af35f3a309635";

    #[test]
    fn real_streams_rebuild_the_recorded_images() {
        let dir = tempfile::tempdir().unwrap();
        let chain = dir.path().join("chain");
        for name in ["t-s1.diff", "t-s1-s2.diff"] {
            apply_bytes(&chain, &fixture(name), Mode::Incremental).unwrap();
        }
        assert_eq!(sha256(&chain), S2);
        apply_bytes(&chain, &fixture("t-s2-s3.diff"), Mode::Incremental).unwrap();
        assert_eq!(sha256(&chain), S3);
        let stats = apply_bytes(&chain, &fixture("t-s3-s4.diff"), Mode::Incremental).unwrap();
        assert!(stats.resized && stats.ranges_changed == 0, "{stats:?}");
        assert_eq!(sha256(&chain), S4);

        let alone = dir.path().join("alone");
        apply_bytes(&alone, &fixture("t-s4.diff"), Mode::Full).unwrap();
        assert_eq!(sha256(&alone), S4);

        let whole = dir.path().join("whole");
        apply_bytes(&whole, &fixture("t-s1.diff"), Mode::Incremental).unwrap();
        apply_bytes(&whole, &fixture("t-s1-s2-whole.diff"), Mode::Incremental).unwrap();
        assert_eq!(sha256(&whole), S2);
    }

    #[test]
    fn a_full_export_over_a_stale_file_fixes_everything_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        // Stale content: s2's image with garbage in a range s4 leaves unallocated, and too long.
        apply_bytes(&path, &fixture("t-s1.diff"), Mode::Full).unwrap();
        apply_bytes(&path, &fixture("t-s1-s2.diff"), Mode::Incremental).unwrap();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"junk in a hole", 30000).unwrap();
        f.write_all_at(b"X", 0).unwrap();
        drop(f);
        let stats = apply_bytes(&path, &fixture("t-s4.diff"), Mode::Full).unwrap();
        assert_eq!(sha256(&path), S4);
        assert!(stats.resized);
        assert_eq!(stats.ranges_changed, 2, "{stats:?}");
        assert_eq!(stats.bytes_written, 4096, "only the block holding the X");
        // Scrubbing again finds nothing and does not touch the file.
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        let again = apply_bytes(&path, &fixture("t-s4.diff"), Mode::Full).unwrap();
        assert!(!again.changed(), "{again:?}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
    }

    #[test]
    fn zero_records_punch_data_and_leave_holes_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mib = 1u64 << 20;
        let write = Record::Write {
            offset: 0,
            len: mib,
        };
        let bytes = stream(&[
            (Record::Size(8 * mib), vec![]),
            (write, vec![7u8; mib as usize]),
            (Record::End, vec![]),
        ]);
        apply_bytes(&path, &bytes, Mode::Incremental).unwrap();
        assert_eq!(allocated(&path), mib, "only the written MiB is allocated");

        let zero = Record::Zero {
            offset: 0,
            len: 2 * mib,
        };
        let bytes = stream(&[
            (Record::Size(4 * mib), vec![]),
            (zero, vec![]),
            (Record::End, vec![]),
        ]);
        let stats = apply_bytes(&path, &bytes, Mode::Incremental).unwrap();
        assert_eq!(allocated(&path), 0, "the data became a hole");
        assert_eq!((stats.bytes_zeroed, stats.ranges_changed), (mib, 1));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 * mib, "shrunk");
        assert_eq!(std::fs::read(&path).unwrap(), vec![0u8; 4 * mib as usize]);
    }

    #[test]
    fn an_empty_diff_leaves_the_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        apply_bytes(&path, &fixture("t-s4.diff"), Mode::Full).unwrap();
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let bytes = stream(&[
            (Record::FromSnap("a".into()), vec![]),
            (Record::ToSnap("b".into()), vec![]),
            (Record::Size(49152), vec![]),
            (Record::End, vec![]),
        ]);
        let mut reader = DiffReader::new(&bytes[..]).unwrap();
        let mut file = ImageFile::open(&path, false).unwrap();
        let stats = apply(&mut reader, &mut file, Mode::Incremental).unwrap();
        assert!(!file.was_written() && !stats.changed());
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
    }

    #[test]
    fn rewriting_identical_data_writes_nothing_and_changes_write_only_their_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mut data: Vec<u8> = (0..3 * CHUNK + 100).map(|i| (i % 251) as u8 + 1).collect();
        let stream = |data: &[u8]| {
            let write = Record::Write {
                offset: 5,
                len: data.len() as u64,
            };
            stream(&[
                (Record::Size(data.len() as u64 + 5), vec![]),
                (write, data.to_vec()),
                (Record::End, vec![]),
            ])
        };
        apply_bytes(&path, &stream(&data), Mode::Incremental).unwrap();
        let same = apply_bytes(&path, &stream(&data), Mode::Incremental).unwrap();
        assert_eq!((same.bytes_written, same.ranges_changed), (0, 0));
        data[10_000] ^= 0xff; // file offset 10005: block 2
        data[CHUNK + 3] ^= 0xff;
        let changed = apply_bytes(&path, &stream(&data), Mode::Incremental).unwrap();
        assert_eq!(
            (changed.bytes_written, changed.ranges_changed),
            (2 * BLOCK as u64, 2)
        );
        assert_eq!(&std::fs::read(&path).unwrap()[5..], &data[..]);
    }

    #[test]
    fn a_truncated_stream_is_an_error_at_every_cut() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = fixture("t-s1.diff");
        for cut in (0..bytes.len()).step_by(97) {
            let path = dir.path().join(format!("img{cut}"));
            let err = apply_bytes(&path, &bytes[..cut], Mode::Full).unwrap_err();
            assert!(matches!(err, ApplyError::Diff(_)), "{err}");
        }
    }
    /// A record for the model tests: (is_write, offset, len, fill byte) or a resize.
    #[derive(Debug, Clone)]
    enum Op {
        Size(u64),
        Write(u64, u64, u8),
        Zero(u64, u64),
    }

    const MAX: u64 = 5 * CHUNK as u64 / 2;

    fn arb_ops() -> impl proptest::strategy::Strategy<Value = Vec<Op>> {
        use proptest::prelude::*;
        let op = prop_oneof![
            1 => (1u64..MAX).prop_map(Op::Size),
            4 => (0u64..MAX, 1u64..CHUNK as u64 + 9000, any::<u8>()).prop_map(|(o, l, b)| Op::Write(o, l, b)),
            2 => (0u64..MAX, 1u64..CHUNK as u64 + 9000).prop_map(|(o, l)| Op::Zero(o, l)),
        ];
        proptest::collection::vec(op, 1..6)
    }

    /// Writes `ops` as one stream per `s` (clipping ranges to the size), applies each, and
    /// checks the file against an in-memory model after every stream.
    fn check_against_model(ops: &[Op], dir: &Path) {
        let path = dir.join("img");
        let _ = std::fs::remove_file(&path);
        let mut model: Vec<u8> = Vec::new();
        let mut size = 1 << 20;
        let mut records: Vec<(Record, Vec<u8>)> = Vec::new();
        let flush = |records: &mut Vec<(Record, Vec<u8>)>, size: u64| {
            records.insert(0, (Record::Size(size), vec![]));
            records.push((Record::End, vec![]));
            apply_bytes(&path, &stream(records), Mode::Incremental).unwrap();
            records.clear();
        };
        model.resize(size as usize, 0);
        for op in ops {
            match *op {
                Op::Size(new) => {
                    flush(&mut records, size);
                    size = new;
                    model.resize(size as usize, 0);
                }
                Op::Write(o, ..) | Op::Zero(o, _) if o >= size => {}
                Op::Write(o, l, b) => {
                    let l = l.min(size - o);
                    let data: Vec<u8> = (0..l).map(|i| b.wrapping_add((i % 7) as u8)).collect();
                    model[o as usize..(o + l) as usize].copy_from_slice(&data);
                    records.push((Record::Write { offset: o, len: l }, data));
                }
                Op::Zero(o, l) => {
                    let l = l.min(size - o);
                    model[o as usize..(o + l) as usize].fill(0);
                    records.push((Record::Zero { offset: o, len: l }, vec![]));
                }
            }
        }
        flush(&mut records, size);
        assert!(
            std::fs::read(&path).unwrap() == model,
            "incremental result differs from the model"
        );

        // A full export of the model over whatever the file holds now (junk added) gives the
        // model again; its records are the model's non-zero runs, in order.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"junk", size / 3).unwrap();
        drop(f);
        let mut records = vec![(Record::Size(size), vec![])];
        let mut i = 0;
        while i < model.len() {
            if model[i] == 0 {
                i += 1;
                continue;
            }
            let j = (i..model.len())
                .find(|&j| model[j] == 0)
                .unwrap_or(model.len());
            let r = Record::Write {
                offset: i as u64,
                len: (j - i) as u64,
            };
            records.push((r, model[i..j].to_vec()));
            i = j;
        }
        records.push((Record::End, vec![]));
        apply_bytes(&path, &stream(&records), Mode::Full).unwrap();
        assert!(
            std::fs::read(&path).unwrap() == model,
            "full result differs from the model"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        #[test]
        fn random_streams_leave_the_file_equal_to_a_model(ops in arb_ops()) {
            let dir = tempfile::tempdir().unwrap();
            check_against_model(&ops, dir.path());
        }
    }
}
