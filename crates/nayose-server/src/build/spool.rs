//! The build's byte plumbing: a buffered writer whose buffer is zeroized, positional readers
//! over files, a reader that hashes what it reads, and anonymous spill files.
//!
//! Invariants:
//! * [`SecretWriter`] holds at most its capacity in a [`Zeroizing`] buffer (label keys and
//!   numbers pass through it), and can hash every byte it writes (the manifest's SHA-256 is then
//!   the hash of exactly the bytes on disk, without reading them again);
//! * a [`PosReader`] reads a file from a position of its own (`pread`), so several passes over
//!   one file never disturb each other;
//! * spill files ([`spill_file`]) are unlinked when created (`O_TMPFILE` or create-and-unlink,
//!   as `tempfile::tempfile_in` does), owner-only, inside the data directory: whatever ends the
//!   build — an error, a panic, SIGKILL — no name is left that holds a number or a label key;
//!   the space returns to the file system when the process closes them.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::ServerError;

/// Buffer of a [`SecretWriter`] and of the readers of spill files.
pub(super) const BUFFER: usize = 1 << 20;

/// Creates an unnamed, owner-only file in `dir` for the build's intermediate data.
pub(super) fn spill_file(dir: &Path) -> Result<File, ServerError> {
    tempfile::tempfile_in(dir).map_err(ServerError::io("cannot create a spill file in", dir))
}

/// A buffered writer for bytes that may be secret: its buffer is zeroized when flushed and when
/// dropped; with [`SecretWriter::hashed`] it also hashes everything written.
pub(super) struct SecretWriter {
    file: File,
    path: PathBuf,
    buf: Zeroizing<Vec<u8>>,
    cap: usize,
    hash: Option<Sha256>,
}

impl SecretWriter {
    /// Writes to `file`; `path` names it in errors (a spill file: the directory).
    pub(super) fn new(file: File, path: &Path) -> Self {
        Self::with_capacity(file, path, BUFFER)
    }

    /// Like [`SecretWriter::new`] with a buffer of `capacity` bytes (many writers at once).
    pub(super) fn with_capacity(file: File, path: &Path, capacity: usize) -> Self {
        SecretWriter {
            file,
            path: path.to_path_buf(),
            buf: Zeroizing::new(Vec::with_capacity(capacity)),
            cap: capacity,
            hash: None,
        }
    }

    /// Like [`SecretWriter::new`], hashing every byte with SHA-256.
    pub(super) fn hashed(file: File, path: &Path) -> Self {
        let mut w = Self::new(file, path);
        w.hash = Some(Sha256::new());
        w
    }

    /// Appends `bytes`.
    pub(super) fn put(&mut self, bytes: &[u8]) -> Result<(), ServerError> {
        if let Some(h) = &mut self.hash {
            h.update(bytes);
        }
        if self.buf.len() + bytes.len() > self.cap {
            self.flush_buf()?;
        }
        if bytes.len() > self.cap {
            return self
                .file
                .write_all(bytes)
                .map_err(ServerError::io("cannot write", &self.path));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), ServerError> {
        let r = self
            .file
            .write_all(&self.buf)
            .map_err(ServerError::io("cannot write", &self.path));
        zeroize::Zeroize::zeroize(&mut *self.buf);
        self.buf.clear();
        r
    }

    /// Writes out the buffer and returns the file and the SHA-256 of everything written (if
    /// hashed).
    pub(super) fn finish(mut self) -> Result<(File, Option<[u8; 32]>), ServerError> {
        self.flush_buf()?;
        let hash = self.hash.take().map(|h| h.finalize().into());
        Ok((self.file, hash))
    }

    /// Like [`SecretWriter::finish`], then syncs the file to disk.
    pub(super) fn finish_synced(self) -> Result<Option<[u8; 32]>, ServerError> {
        let path = self.path.clone();
        let (file, hash) = self.finish()?;
        file.sync_all()
            .map_err(ServerError::io("cannot fsync", &path))?;
        Ok(hash)
    }
}

/// Reads a file from a position of its own (`pread`): passes over one file are independent.
pub(super) struct PosReader<'a> {
    file: &'a File,
    pos: u64,
}

impl<'a> PosReader<'a> {
    /// Reads `file` from its start.
    pub(super) fn new(file: &'a File) -> Self {
        PosReader { file, pos: 0 }
    }
}

impl Read for PosReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A reader that hashes (SHA-256) every byte it passes on, so a file can be used in one
/// streaming pass and its checksum compared at the end, before anything built from it is
/// published.
pub(super) struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub(super) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hash: Sha256::new(),
        }
    }

    /// Reads to the end (the bytes must be none: a file longer than its content is damaged)
    /// and returns the SHA-256 of everything read, and whether bytes were left over.
    pub(super) fn finish(mut self) -> io::Result<([u8; 32], bool)> {
        let mut rest = [0u8; 1];
        let extra = self.read(&mut rest)? != 0;
        Ok((self.hash.finalize().into(), extra))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads exactly `buf.len()` bytes, or reports how the stream ended: `Ok(false)` at a clean end
/// (no byte read), an error of kind `UnexpectedEof` in the middle of a record.
pub(super) fn read_record(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn writer_hashes_what_it_writes_and_readers_are_independent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = spill_file(dir.path()).expect("spill");
        let mut w = SecretWriter::hashed(file, dir.path());
        let big = vec![7u8; BUFFER + 3];
        w.put(b"abc").expect("put");
        w.put(&big).expect("put big");
        w.put(b"xyz").expect("put");
        let (file, hash) = w.finish().expect("finish");
        let mut all = b"abc".to_vec();
        all.extend_from_slice(&big);
        all.extend_from_slice(b"xyz");
        assert_eq!(hash, Some(Sha256::digest(&all).into()));
        // Two passes over one file at once.
        let mut a = BufReader::new(PosReader::new(&file));
        let mut b = HashingReader::new(PosReader::new(&file));
        let mut head = [0u8; 3];
        assert!(read_record(&mut a, &mut head).expect("read"));
        assert_eq!(&head, b"abc");
        let mut whole = Vec::new();
        b.read_to_end(&mut whole).expect("read");
        assert_eq!(whole, all);
        let (h, extra) = b.finish().expect("finish");
        assert_eq!(h, <[u8; 32]>::from(Sha256::digest(&all)));
        assert!(!extra);
        // The spill file has no name in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn read_record_tells_a_clean_end_from_a_torn_record() {
        let mut r: &[u8] = b"abcd";
        let mut buf = [0u8; 3];
        assert!(read_record(&mut r, &mut buf).expect("first"));
        let e = read_record(&mut r, &mut buf).expect_err("torn");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let mut r: &[u8] = b"";
        assert!(!read_record(&mut r, &mut buf).expect("clean end"));
    }
}
