//! Segment files: `audit/audit.<first record, 20 digits>.log`, the closed parts of a rotated log.
//!
//! A segment is named after the `seq` of its first record, so names never repeat (records are
//! numbered from 1 for the life of the log) and sort in chain order; an operator who moves old
//! segments away (archives them) leaves names that still say where the chain starts.

use std::path::{Path, PathBuf};

use crate::error::ServerError;

/// The live file's name (`audit/audit.log`).
pub(crate) const LIVE_NAME: &str = "audit.log";

/// The name of the segment whose first record is `first`.
pub(crate) fn segment_name(first: u64) -> String {
    format!("audit.{first:020}.log")
}

/// The first record of a segment file name (`audit.` 20 digits `.log`, not 0).
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("audit.")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n > 0)
}

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    /// The `seq` its name gives as its first record.
    pub(crate) first: u64,
    /// Where it is.
    pub(crate) path: PathBuf,
}

/// The segment files of `dir`, in chain order (none if `dir` does not exist). Other files are
/// ignored.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<Segment>, ServerError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ServerError::io("cannot list", dir)(e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(ServerError::io("cannot list", dir))?;
        if let Some(first) = ent.file_name().to_str().and_then(parse_segment_name) {
            out.push(Segment {
                first,
                path: ent.path(),
            });
        }
    }
    out.sort_by_key(|s| s.first);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn segment_names_carry_the_first_record_and_sort_in_chain_order() {
        assert_eq!(segment_name(1), "audit.00000000000000000001.log");
        assert_eq!(parse_segment_name(&segment_name(12_345)), Some(12_345));
        for bad in [
            "audit.log",
            "audit.head",
            "audit.00000000000000000000.log",
            "audit.0000000000000000001.log",
            "audit.0000000000000000000a.log",
            "audit.00000000000000000001.log.tmp-1-2",
            "x.00000000000000000001.log",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        for first in [900, 17, 1] {
            std::fs::write(dir.path().join(segment_name(first)), b"").unwrap();
        }
        std::fs::write(dir.path().join(LIVE_NAME), b"").unwrap();
        let firsts: Vec<u64> = list_segments(dir.path())
            .unwrap()
            .iter()
            .map(|s| s.first)
            .collect();
        assert_eq!(firsts, [1, 17, 900]);
        assert!(list_segments(&dir.path().join("none")).unwrap().is_empty());
    }
}
