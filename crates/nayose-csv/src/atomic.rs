//! Files this crate writes (the output and the row report): whole or not at all, owner-only.
//!
//! Invariants:
//! * bytes go to a temporary file in the destination's directory, named
//!   `.NAME.nayose-PID-N.tmp` (NAME the destination's file name, PID this process), created new
//!   (never an existing file) with mode 0600 on unix, so the rows of a health-insurance file are
//!   never readable by other users, not even while being written;
//! * [`AtomicFile::finish`] flushes, fsyncs and renames it onto the destination (and fsyncs the
//!   directory): a reader sees the old file or the complete new one, and the new one is 0600;
//! * dropped without `finish`, the temporary file is removed and the destination is untouched;
//! * every temporary file being written is listed in [`LIVE`], so that a process stopped by a
//!   signal (where no destructor runs) removes them all with [`abandon_temp_files`]; after it,
//!   no temporary file is created and none is renamed into place;
//! * a process killed outright (SIGKILL, power loss) cannot clean up: the next
//!   [`AtomicFile::create`] of the same destination removes the temporary files of that name
//!   whose process is gone ([`remove_stale_temp_files`]).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use csv::StringRecord;

use crate::encoding::{OutputEncoding, encode_row};
use crate::error::CsvError;

/// Distinguishes temporary files of one process.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// The temporary files of this process, and whether it is being interrupted.
struct Live {
    /// Temporary files created and not yet renamed or removed.
    temps: Vec<PathBuf>,
    /// Destinations renamed into place by this process.
    finished: Vec<PathBuf>,
    /// Set by [`abandon_temp_files`]: no temporary file may be created or renamed any more.
    abandoned: bool,
}

static LIVE: Mutex<Live> = Mutex::new(Live {
    temps: Vec::new(),
    finished: Vec::new(),
    abandoned: false,
});

/// The list, also after a panic elsewhere (its contents stay consistent: every change is one
/// push or one removal).
fn live() -> MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What [`abandon_temp_files`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Abandoned {
    /// Temporary files that were being written and are now removed.
    pub removed: Vec<PathBuf>,
    /// Files this process completed (renamed into place) before: they stay.
    pub finished: Vec<PathBuf>,
}

/// For a process that is being stopped (SIGINT, SIGTERM, SIGHUP), where destructors will not
/// run: removes every temporary file this process is writing and makes every later
/// [`AtomicFile::create`] and [`AtomicFile::finish`] fail with [`CsvError::Interrupted`], so
/// that a writer still running on another thread can neither leave a file behind nor complete
/// one. Returns what was removed and which files were completed before.
pub fn abandon_temp_files() -> Abandoned {
    let mut live = live();
    live.abandoned = true;
    let removed = std::mem::take(&mut live.temps);
    for tmp in &removed {
        let _ = std::fs::remove_file(tmp);
    }
    Abandoned {
        removed,
        finished: live.finished.clone(),
    }
}

/// The temporary name of `name` for process `pid`, number `n`.
fn temp_name(name: &str, pid: u32, n: u64) -> String {
    format!(".{name}.nayose-{pid}-{n}.tmp")
}

/// The process id in `file`, if it is a temporary file of `name` (`.NAME.nayose-PID-N.tmp`).
fn temp_pid(file: &str, name: &str) -> Option<u32> {
    let rest = file
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix(".nayose-")?
        .strip_suffix(".tmp")?;
    let (pid, n) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` exists (when in doubt: yes, so its file is kept).
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Some(pid) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            return true;
        };
        // Signal 0 checks existence; EPERM means it exists under another user.
        !matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        )
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Removes the temporary files that a killed nayose process left next to `path` (named
/// `.NAME.nayose-PID-N.tmp` for `path`'s file name NAME, PID a process that no longer runs,
/// a regular file). Files of running processes, of other names, and anything else are never
/// touched. Returns the files removed.
pub fn remove_stale_temp_files(path: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return removed;
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(|f| temp_pid(f, name)) else {
            continue;
        };
        let is_file = std::fs::symlink_metadata(entry.path()).is_ok_and(|m| m.is_file());
        if pid == own || !is_file || process_alive(pid) {
            continue;
        }
        if std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// A file written to a temporary path and renamed into place on success.
pub(crate) struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates the temporary file next to `path`, after removing the temporary files of `path`
    /// that killed processes left.
    pub(crate) fn create(path: &Path) -> Result<Self, CsvError> {
        let name = path.file_name().ok_or_else(|| CsvError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the output path names no file",
            ),
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        remove_stale_temp_files(path);
        let tmp = dir.join(temp_name(
            &name.to_string_lossy(),
            std::process::id(),
            NEXT_TMP.fetch_add(1, Ordering::Relaxed),
        ));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        // Created and listed under the lock, so that `abandon_temp_files` sees every file.
        let mut live = live();
        if live.abandoned {
            return Err(CsvError::Interrupted {
                path: path.to_owned(),
            });
        }
        let file = options.open(&tmp).map_err(|source| CsvError::Io {
            path: tmp.clone(),
            source,
        })?;
        live.temps.push(tmp.clone());
        drop(live);
        Ok(AtomicFile {
            path: path.to_owned(),
            tmp,
            file: Some(BufWriter::new(file)),
        })
    }

    /// An I/O error on the temporary file.
    pub(crate) fn io(&self, source: std::io::Error) -> CsvError {
        CsvError::Io {
            path: self.tmp.clone(),
            source,
        }
    }

    /// Appends `bytes`.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<(), CsvError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let r = file.write_all(bytes);
        r.map_err(|e| self.io(e))
    }

    /// Flushes, fsyncs and renames the temporary file onto the destination path.
    pub(crate) fn finish(mut self) -> Result<(), CsvError> {
        let Some(writer) = self.file.take() else {
            return Ok(());
        };
        let written = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_all());
        // Renamed (or removed) under the lock: an interruption either comes after the file is
        // complete, or the file is never renamed.
        let mut live = live();
        live.temps.retain(|t| t != &self.tmp);
        let renamed = match written {
            Err(e) => Err(self.io(e)),
            Ok(()) if live.abandoned => Err(CsvError::Interrupted {
                path: self.path.clone(),
            }),
            Ok(()) => std::fs::rename(&self.tmp, &self.path).map_err(|source| CsvError::Io {
                path: self.path.clone(),
                source,
            }),
        };
        if renamed.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
            return renamed;
        }
        live.finished.push(self.path.clone());
        drop(live);
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Persist the rename; directories cannot be opened for sync on every platform.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let mut live = live();
            live.temps.retain(|t| t != &self.tmp);
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Why a record could not be encoded.
pub(crate) enum Unencodable {
    /// The CSV writer failed (it writes to memory, so only on a bug).
    Csv(csv::Error),
    /// Field `field` holds a character the output encoding cannot represent.
    Char {
        /// 0-based field index.
        field: usize,
        /// The character.
        ch: char,
    },
}

/// Writes records as CSV lines (CRLF-terminated, quoted where needed) in an output encoding.
pub(crate) struct LineEncoder {
    encoding: OutputEncoding,
    text: Vec<u8>,
}

impl LineEncoder {
    pub(crate) fn new(encoding: OutputEncoding) -> Self {
        LineEncoder {
            encoding,
            text: Vec::new(),
        }
    }

    /// Appends `record`, encoded, to `out`.
    pub(crate) fn encode(
        &mut self,
        record: &StringRecord,
        out: &mut Vec<u8>,
    ) -> Result<(), Unencodable> {
        self.text.clear();
        {
            let mut w = csv::WriterBuilder::new()
                .flexible(true)
                .terminator(csv::Terminator::CRLF)
                .buffer_capacity(256)
                .from_writer(&mut self.text);
            w.write_record(record)
                .and_then(|()| w.flush().map_err(csv::Error::from))
                .map_err(Unencodable::Csv)?;
        }
        // The CSV writer wrote only our UTF-8 fields and ASCII punctuation.
        let text = String::from_utf8_lossy(&self.text);
        encode_row(&text, self.encoding, out).map_err(|ch| Unencodable::Char {
            field: record
                .iter()
                .position(|f| f.contains(ch))
                .unwrap_or_default(),
            ch,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// No process has this id (Linux caps ids at 2^22, macOS at 99,999).
    const DEAD_PID: u32 = 2_000_000_000;

    #[test]
    fn temporary_names_are_recognised_only_for_their_destination() {
        let tmp = temp_name("linked.csv", 4242, 7);
        assert_eq!(tmp, ".linked.csv.nayose-4242-7.tmp");
        assert_eq!(temp_pid(&tmp, "linked.csv"), Some(4242));
        assert_eq!(temp_pid(&tmp, "linked"), None);
        assert_eq!(temp_pid(&tmp, "other.csv"), None);
        for not_ours in [
            "linked.csv",
            ".linked.csv.nayose-4242.tmp",
            ".linked.csv.nayose--7.tmp",
            ".linked.csv.nayose-42x-7.tmp",
            ".linked.csv.nayose-4242-7.tmp.bak",
            "linked.csv.nayose-4242-7.tmp",
        ] {
            assert_eq!(temp_pid(not_ours, "linked.csv"), None, "{not_ours}");
        }
    }

    #[test]
    fn only_temporary_files_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("linked.csv");
        let write = |name: &str| {
            std::fs::write(dir.path().join(name), b"R1,01130012:0647:0950759:03").unwrap();
            dir.path().join(name)
        };
        let stale = write(&temp_name("linked.csv", DEAD_PID, 0));
        let stale2 = write(&temp_name("linked.csv", DEAD_PID, 3));
        let own = write(&temp_name("linked.csv", std::process::id(), 99));
        let other_name = write(&temp_name("report.csv", DEAD_PID, 0));
        let unrelated = write(".linked.csv.backup");
        let output = write("linked.csv");
        std::fs::create_dir(dir.path().join(temp_name("linked.csv", DEAD_PID, 5))).unwrap();

        let mut removed = remove_stale_temp_files(&out);
        removed.sort();
        let mut expected = vec![stale.clone(), stale2.clone()];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(!stale.exists() && !stale2.exists());
        for kept in [&own, &other_name, &unrelated, &output] {
            assert!(kept.exists(), "{} kept", kept.display());
        }
        assert!(
            dir.path()
                .join(temp_name("linked.csv", DEAD_PID, 5))
                .is_dir()
        );
    }

    #[test]
    fn a_new_file_clears_stale_temporaries_and_a_dropped_one_leaves_none() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("linked.csv");
        let stale = dir.path().join(temp_name("linked.csv", DEAD_PID, 1));
        std::fs::write(&stale, b"personal data").unwrap();
        let mut f = AtomicFile::create(&out).unwrap();
        assert!(!stale.exists());
        f.write_all(b"a,b\r\n").unwrap();
        assert!(f.tmp.exists());
        let tmp = f.tmp.clone();
        drop(f);
        assert!(!tmp.exists() && !out.exists());
        assert!(!live().temps.contains(&tmp));
        let mut f = AtomicFile::create(&out).unwrap();
        f.write_all(b"a,b\r\n").unwrap();
        f.finish().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"a,b\r\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
