//! `nayose server keygen-announce` and `nayose server announce`: the management body's
//! Ed25519 announcement key and its signed statements (protocol-spec/announcements.md §6).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use nayose_server::{
    DEFAULT_VALID_DAYS, announce, keygen_announce, public_key_path, read_signing_key,
};

#[derive(Debug, Args)]
pub(crate) struct KeygenAnnounceArgs {
    /// Where to write the private key (created owner-only; never overwritten). Keep it on an
    /// offline machine. The public key is written next to it as FILE.pub.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct AnnounceArgs {
    /// The data directory whose current key period and epochs are announced. Only `current`
    /// and the epochs' manifest.toml files are read.
    #[arg(long)]
    pub(crate) data_dir: PathBuf,
    /// The announcement private key (made by `keygen-announce`; must be owner-only).
    #[arg(long)]
    pub(crate) signing_key: PathBuf,
    /// Days each new statement stays valid; a statement with less than a tenth of this left
    /// is signed again.
    #[arg(long, default_value_t = DEFAULT_VALID_DAYS)]
    pub(crate) valid_days: u32,
}

pub(crate) fn keygen(a: &KeygenAnnounceArgs) -> Result<()> {
    let public = keygen_announce(&a.out)
        .with_context(|| format!("creating the announcement key {}", a.out.display()))?;
    println!("announcement public key: {}", public.to_hex());
    println!("key id:                  {}", public.id_hex());
    println!(
        "private key: {} (owner-only; keep it offline)\npublic key:  {} (give it to every \
         client: `announcement_keys` in client.toml)",
        a.out.display(),
        public_key_path(&a.out).display()
    );
    Ok(())
}

pub(crate) fn run(a: &AnnounceArgs) -> Result<()> {
    if !a.data_dir.is_dir() {
        bail!("{} is not a directory", a.data_dir.display());
    }
    let signer = read_signing_key(&a.signing_key)
        .with_context(|| format!("reading the signing key {}", a.signing_key.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let r = announce(&a.data_dir, &signer, a.valid_days, now)
        .with_context(|| format!("announcing {}", a.data_dir.display()))?;
    println!(
        "announced key period {} up to epoch {} with key id {}: {} statements signed, {} kept",
        r.key_period,
        r.epoch,
        r.key_id,
        r.written.len(),
        r.kept.len()
    );
    for p in &r.written {
        println!("  signed {}", p.display());
    }
    Ok(())
}
