//! The registry's canonical numbers, spilled to an unnamed file while the registry is read, so
//! that a build's memory holds only fixed 24-byte rows per number (issue 10).
//!
//! Entry `s` (0, 1, 2, … in the order valid rows were read, which is line order) is
//! `line (u32 LE) || length (u8) || the canonical encoding without its constant prefix`.
//! Entries are only ever read back in order ([`ArenaReader`]): once to fetch the few numbers
//! that repeat (reports of duplicates and conflicts), once to evaluate the numbers to add.
//! The file is a [`spill_file`]: it never has a name, so nothing is left behind if the build
//! stops in any way.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::spool::{BUFFER, PosReader, SecretWriter, read_record, spill_file};
use crate::error::ServerError;

/// Writes entries while the registry is read.
pub(super) struct ArenaWriter {
    out: SecretWriter,
    entries: u64,
    dir: PathBuf,
}

impl ArenaWriter {
    /// A new, empty arena in `dir` (the data directory's `epochs/`).
    pub(super) fn create(dir: &Path) -> Result<Self, ServerError> {
        Ok(ArenaWriter {
            out: SecretWriter::new(spill_file(dir)?, dir),
            entries: 0,
            dir: dir.to_path_buf(),
        })
    }

    /// Appends the number of registry line `line` (its canonical encoding without the prefix);
    /// returns the entry's sequence number.
    pub(super) fn push(&mut self, line: u32, body: &[u8]) -> Result<u32, ServerError> {
        let s = u32::try_from(self.entries).map_err(|_| ServerError::TooLarge {
            path: self.dir.clone(),
            reason: "more than 4294967295 valid registry rows".into(),
        })?;
        // Validation bounds every encoding far below 256 bytes (numbers.md §6).
        let len = u8::try_from(body.len()).map_err(|_| {
            ServerError::Internal("a canonical encoding longer than 255 bytes".into())
        })?;
        self.out.put(&line.to_le_bytes())?;
        self.out.put(&[len])?;
        self.out.put(body)?;
        self.entries += 1;
        Ok(s)
    }

    /// Ends writing.
    pub(super) fn finish(self) -> Result<Arena, ServerError> {
        let (file, _) = self.out.finish()?;
        Ok(Arena {
            file,
            entries: self.entries,
            dir: self.dir,
        })
    }
}

/// The written arena.
pub(super) struct Arena {
    file: File,
    entries: u64,
    dir: PathBuf,
}

impl Arena {
    /// Number of entries.
    pub(super) fn len(&self) -> u64 {
        self.entries
    }

    /// Reads the entries from the first, in order.
    pub(super) fn reader(&self) -> ArenaReader<'_> {
        ArenaReader {
            r: BufReader::with_capacity(BUFFER, PosReader::new(&self.file)),
            next: 0,
            left: self.entries,
            dir: &self.dir,
        }
    }
}

/// One entry as read back.
pub(super) struct ArenaEntry<'a> {
    /// Its sequence number.
    pub s: u32,
    /// Its registry line.
    pub line: u32,
    /// The canonical encoding without the prefix (valid until the next read).
    pub body: &'a [u8],
}

/// Reads an [`Arena`] in order.
pub(super) struct ArenaReader<'a> {
    r: BufReader<PosReader<'a>>,
    next: u64,
    left: u64,
    dir: &'a Path,
}

impl ArenaReader<'_> {
    /// The next entry, its body in `buf` (zeroized by the caller's [`zeroize::Zeroizing`]).
    pub(super) fn next_into<'b>(
        &mut self,
        buf: &'b mut Vec<u8>,
    ) -> Result<Option<ArenaEntry<'b>>, ServerError> {
        if self.left == 0 {
            return Ok(None);
        }
        let torn = || {
            ServerError::Internal(format!(
                "the build's spill file in {} ended early (was the disk full?)",
                self.dir.display()
            ))
        };
        let mut head = [0u8; 5];
        match read_record(&mut self.r, &mut head) {
            Ok(true) => {}
            Ok(false) => return Err(torn()),
            Err(e) => return Err(ServerError::io("cannot read a spill file in", self.dir)(e)),
        }
        let line = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        buf.clear();
        buf.resize(usize::from(head[4]), 0);
        self.r
            .read_exact(buf)
            .map_err(ServerError::io("cannot read a spill file in", self.dir))?;
        let s = self.next as u32;
        self.next += 1;
        self.left -= 1;
        Ok(Some(ArenaEntry { s, line, body: buf }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_back_in_order_and_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = ArenaWriter::create(dir.path()).expect("create");
        assert_eq!(w.push(2, b"one").expect("push"), 0);
        assert_eq!(w.push(5, b"").expect("push"), 1);
        assert_eq!(w.push(9, &[0xAB; 200]).expect("push"), 2);
        let arena = w.finish().expect("finish");
        assert_eq!(arena.len(), 3);
        for _ in 0..2 {
            let mut r = arena.reader();
            let mut buf = Vec::new();
            let mut got = Vec::new();
            while let Some(e) = r.next_into(&mut buf).expect("read") {
                got.push((e.s, e.line, e.body.to_vec()));
            }
            assert_eq!(
                got,
                [
                    (0, 2, b"one".to_vec()),
                    (1, 5, Vec::new()),
                    (2, 9, vec![0xAB; 200])
                ]
            );
        }
        assert!(ArenaWriter::create(dir.path()).is_ok());
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }
}
