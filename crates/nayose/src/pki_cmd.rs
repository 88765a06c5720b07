//! `nayose pki init` and `nayose pki issue-client`: the development PKI.

use std::path::Path;

use anyhow::{Context, Result};

/// `nayose pki init --dir DIR [--server-name NAME]`.
pub(crate) fn init(dir: &Path, server_name: &str) -> Result<()> {
    nayose_pki::init(dir, server_name)
        .with_context(|| format!("creating the development PKI in {}", dir.display()))?;
    eprintln!(
        "created {0}/ca.pem, {0}/ca.key, {0}/server.pem, {0}/server.key (server name {1})",
        dir.display(),
        server_name
    );
    eprintln!("this PKI is for trials only; see the README for real deployments");
    Ok(())
}

/// `nayose pki issue-client --dir DIR --id ID`.
pub(crate) fn issue_client(dir: &Path, id: &str) -> Result<()> {
    let (cert, key) = nayose_pki::issue_client(dir, id).with_context(|| {
        format!(
            "issuing a client certificate for {id:?} from {}",
            dir.display()
        )
    })?;
    eprintln!("issued {} and {}", cert.display(), key.display());
    Ok(())
}
