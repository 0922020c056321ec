//! rsync's stdout, read as bytes (BUG-23: file names need not be UTF-8): the output filter of
//! core-rsync-coda.md §9.4 and the figures a run reports (files transferred, bytes, D6 scrub
//! mismatches).
//!
//! * [`keep_line`] drops itemized lines whose only change is xattrs (`^[.h][dfL]\.{8}x `,
//!   samba bugzilla 10496) and trims the others, as the original.
//! * [`Itemized`] parses one `-i` line (`YXcstpoguax path`).
//! * [`OutputSummary`] counts received files and scrub mismatches, and reads `--stats`.
//! * [`for_each_line`] splits a stream into lines of bounded length (a remote host chooses
//!   the file names, so no line may grow without limit).

use std::io::{self, BufRead};

/// Longest line handed on in one piece; longer ones are split (no path is this long).
pub const MAX_LINE: usize = 64 * 1024;

/// Calls `f` with each line of `reader` (without its `\n`); lines longer than [`MAX_LINE`]
/// are passed in pieces. Reads until end of file.
pub fn for_each_line<R: BufRead>(mut reader: R, mut f: impl FnMut(&[u8])) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if !line.is_empty() {
                f(&line);
            }
            return Ok(());
        }
        let room = MAX_LINE - line.len();
        let window = &buf[..buf.len().min(room)];
        let (used, complete) = match window.iter().position(|&b| b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&window[..i]);
                (i + 1, true)
            }
            None => {
                line.extend_from_slice(window);
                (window.len(), line.len() == MAX_LINE)
            }
        };
        reader.consume(used);
        if complete {
            f(&line);
            line.clear();
        }
    }
}

/// The output filter: `None` to drop the line, else the line without surrounding whitespace.
pub fn keep_line(line: &[u8]) -> Option<&[u8]> {
    if is_xattr_only_change(line) {
        return None;
    }
    Some(line.trim_ascii())
}

/// `^[.h][dfL]\.{8}x `: an itemized line whose only change is xattrs.
fn is_xattr_only_change(line: &[u8]) -> bool {
    line.len() >= 12
        && matches!(line[0], b'.' | b'h')
        && matches!(line[1], b'd' | b'f' | b'L')
        && line[2..10].iter().all(|&b| b == b'.')
        && line[10] == b'x'
        && line[11] == b' '
}

/// One line of rsync's `--itemize-changes` output: `YXcstpoguax path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Itemized<'a> {
    /// What happened: `>` received, `<` sent, `c` created locally, `h` hard link, `.` attributes
    /// only.
    pub update: u8,
    /// The file type: `f` file, `d` directory, `L` symlink, `D` device, `S` special file.
    pub file_type: u8,
    /// The nine attribute columns `cstpoguax`.
    pub attributes: &'a [u8],
    /// The path (with ` -> target` or ` => target` for links).
    pub path: &'a [u8],
}

impl<'a> Itemized<'a> {
    /// Parses an itemized line; `None` for anything else (stats, messages, `*deleting`).
    pub fn parse(line: &'a [u8]) -> Option<Itemized<'a>> {
        if line.len() < 13 || line[11] != b' ' {
            return None;
        }
        let update = line[0];
        let file_type = line[1];
        let attributes = &line[2..11];
        let column_ok = |b: &u8| b" .+?cstTpoguanbx".contains(b);
        (b"<>ch.".contains(&update)
            && b"fdLDS".contains(&file_type)
            && attributes.iter().all(column_ok))
        .then_some(Itemized {
            update,
            file_type,
            attributes,
            path: &line[12..],
        })
    }

    /// A regular file whose data was transferred (received, or sent by a restore).
    pub fn is_file_transfer(&self) -> bool {
        matches!(self.update, b'>' | b'<') && self.file_type == b'f'
    }

    /// Whether rsync changes (or, in a dry run, would change) an existing regular file through
    /// its inode: its data (`>f`), or any attribute (`.f` with a change column set: times,
    /// permissions, owner, group, ACLs, xattrs). A hard link made by `-H` (`hf`) replaces the
    /// name instead, and a new file (`+++++++++`) has no inode yet to write through.
    pub fn changes_existing_file(&self) -> bool {
        let changed = |b: &u8| !matches!(b, b'.' | b' ' | b'+');
        self.file_type == b'f'
            && match self.update {
                b'>' | b'<' => self.attributes[0] != b'+',
                b'.' | b'c' => self.attributes.iter().any(changed),
                _ => false,
            }
    }

    /// The path as bytes on disk, relative to the destination: rsync's `\#ooo` escapes of
    /// unprintable bytes undone, and the leading `/` that `-R` prints removed. Only for lines
    /// without a link target (` -> `, ` => `), that is, not `L` or `h` lines.
    pub fn relative_path(&self) -> Vec<u8> {
        let path = unescape(self.path);
        match path.iter().position(|&b| b != b'/') {
            Some(start) => path[start..].to_vec(),
            None => Vec::new(),
        }
    }

    /// A scrub mismatch (D6): a file rewritten because its checksum differed although its size
    /// and modification time matched (`c` set, neither `s` nor `t`/`T`).
    pub fn is_scrub_mismatch(&self) -> bool {
        self.is_file_transfer()
            && self.attributes[0] == b'c'
            && self.attributes[1] != b's'
            && !matches!(self.attributes[2], b't' | b'T')
    }
}

/// Undoes rsync's escaping of file names in its output: `\#ooo` (three octal digits) stands for
/// the byte `ooo`; rsync writes unprintable bytes, and a `\` followed by `#`, that way.
pub fn unescape(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        let octal = |b: u8| (b'0'..=b'7').contains(&b);
        if name[i] == b'\\'
            && name.get(i + 1) == Some(&b'#')
            && name.len() >= i + 5
            && name[i + 2..i + 5].iter().all(|&b| octal(b))
            && name[i + 2] <= b'3'
        {
            let value = name[i + 2..i + 5]
                .iter()
                .fold(0u8, |acc, &b| (acc << 3) | (b - b'0'));
            out.push(value);
            i += 5;
        } else {
            out.push(name[i]);
            i += 1;
        }
    }
    out
}

/// What a run's output says it did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputSummary {
    /// Regular files whose data was transferred.
    pub files_transferred: u64,
    /// `Total transferred file size` from `--stats`, if rsync printed it.
    pub bytes_transferred: Option<u64>,
    /// Paths of the scrub mismatches, as rsync printed them.
    pub scrub_mismatches: Vec<Vec<u8>>,
}

impl OutputSummary {
    /// Takes one line of rsync's stdout into account.
    pub fn observe(&mut self, line: &[u8]) {
        if let Some(item) = Itemized::parse(line) {
            if item.is_file_transfer() {
                self.files_transferred += 1;
            }
            if item.is_scrub_mismatch() {
                self.scrub_mismatches.push(item.path.to_vec());
            }
        } else if let Some(bytes) = stats_number(line, "Total transferred file size:") {
            self.bytes_transferred = Some(bytes);
        }
    }

    /// Adds the figures of another attempt (the fallback run after a failed first one).
    pub fn absorb(&mut self, other: OutputSummary) {
        self.files_transferred += other.files_transferred;
        self.bytes_transferred = match (self.bytes_transferred, other.bytes_transferred) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.scrub_mismatches.extend(other.scrub_mismatches);
    }
}

/// Reads `<label> N bytes` from a `--stats` line. rsync ≥ 3.1 groups digits with the locale's
/// separator (`1,234,567`, or `1.234.567` where the decimal point is a comma).
pub fn stats_number(line: &[u8], label: &str) -> Option<u64> {
    let rest = line.trim_ascii().strip_prefix(label.as_bytes())?;
    let rest = rest.trim_ascii();
    let number = rest.strip_suffix(b"bytes").unwrap_or(rest).trim_ascii();
    if number.is_empty() || !number[0].is_ascii_digit() {
        return None;
    }
    let mut value: u64 = 0;
    for &b in number {
        match b {
            b'0'..=b'9' => value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?,
            b',' | b'.' | b'\'' | b'_' => {}
            _ => return None,
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattr_only_lines_are_dropped_and_others_trimmed() {
        assert_eq!(keep_line(b".f........x foo"), None);
        assert_eq!(keep_line(b"hf........x bar"), None);
        assert_eq!(keep_line(b".d........x some dir/"), None);
        assert_eq!(keep_line(b".L........x link"), None);
        assert_eq!(keep_line(b">f+++++++++ baz"), Some(&b">f+++++++++ baz"[..]));
        assert_eq!(keep_line(b".f.......ax acl"), Some(&b".f.......ax acl"[..]));
        assert_eq!(keep_line(b"cL........x new"), Some(&b"cL........x new"[..]));
        assert_eq!(keep_line(b"  sent 1 bytes \r"), Some(&b"sent 1 bytes"[..]));
        assert_eq!(
            keep_line(b"\xff\xfe odd \xc3"),
            Some(&b"\xff\xfe odd \xc3"[..])
        );
    }

    #[test]
    fn itemized_lines_parse_and_others_do_not() {
        let item = Itemized::parse(b">f.st...... etc/passwd").unwrap();
        assert_eq!((item.update, item.file_type), (b'>', b'f'));
        assert_eq!(item.attributes, b".st......");
        assert_eq!(item.path, b"etc/passwd");
        let link = Itemized::parse(b"hf          a => b").unwrap();
        assert_eq!(link.path, b"a => b");
        assert!(Itemized::parse(b"*deleting   old/file").is_none());
        assert!(Itemized::parse(b"Number of files: 5 (reg: 2, dir: 3)").is_none());
        assert!(Itemized::parse(b"created directory /x").is_none());
        assert!(Itemized::parse(b">f+++++++++").is_none());
    }

    #[test]
    fn scrub_mismatches_are_checksum_changes_without_size_or_time_changes() {
        let cases: &[(&[u8], bool, bool)] = &[
            // line, counts as a transferred file, counts as a scrub mismatch
            (b">fc........ a", true, true),
            (b">fc.....g.. b", true, true),
            (b">fcs....... c", true, false),
            (b">fc.t...... d", true, false),
            (b">fc.T...... e", true, false),
            (b">fcst...... f", true, false),
            (b">f.st...... g", true, false),
            (b">f+++++++++ h", true, false),
            (b".f..t...... i", false, false),
            (b"cd+++++++++ j/", false, false),
            (b"hf+++++++++ k => l", false, false),
            (b"<fc........ m", true, true),
        ];
        for &(line, transfer, mismatch) in cases {
            let item = Itemized::parse(line).unwrap();
            let text = String::from_utf8_lossy(line);
            assert_eq!(item.is_file_transfer(), transfer, "{text}");
            assert_eq!(item.is_scrub_mismatch(), mismatch, "{text}");
        }
    }

    #[test]
    fn stats_numbers_parse_with_and_without_separators() {
        let label = "Total transferred file size:";
        assert_eq!(
            stats_number(b"Total transferred file size: 6 bytes", label),
            Some(6)
        );
        assert_eq!(
            stats_number(b"Total transferred file size: 20,000,000 bytes", label),
            Some(20_000_000)
        );
        assert_eq!(
            stats_number(b"Total transferred file size: 1.234.567 bytes", label),
            Some(1_234_567)
        );
        assert_eq!(
            stats_number(b"Total transferred file size: 0 bytes", label),
            Some(0)
        );
        assert_eq!(
            stats_number(b"Total transferred file size: 1.5M bytes", label),
            None
        );
        assert_eq!(stats_number(b"Total file size: 12 bytes", label), None);
        assert_eq!(
            stats_number(
                b"Total transferred file size: 99999999999999999999999 bytes",
                label
            ),
            None
        );
    }

    #[test]
    fn a_summary_counts_files_bytes_and_mismatches() {
        let output: &[&[u8]] = &[
            b"cd+++++++++ srv/",
            b">f+++++++++ srv/new",
            b">fc........ srv/rotten",
            b".f........x srv/xattr-only",
            b"*deleting   srv/gone",
            b"Number of regular files transferred: 2",
            b"Total file size: 9,999 bytes",
            b"Total transferred file size: 1,024 bytes",
        ];
        let mut summary = OutputSummary::default();
        for line in output {
            summary.observe(line);
        }
        assert_eq!(summary.files_transferred, 2);
        assert_eq!(summary.bytes_transferred, Some(1024));
        assert_eq!(summary.scrub_mismatches, vec![b"srv/rotten".to_vec()]);

        let mut first = OutputSummary {
            bytes_transferred: None,
            ..Default::default()
        };
        first.absorb(summary.clone());
        assert_eq!(first, summary);
    }

    #[test]
    fn lines_are_split_at_newlines_and_bounded_in_length() {
        let mut input = b"one\n\ntwo\r\nlast".to_vec();
        let mut lines = Vec::new();
        for_each_line(&input[..], |l| lines.push(l.to_vec())).unwrap();
        assert_eq!(lines, [&b"one"[..], b"", b"two\r", b"last"]);

        input = vec![b'x'; MAX_LINE * 2 + 10];
        input.push(b'\n');
        let mut lengths = Vec::new();
        // A tiny buffer exercises lines that span many reads.
        let reader = io::BufReader::with_capacity(7, &input[..]);
        for_each_line(reader, |l| lengths.push(l.len())).unwrap();
        assert_eq!(lengths, [MAX_LINE, MAX_LINE, 10]);
    }

    #[test]
    fn rsync_escapes_in_names_are_undone() {
        assert_eq!(unescape(br"new\#012line"), b"new\nline");
        assert_eq!(unescape(br"hi\#377byte"), b"hi\xffbyte");
        assert_eq!(unescape(br"\#303\#251"), "é".as_bytes());
        // rsync escapes a backslash only before `#`.
        assert_eq!(unescape(br"x\#134#012y"), br"x\#012y");
        assert_eq!(unescape(br"back\x"), br"back\x");
        assert_eq!(unescape(br"back\#slash"), br"back\#slash");
        assert_eq!(unescape(br"short\#01"), br"short\#01");
        assert_eq!(unescape(br"\#477"), br"\#477");
        let item = Itemized::parse(br">f.s....... /tmp/a\#012b").unwrap();
        assert_eq!(item.relative_path(), b"tmp/a\nb");
        let item = Itemized::parse(b">f.s....... srv/x").unwrap();
        assert_eq!(item.relative_path(), b"srv/x");
    }

    #[test]
    fn changes_to_existing_files_are_recognised() {
        let cases: &[(&[u8], bool)] = &[
            (b">f.st...... a", true),
            (b">f..t...... a", true),
            (b">fc........ a", true),
            (b">f......... a", true),
            (b".f...p..... a", true),
            (b".f....og... a", true),
            (b".f........x a", true),
            (b".f.......a. a", true),
            (b".f..t...... a", true),
            (b">f+++++++++ new", false),
            (b"hf+++++++++ a => b", false),
            (b"hf          a => b", false),
            (b".d..t...... dir/", false),
            (b">fcst...... a", true),
            (b".L..t...... l -> x", false),
        ];
        for &(line, expected) in cases {
            let item = Itemized::parse(line).unwrap();
            assert_eq!(
                item.changes_existing_file(),
                expected,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
