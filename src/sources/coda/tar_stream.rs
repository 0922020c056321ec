//! Reading a dump as a tar stream, strictly (BUG-C10).
//!
//! The `tar` crate parses the headers (and checks their checksums), but it is lenient about the
//! end: a stream that stops exactly between two members, or after a single zero block, counts
//! as finished for it, and a member's data that stops early just reads short. For a full dump
//! that leniency would let the GC delete every file the truncated stream never reached. So the
//! stream is wrapped in [`Tracked`], which notices the underlying end of file, and
//! [`for_each_entry`] accepts the stream only when the crate stopped at a zero block that is
//! followed by a second one (the end-of-archive marker) and nothing but zero padding after it.
//! Entries are read raw (no GNU or pax extension processing), so such headers reach the caller
//! as the unexpected types they are for codadump2tar's plain ustar.

use std::io::{self, Read};

/// Size of a tar block.
const BLOCK: usize = 512;

/// Something wrong with the stream itself: truncated, garbled, or not ended properly. A dump
/// attempt that ends with this is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("damaged dump stream: {0}")]
pub struct Damaged(pub String);

/// A reader that remembers whether it reached the end of its input, and how far it read.
#[derive(Debug)]
pub struct Tracked<R> {
    inner: R,
    /// Bytes read so far.
    pub position: u64,
    /// Whether a read returned end of file.
    pub eof: bool,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        self.position += n as u64;
        Ok(n)
    }
}

/// One entry of the stream, as the `tar` crate gives it.
pub type Entry<'a, R> = tar::Entry<'a, Tracked<R>>;

/// Calls `apply` for every entry of the tar stream `reader`, in order, then checks the end of
/// the archive (see the module doc). `apply` must report a short read of an entry's data as
/// [`Damaged`] (see [`read_data`]). Stops at the first error of either kind.
pub fn for_each_entry<R, E>(
    reader: R,
    mut apply: impl FnMut(&mut Entry<'_, R>) -> Result<(), E>,
) -> Result<(), E>
where
    R: Read,
    E: From<Damaged>,
{
    let mut archive = tar::Archive::new(Tracked {
        inner: reader,
        position: 0,
        eof: false,
    });
    {
        let entries = archive.entries().map_err(|e| damaged("reading", &e))?;
        for entry in entries.raw(true) {
            let mut entry = entry.map_err(|e| damaged("reading a header", &e))?;
            apply(&mut entry)?;
        }
    }
    check_end(archive.into_inner())?;
    Ok(())
}

/// After the `tar` crate stopped: it must have stopped at a zero block, followed by another
/// one, and then only zero padding up to the end of the stream.
fn check_end<R: Read>(mut rest: Tracked<R>) -> Result<(), Damaged> {
    if rest.eof {
        return Err(Damaged(if rest.position == 0 {
            "the stream was empty (the dump produced no output)".to_string()
        } else {
            format!(
                "the stream ended after {} bytes without the end-of-archive marker (two zero \
                 blocks): the dump was cut short",
                rest.position
            )
        }));
    }
    let mut block = [0u8; BLOCK];
    read_block(&mut rest, &mut block)
        .map_err(|e| damaged("reading the end-of-archive marker", &e))?;
    if block.iter().any(|&b| b != 0) {
        return Err(Damaged(format!(
            "a zero block at byte {} is followed by data instead of the second block of the \
             end-of-archive marker",
            rest.position - BLOCK as u64 * 2
        )));
    }
    let mut buf = [0u8; 8192];
    loop {
        let n = rest
            .read(&mut buf)
            .map_err(|e| damaged("reading after the end-of-archive marker", &e))?;
        if n == 0 {
            return Ok(());
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(Damaged(
                "non-zero data follows the end-of-archive marker (a tool printed into the dump \
                 stream?)"
                    .to_string(),
            ));
        }
    }
}

/// Reads a whole block; a short one is an error.
fn read_block(reader: &mut impl Read, block: &mut [u8]) -> io::Result<()> {
    reader.read_exact(block).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(e.kind(), "the stream ends inside it")
        } else {
            e
        }
    })
}

/// Reads an entry's data in pieces, handing each to `sink`, and checks that exactly the size
/// the header announced arrived. A read error or a short read is [`Damaged`]; `sink`'s own
/// errors are returned as they are.
pub fn read_data<R: Read, E: From<Damaged>>(
    entry: &mut Entry<'_, R>,
    name: &str,
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let size = entry.size();
    // Sized to the entry: most files are small, and a fresh 256 KiB per entry is a page-mapping
    // round trip for each of them.
    let mut buf = vec![0u8; size.min(256 * 1024) as usize];
    let mut got = 0u64;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(damaged(&format!("reading the data of {name}"), &e).into()),
        };
        if n == 0 {
            break;
        }
        got += n as u64;
        sink(&buf[..n])?;
    }
    if got != size {
        return Err(Damaged(format!(
            "premature end of stream in the data of {name}: {got} of {size} bytes"
        ))
        .into());
    }
    Ok(got)
}

fn damaged(what: &str, e: &io::Error) -> Damaged {
    Damaged(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small ustar archive: a directory and a file with `data`, and the end marker.
    fn archive(data: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_ustar();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_path("./").unwrap();
        dir.set_mode(0o755);
        dir.set_size(0);
        dir.set_cksum();
        builder.append(&dir, io::empty()).unwrap();
        let mut file = tar::Header::new_ustar();
        file.set_path("./f").unwrap();
        file.set_size(data.len() as u64);
        file.set_mode(0o644);
        file.set_cksum();
        builder.append(&file, data).unwrap();
        builder.into_inner().unwrap()
    }

    /// Names and data of every entry, or the error.
    fn read_all(stream: &[u8]) -> Result<Vec<(String, Vec<u8>)>, Damaged> {
        let mut seen = Vec::new();
        for_each_entry(stream, |entry| {
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let mut data = Vec::new();
            read_data(entry, &name, |piece| {
                data.extend_from_slice(piece);
                Ok::<(), Damaged>(())
            })?;
            seen.push((name, data));
            Ok(())
        })?;
        Ok(seen)
    }

    #[test]
    fn a_complete_archive_is_read_with_its_padding() {
        let stream = archive(b"hello");
        assert_eq!(
            stream.len(),
            512 * 3 + 512 * 2,
            "two headers, a data block, the marker"
        );
        let seen = read_all(&stream).unwrap();
        assert_eq!(
            seen,
            [("./".into(), vec![]), ("f".into(), b"hello".to_vec())]
        );
        // Zero padding to a 10 KiB record (GNU tar's habit) is fine too.
        let mut padded = stream.clone();
        padded.resize(10240, 0);
        assert_eq!(read_all(&padded).unwrap().len(), 2);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let stream = archive(&[7u8; 1500]);
        let end_of_data = 512 * 2 + 1536;
        // Anywhere before the second zero block: inside a header, inside the data, between
        // members, after the first zero block.
        for cut in [
            0,
            1,
            100,
            512,
            700,
            1024,
            1500,
            end_of_data,
            end_of_data + 512,
        ] {
            let err = read_all(&stream[..cut]).unwrap_err();
            assert!(!err.0.is_empty(), "cut at {cut}");
        }
        assert!(read_all(&[]).unwrap_err().0.contains("empty"));
        let err = read_all(&stream[..1500]).unwrap_err().0;
        assert!(err.contains("premature end"), "{err}");
        let err = read_all(&stream[..end_of_data]).unwrap_err().0;
        assert!(err.contains("end-of-archive marker"), "{err}");
    }

    #[test]
    fn garbage_after_the_first_header_or_the_end_is_an_error() {
        let mut stream = archive(b"hello");
        stream[600..700].fill(b'x');
        let err = read_all(&stream[..]).unwrap_err().0;
        assert!(err.contains("reading a header"), "{err}");
        let mut stream = archive(b"hello");
        stream[520] ^= 1;
        let err = read_all(&stream[..]).unwrap_err().0;
        assert!(err.contains("checksum mismatch"), "{err}");

        let mut stream = archive(b"hello");
        let end = 512 * 3;
        stream[end + 512 + 3] = b'!';
        let err = read_all(&stream).unwrap_err().0;
        assert!(err.contains("second block"), "{err}");

        let mut stream = archive(b"hello");
        stream.extend_from_slice(b"usage: codadump2tar ...");
        let err = read_all(&stream).unwrap_err().0;
        assert!(err.contains("follows the end-of-archive"), "{err}");
    }
}
