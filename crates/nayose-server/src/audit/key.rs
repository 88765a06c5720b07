//! The operator's audit key and HMAC-SHA256 links.

use std::path::Path;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::ServerError;
use crate::fsutil::read_secret;

/// HMAC-SHA256 (RFC 2104) of `msg` under `key` (RustCrypto's `hmac`).
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    // HMAC takes keys of any length, so this cannot fail.
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(key) else {
        unreachable!("HMAC accepts keys of every length")
    };
    mac.update(msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// Least length of an audit key file.
pub const AUDIT_KEY_MIN_LEN: usize = 32;

/// The operator's audit key: records are linked with HMAC-SHA256 under it, so someone who can
/// write the log but does not hold the key cannot edit, insert or replace a record without
/// [`super::verify_audit_with`] noticing. It is read from `audit_key_file` (server.toml), which must be
/// owner-only and outside the data directory; keep a copy where the verifier runs.
pub struct AuditKey {
    key: Zeroizing<Vec<u8>>,
    id: String,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl AuditKey {
    /// A key from its bytes (at least [`AUDIT_KEY_MIN_LEN`]).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < AUDIT_KEY_MIN_LEN {
            return None;
        }
        let mut h = Sha256::new();
        h.update(b"nayose audit key id\0");
        h.update(bytes);
        let id = hex::encode(&h.finalize().as_slice()[..8]);
        Some(AuditKey {
            key: Zeroizing::new(bytes.to_vec()),
            id,
        })
    }

    /// Reads an audit key file: owner-only, at least [`AUDIT_KEY_MIN_LEN`] bytes, and (when
    /// `data_dir` is given) not inside the data directory, where whoever can rewrite the log
    /// could read it too. Create one with `head -c 32 /dev/urandom > FILE; chmod 600 FILE`.
    pub fn load(path: &Path, data_dir: Option<&Path>) -> Result<Self, ServerError> {
        let bad = |reason: String| ServerError::AuditKey {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(dir) = data_dir {
            let canon =
                |p: &Path| std::fs::canonicalize(p).map_err(ServerError::io("cannot resolve", p));
            if canon(path)?.starts_with(canon(dir)?) {
                return Err(bad(format!(
                    "it is inside the data directory {}; keep the audit key elsewhere (another \
                     file system or a secrets mount), so that whoever can rewrite the log \
                     cannot read the key",
                    dir.display()
                )));
            }
        }
        let bytes = read_secret(path)?;
        AuditKey::from_bytes(&bytes).ok_or_else(|| {
            bad(format!(
                "it holds {} bytes, an audit key has at least {AUDIT_KEY_MIN_LEN}; create one \
                 with: head -c 32 /dev/urandom > {}; chmod 600 {}",
                bytes.len(),
                path.display(),
                path.display()
            ))
        })
    }

    /// The key's public id (16 hex digits), written into every record it authenticates.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn link(&self, line: &[u8]) -> String {
        hex::encode(hmac_sha256(&self.key, line))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // RFC 4231 test cases 2 and 6 (a key longer than the block).
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn audit_key_files_must_be_private_long_enough_and_outside_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let write = |p: &Path, len: usize, mode: u32| {
            std::fs::write(p, vec![9u8; len]).unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let good = dir.path().join("audit.key");
        write(&good, 32, 0o600);
        assert_eq!(
            AuditKey::load(&good, Some(&data)).unwrap().id(),
            AuditKey::from_bytes(&[9; 32]).unwrap().id()
        );
        let inside = data.join("audit.key");
        write(&inside, 32, 0o600);
        let e = AuditKey::load(&inside, Some(&data))
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside the data directory"), "{e}");
        write(&good, 32, 0o640);
        let e = AuditKey::load(&good, Some(&data)).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        write(&good, 16, 0o600);
        let e = AuditKey::load(&good, Some(&data)).unwrap_err().to_string();
        assert!(e.contains("16 bytes") && e.contains("/dev/urandom"), "{e}");
    }
}
