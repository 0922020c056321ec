//! The `rbd export-diff` v1 stream (github-rgw-rbd.md §3.4): a strict streaming reader and a
//! writer (for tests and benchmarks).
//!
//! The reader never hangs and never guesses: every field is read with an exact-length read, so
//! a stream that ends early is [`DiffError::Truncated`] wherever it ends (the original looped
//! forever inside a `w` record); an unknown tag, a record past the image size, an offset that
//! overflows, a second size record or a byte after the end record are errors too. Data is never
//! buffered by the reader: the caller pulls a `w` record's bytes in chunks of its own size
//! ([`DiffReader::read_data`]), so memory stays constant whatever the image size.

use std::io::{self, Read, Write};

/// The stream header.
pub const MAGIC: &[u8; 12] = b"rbd diff v1\n";
/// The header of the v2 format (`rbd export --export-format 2` only), recognised to say so.
const MAGIC_V2: &[u8; 12] = b"rbd diff v2\n";
/// Longest snapshot name accepted in `f`/`t` records (a corrupt length must not allocate GiBs).
pub const MAX_NAME: u32 = 4096;

/// One record of the stream. A `Write`'s data follows it and is read with
/// [`DiffReader::read_data`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// `f`: the snapshot the diff starts from.
    FromSnap(String),
    /// `t`: the snapshot the diff leads to.
    ToSnap(String),
    /// `s`: the image size at the end snapshot.
    Size(u64),
    /// `w`: `len` bytes of data at `offset`.
    Write {
        /// Byte offset in the image.
        offset: u64,
        /// Number of data bytes that follow.
        len: u64,
    },
    /// `z`: the range reads as zeros (discarded or unallocated).
    Zero {
        /// Byte offset in the image.
        offset: u64,
        /// Length of the range.
        len: u64,
    },
    /// `e`: the end; nothing may follow.
    End,
}

/// A malformed or unreadable stream. Positions are byte offsets in the stream.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The stream does not start with `rbd diff v1\n`.
    #[error("not an rbd export-diff stream: missing the `rbd diff v1` magic string")]
    Magic,
    /// A v2 stream (not produced by `export-diff`).
    #[error("rbd diff v2 streams (from `rbd export --export-format 2`) are not supported")]
    V2,
    /// The stream ended before the end record.
    #[error("export-diff stream truncated {what} (at stream byte {pos})")]
    Truncated {
        /// Where it ended ("inside a write record at image offset 4096").
        what: String,
        /// Stream bytes read so far.
        pos: u64,
    },
    /// A record tag that v1 does not have.
    #[error("unknown export-diff record type 0x{tag:02x} at stream byte {pos}")]
    UnknownTag {
        /// The tag byte.
        tag: u8,
        /// Its position.
        pos: u64,
    },
    /// A record whose fields are impossible.
    #[error("invalid export-diff record at stream byte {pos}: {message}")]
    Invalid {
        /// What is wrong.
        message: String,
        /// Position of the record's tag.
        pos: u64,
    },
    /// Bytes after the end record.
    #[error("export-diff stream has data after its end record (at stream byte {pos})")]
    Trailing {
        /// Position of the first extra byte.
        pos: u64,
    },
    /// A read error of the underlying stream.
    #[error("reading the export-diff stream: {0}")]
    Io(#[from] io::Error),
}

/// A strict streaming reader of a v1 stream; see the module doc.
pub struct DiffReader<R> {
    inner: R,
    pos: u64,
    size: Option<u64>,
    /// Data bytes of the current `w` record not yet read, and the record's image offset.
    data_left: u64,
    data_offset: u64,
    ended: bool,
}

impl<R: Read> DiffReader<R> {
    /// Reads and checks the header.
    pub fn new(inner: R) -> Result<Self, DiffError> {
        let mut reader = DiffReader {
            inner,
            pos: 0,
            size: None,
            data_left: 0,
            data_offset: 0,
            ended: false,
        };
        let mut magic = [0u8; 12];
        match reader.exact(&mut magic, "in the header") {
            Err(DiffError::Truncated { .. }) => return Err(DiffError::Magic),
            other => other?,
        }
        if &magic == MAGIC_V2 {
            return Err(DiffError::V2);
        }
        if &magic != MAGIC {
            return Err(DiffError::Magic);
        }
        Ok(reader)
    }

    /// Stream bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The image size, once the `s` record was read.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// The next record. Unread data of a previous `w` record is skipped first. After
    /// [`Record::End`] (which is only returned when the stream ends right there) this is an
    /// error.
    pub fn next_record(&mut self) -> Result<Record, DiffError> {
        if self.ended {
            return Err(DiffError::Invalid {
                message: "record requested after the end record".into(),
                pos: self.pos,
            });
        }
        self.skip_data()?;
        let start = self.pos;
        let mut tag = [0u8; 1];
        self.exact(&mut tag, "before its end record")?;
        let invalid = |message: String| DiffError::Invalid {
            message,
            pos: start,
        };
        let record = match tag[0] {
            b'f' => Record::FromSnap(self.name("from-snapshot")?),
            b't' => Record::ToSnap(self.name("to-snapshot")?),
            b's' => {
                let size = self.u64("in a size record")?;
                if self.size.is_some() {
                    return Err(invalid("a second size record".into()));
                }
                self.size = Some(size);
                Record::Size(size)
            }
            b'w' | b'z' => {
                let what = if tag[0] == b'w' { "write" } else { "zero" };
                let offset = self.u64(&format!("in a {what} record header"))?;
                let len = self.u64(&format!("in a {what} record header"))?;
                let end = offset.checked_add(len).ok_or_else(|| {
                    invalid(format!("{what} range {offset}+{len} overflows 64 bits"))
                })?;
                if let Some(size) = self.size
                    && end > size
                {
                    return Err(invalid(format!(
                        "{what} range {offset}+{len} ends past the image size {size}"
                    )));
                }
                if tag[0] == b'w' {
                    self.data_left = len;
                    self.data_offset = offset;
                    Record::Write { offset, len }
                } else {
                    Record::Zero { offset, len }
                }
            }
            b'e' => {
                let mut extra = [0u8; 1];
                if read_some(&mut self.inner, &mut extra)? != 0 {
                    return Err(DiffError::Trailing { pos: self.pos });
                }
                self.ended = true;
                Record::End
            }
            other => {
                return Err(DiffError::UnknownTag {
                    tag: other,
                    pos: start,
                });
            }
        };
        Ok(record)
    }

    /// Reads the next data bytes of the current `w` record into the front of `buf` (up to its
    /// length); returns how many (0 once the record's data is exhausted). Never a short read
    /// inside the record: a stream that ends there is [`DiffError::Truncated`].
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, DiffError> {
        let n = usize::try_from(self.data_left).map_or(buf.len(), |left| left.min(buf.len()));
        if n == 0 {
            return Ok(0);
        }
        let at = self.data_offset;
        self.exact(
            &mut buf[..n],
            &format!("inside a write record at image offset {at}"),
        )?;
        self.data_left -= n as u64;
        self.data_offset += n as u64;
        Ok(n)
    }

    /// Reads every remaining record to the end, checking the whole stream; returns the number of
    /// data bytes (`w` payload) seen.
    pub fn drain(&mut self) -> Result<u64, DiffError> {
        let mut data = 0;
        loop {
            match self.next_record()? {
                Record::Write { len, .. } => data += len,
                Record::End => return Ok(data),
                _ => {}
            }
        }
    }

    fn skip_data(&mut self) -> Result<(), DiffError> {
        let mut scratch = [0u8; 65536];
        while self.data_left > 0 {
            self.read_data(&mut scratch)?;
        }
        Ok(())
    }

    fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), DiffError> {
        let mut filled = 0;
        while filled < buf.len() {
            let n = read_some(&mut self.inner, &mut buf[filled..])?;
            if n == 0 {
                return Err(DiffError::Truncated {
                    what: what.to_string(),
                    pos: self.pos,
                });
            }
            filled += n;
            self.pos += n as u64;
        }
        Ok(())
    }

    fn u64(&mut self, what: &str) -> Result<u64, DiffError> {
        let mut bytes = [0u8; 8];
        self.exact(&mut bytes, what)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn name(&mut self, what: &str) -> Result<String, DiffError> {
        let start = self.pos - 1;
        let mut len = [0u8; 4];
        self.exact(&mut len, &format!("in a {what} record"))?;
        let len = u32::from_le_bytes(len);
        if len > MAX_NAME {
            return Err(DiffError::Invalid {
                message: format!("{what} name of {len} bytes"),
                pos: start,
            });
        }
        let mut name = vec![0u8; len as usize];
        self.exact(&mut name, &format!("in a {what} name"))?;
        String::from_utf8(name).map_err(|_| DiffError::Invalid {
            message: format!("{what} name is not UTF-8"),
            pos: start,
        })
    }
}

/// One `read`, retried on EINTR.
fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Writes a v1 stream record by record (tests, benchmarks, fault injection).
pub struct DiffWriter<W: Write> {
    inner: W,
}

impl<W: Write> DiffWriter<W> {
    /// Starts a stream: writes the header.
    pub fn new(mut inner: W) -> io::Result<Self> {
        inner.write_all(MAGIC)?;
        Ok(DiffWriter { inner })
    }

    /// Writes one record; for [`Record::Write`], `data` must hold exactly `len` bytes (it is
    /// ignored for other records).
    pub fn record(&mut self, record: &Record, data: &[u8]) -> io::Result<()> {
        let w = &mut self.inner;
        match record {
            Record::FromSnap(name) | Record::ToSnap(name) => {
                let tag = if matches!(record, Record::FromSnap(_)) {
                    b'f'
                } else {
                    b't'
                };
                let len = u32::try_from(name.len()).map_err(io::Error::other)?;
                w.write_all(&[tag])?;
                w.write_all(&len.to_le_bytes())?;
                w.write_all(name.as_bytes())
            }
            Record::Size(size) => {
                w.write_all(b"s")?;
                w.write_all(&size.to_le_bytes())
            }
            Record::Write { offset, len } | Record::Zero { offset, len } => {
                let write = matches!(record, Record::Write { .. });
                w.write_all(if write { b"w" } else { b"z" })?;
                w.write_all(&offset.to_le_bytes())?;
                w.write_all(&len.to_le_bytes())?;
                if write {
                    if data.len() as u64 != *len {
                        return Err(io::Error::other("write record data length mismatch"));
                    }
                    w.write_all(data)?;
                }
                Ok(())
            }
            Record::End => w.write_all(b"e"),
        }
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Stream building and the recorded streams, for the rbd source's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{DiffWriter, Record};

    /// A stream of `items` (each record with its data, empty but for `Write`).
    pub(crate) fn stream(items: &[(Record, Vec<u8>)]) -> Vec<u8> {
        let mut w = DiffWriter::new(Vec::new()).unwrap();
        for (record, data) in items {
            w.record(record, data).unwrap();
        }
        w.into_inner()
    }

    /// The recorded stream `name` of `shared/fixtures/rbd`.
    pub(crate) fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/rbd")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{fixture, stream};
    use super::*;
    use proptest::prelude::*;

    /// A record with its data, for building streams.
    type Item = (Record, Vec<u8>);

    /// Reads a whole stream back into items.
    fn read_all(bytes: &[u8]) -> Result<Vec<Item>, DiffError> {
        let mut r = DiffReader::new(bytes)?;
        let mut items = Vec::new();
        loop {
            let record = r.next_record()?;
            let mut data = Vec::new();
            if let Record::Write { .. } = record {
                let mut buf = [0u8; 3];
                loop {
                    let n = r.read_data(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..n]);
                }
            }
            let end = record == Record::End;
            items.push((record, data));
            if end {
                return Ok(items);
            }
        }
    }

    fn w(offset: u64, data: &[u8]) -> Item {
        (
            Record::Write {
                offset,
                len: data.len() as u64,
            },
            data.to_vec(),
        )
    }

    fn sample() -> Vec<Item> {
        vec![
            (Record::FromSnap("s1".into()), vec![]),
            (Record::ToSnap("s2".into()), vec![]),
            (Record::Size(65536), vec![]),
            w(1024, &[b'C'; 512]),
            (
                Record::Zero {
                    offset: 4096,
                    len: 4096,
                },
                vec![],
            ),
            (Record::End, vec![]),
        ]
    }

    #[test]
    fn every_tag_round_trips_little_endian() {
        let bytes = stream(&sample());
        assert_eq!(&bytes[..12], MAGIC);
        // f + u32le 2 + "s1"
        assert_eq!(&bytes[12..19], b"f\x02\x00\x00\x00s1");
        assert_eq!(read_all(&bytes).unwrap(), sample());
    }

    #[test]
    fn the_real_shrink_only_stream_parses() {
        let bytes = fixture("t-s3-s4.diff");
        let items = read_all(&bytes).unwrap();
        assert_eq!(
            items.iter().map(|i| i.0.clone()).collect::<Vec<_>>(),
            [
                Record::FromSnap("s3".into()),
                Record::ToSnap("s4".into()),
                Record::Size(49152),
                Record::End
            ]
        );
    }

    #[test]
    fn malformed_streams_are_clean_errors() {
        assert!(matches!(
            DiffReader::new(&b"rbd diff v0\n"[..]),
            Err(DiffError::Magic)
        ));
        assert!(matches!(
            DiffReader::new(&b"rbd"[..]),
            Err(DiffError::Magic)
        ));
        assert!(matches!(
            DiffReader::new(&b"rbd diff v2\n"[..]),
            Err(DiffError::V2)
        ));
        let mut bytes = stream(&sample());
        bytes.push(b'x');
        assert!(matches!(read_all(&bytes), Err(DiffError::Trailing { .. })));
        let mut unknown = stream(&sample()[..3]);
        unknown.push(b'q');
        assert!(matches!(
            read_all(&unknown),
            Err(DiffError::UnknownTag { tag: b'q', .. })
        ));
        let past = stream(&[(Record::Size(100), vec![]), w(90, &[1; 11])]);
        assert!(matches!(read_all(&past), Err(DiffError::Invalid { .. })));
        let overflow = stream(&[(
            Record::Zero {
                offset: u64::MAX,
                len: 2,
            },
            vec![],
        )]);
        assert!(matches!(
            read_all(&overflow),
            Err(DiffError::Invalid { .. })
        ));
        let two_sizes = stream(&[(Record::Size(1), vec![]), (Record::Size(2), vec![])]);
        assert!(matches!(
            read_all(&two_sizes),
            Err(DiffError::Invalid { .. })
        ));
        let mut huge_name = MAGIC.to_vec();
        huge_name.extend_from_slice(b"t\xff\xff\xff\xff");
        assert!(matches!(
            read_all(&huge_name),
            Err(DiffError::Invalid { .. })
        ));
    }

    #[test]
    fn truncation_at_every_byte_of_every_real_stream_is_an_error() {
        for name in [
            "t-s1.diff",
            "t-s1-s2.diff",
            "t-s1-s2-whole.diff",
            "t-s2-s3.diff",
            "t-s3-s4.diff",
            "t-s4.diff",
        ] {
            let bytes = fixture(name);
            read_all(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            for cut in 0..bytes.len() {
                let err = read_all(&bytes[..cut]).expect_err("truncated stream accepted");
                assert!(
                    matches!(err, DiffError::Truncated { .. } | DiffError::Magic),
                    "{name} cut at {cut}: {err}"
                );
            }
        }
    }

    /// A reader that hands out one byte at a time and then fails, as a dying pipe might.
    struct Failing<'a>(&'a [u8]);
    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.split_first() {
                Some((b, rest)) if !buf.is_empty() => {
                    buf[0] = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Err(io::Error::other("pipe broke")),
            }
        }
    }

    #[test]
    fn short_reads_are_assembled_and_read_errors_surface() {
        let bytes = stream(&sample());
        let mut r = DiffReader::new(Failing(&bytes)).unwrap();
        let err = r.drain().unwrap_err();
        assert!(matches!(err, DiffError::Io(_)), "{err}");
        let mut r = DiffReader::new(&bytes[..]).unwrap();
        assert_eq!(r.drain().unwrap(), 512);
        assert!(r.next_record().is_err(), "nothing after the end");
    }

    fn arb_items() -> impl Strategy<Value = Vec<Item>> {
        let record = prop_oneof![
            "[a-z0-9-]{0,12}".prop_map(|n| (Record::FromSnap(n), vec![])),
            "[a-z0-9-]{0,12}".prop_map(|n| (Record::ToSnap(n), vec![])),
            (0u64..1 << 20, proptest::collection::vec(any::<u8>(), 0..64))
                .prop_map(|(o, d)| w(o, &d)),
            (0u64..1 << 20, 0u64..1 << 20)
                .prop_map(|(offset, len)| (Record::Zero { offset, len }, vec![])),
        ];
        proptest::collection::vec(record, 0..12).prop_map(|mut items| {
            items.insert(0, (Record::Size(1 << 21), vec![]));
            items.push((Record::End, vec![]));
            items
        })
    }

    proptest! {
        #[test]
        fn random_record_sequences_round_trip(items in arb_items()) {
            let bytes = stream(&items);
            prop_assert_eq!(read_all(&bytes).unwrap(), items);
        }

        #[test]
        fn random_truncation_is_always_an_error(items in arb_items(), cut in any::<prop::sample::Index>()) {
            let bytes = stream(&items);
            let cut = cut.index(bytes.len());
            prop_assert!(read_all(&bytes[..cut]).is_err());
        }

        #[test]
        fn random_bytes_never_panic_or_hang(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&tail);
            let _ = read_all(&bytes);
        }
    }
}
