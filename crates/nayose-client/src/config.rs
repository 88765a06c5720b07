//! Client settings: `client.toml`, command-line overrides, and their validation.
//!
//! Invariants: every field of [`ClientConfig`] is optional so that a file and command-line flags
//! can be layered with [`ClientConfig::merge`]; [`ClientConfig::resolve`] is the one place that
//! applies defaults and checks that every required setting is present and in range, and a
//! [`Resolved`] value is therefore always usable as it is.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use nayose_csv::{Delimiter, EncodingChoice, HeldColumns, OutputEncoding};

use nayose_proto::announce::AnnouncementKey;

use crate::error::ClientError;

/// Default Evaluate batch size (elements per request; capped by the server's `max_batch`).
pub const DEFAULT_BATCH_SIZE: u32 = 1024;
/// Default number of requests in flight on the one connection.
pub const DEFAULT_PIPELINE_DEPTH: u32 = 8;

/// Text encoding of the input file (the output's default follows it; see
/// [`ClientConfig::output_encoding`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Encoding {
    /// Detect: a UTF-8 BOM or valid UTF-8 means UTF-8, anything else CP932.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// UTF-8 (with or without BOM).
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    /// CP932 (Windows Shift_JIS).
    #[serde(rename = "cp932", alias = "shift_jis", alias = "sjis")]
    Cp932,
}

impl Encoding {
    /// The choice as `nayose-csv` takes it.
    pub fn choice(self) -> EncodingChoice {
        match self {
            Encoding::Auto => EncodingChoice::Auto,
            Encoding::Utf8 => EncodingChoice::Utf8,
            Encoding::Cp932 => EncodingChoice::Cp932,
        }
    }
}

impl FromStr for Encoding {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self, ClientError> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Encoding::Auto),
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "cp932" | "shift_jis" | "shift-jis" | "sjis" | "windows-31j" => Ok(Encoding::Cp932),
            _ => Err(ClientError::Config {
                setting: "encoding",
                reason: format!("{s:?} is not an encoding; use auto, utf-8 or cp932"),
            }),
        }
    }
}

/// What `nayose_group` holds for rows that are not linked (`unlinked_group` in `client.toml`,
/// `--unlinked-group` on the command line).
///
/// A pivot table or a COUNTIF over `nayose_group` puts every empty cell in one bucket, as if all
/// not-found and invalid rows were one person. [`UnlinkedGroup::Line`] gives each of them a
/// value of its own instead, one that cannot be taken for a label (labels are `g` + 8 hex
/// digits) nor for a number or a formula by a spreadsheet (it starts with a letter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum UnlinkedGroup {
    /// Empty (the default).
    #[default]
    Empty,
    /// `nf-<line>` for a not-found row, where `<line>` is the input line of the first row with
    /// the same number (so rows repeating one unknown number share a value), and
    /// `invalid-<line>` for an invalid row (its own line).
    Line,
}

impl FromStr for UnlinkedGroup {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self, ClientError> {
        match s.to_ascii_lowercase().as_str() {
            "empty" => Ok(UnlinkedGroup::Empty),
            "line" => Ok(UnlinkedGroup::Line),
            _ => Err(ClientError::Config {
                setting: "unlinked_group",
                reason: format!("{s:?} is not a choice; use empty or line"),
            }),
        }
    }
}

/// Names of the input columns holding the number: one combined column, or four separate ones.
///
/// In `client.toml`: `[columns]` with either `combined = "..."` or all of `insurer`, `symbol`,
/// `number`, `branch`. Without either, the columns are recognised from the header (Japanese or
/// English names, see `nayose_csv::mapping`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnNames {
    /// The one column holding the whole number (dashed or colon form).
    pub combined: Option<String>,
    /// 保険者番号 column.
    pub insurer: Option<String>,
    /// 記号 column.
    pub symbol: Option<String>,
    /// 番号 column.
    pub number: Option<String>,
    /// 枝番 column.
    pub branch: Option<String>,
}

impl ColumnNames {
    /// The column layout; `None` means "recognise from the header".
    fn resolve(&self) -> Result<Option<HeldColumns>, ClientError> {
        let parts = [&self.insurer, &self.symbol, &self.number, &self.branch];
        let given = parts.iter().filter(|p| p.is_some()).count();
        match (&self.combined, given) {
            (Some(c), 0) => Ok(Some(HeldColumns::Combined { column: c.clone() })),
            (None, 0) => Ok(None),
            (None, 4) => Ok(Some(HeldColumns::Fields {
                insurer: self.insurer.clone().unwrap_or_default(),
                symbol: self.symbol.clone().unwrap_or_default(),
                number: self.number.clone().unwrap_or_default(),
                branch: self.branch.clone().unwrap_or_default(),
            })),
            (Some(_), _) => Err(ClientError::Config {
                setting: "columns",
                reason: "give either the combined column or the four separate columns, not both"
                    .into(),
            }),
            (None, _) => Err(ClientError::Config {
                setting: "columns",
                reason: "separate columns need all four names: insurer, symbol, number, branch"
                    .into(),
            }),
        }
    }
}

/// Reconnection and retry policy (`[retry]` in `client.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Consecutive failed attempts (connection lost, server busy) tolerated before giving up;
    /// the count resets whenever a request makes progress. Default 8.
    pub max_attempts: Option<u32>,
    /// First backoff delay in milliseconds; doubled after each failure. Default 1000.
    pub initial_backoff_ms: Option<u64>,
    /// Largest backoff delay in milliseconds. Default 60000.
    pub max_backoff_ms: Option<u64>,
    /// Time limit for one QUIC handshake in milliseconds. Default 10000.
    pub connect_timeout_ms: Option<u64>,
    /// Time limit for one response (or one frame of a table download) in milliseconds.
    /// Default 60000.
    pub request_timeout_ms: Option<u64>,
    /// Times the run may start over because the server moved to a new epoch. Default 3.
    pub max_epoch_restarts: Option<u32>,
}

/// Every setting of `nayose client link`. All optional: layer a file and flags with
/// [`ClientConfig::merge`], then [`ClientConfig::resolve`] (done by [`crate::link`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Server address `HOST:PORT`.
    pub server: Option<String>,
    /// The name the server certificate must carry (defaults to HOST of `server`).
    pub server_name: Option<String>,
    /// CA certificate (PEM) that issued the server's certificate.
    pub ca: Option<PathBuf>,
    /// This client's certificate (PEM; its CommonName is the client id).
    pub cert: Option<PathBuf>,
    /// This client's private key (PEM, PKCS#8).
    pub key: Option<PathBuf>,
    /// The held CSV file.
    pub input: Option<PathBuf>,
    /// Where to write the output CSV.
    pub output: Option<PathBuf>,
    /// Directory for the caches of each key period (OPRF outputs, the table, a partial base
    /// download). Default: `$XDG_CACHE_HOME/nayose` or `$HOME/.cache/nayose`.
    pub cache_dir: Option<PathBuf>,
    /// Disable the caches (every run evaluates every number and downloads a base).
    pub no_cache: Option<bool>,
    /// Input column names.
    pub columns: Option<ColumnNames>,
    /// `auto` (default), `utf-8` or `cp932`.
    pub encoding: Option<Encoding>,
    /// The input's field delimiter: `comma` or `tab` (default: detected from the header line).
    pub delimiter: Option<String>,
    /// The output's (and the report's) encoding: `utf-8-bom`, `utf-8` or `cp932` (default: the
    /// input's, with a BOM for UTF-8 so that Excel opens it as UTF-8).
    pub output_encoding: Option<String>,
    /// Where to write the row report (every invalid, repaired, blank-skipped or changed row).
    pub report: Option<PathBuf>,
    /// Leave invalid rows out (status `invalid`) instead of stopping.
    pub skip_invalid: Option<bool>,
    /// Repair spreadsheet damage (lost leading zeros) in numbers.
    pub repair: Option<bool>,
    /// Add the `nayose_number` column: each valid row's number in its canonical (colon) form.
    pub canonical_column: Option<bool>,
    /// What `nayose_group` holds for rows not linked: `empty` (default) or `line` (see
    /// [`UnlinkedGroup`]).
    pub unlinked_group: Option<String>,
    /// Elements per Evaluate request (1..=4096, capped by the server's limit).
    pub batch_size: Option<u32>,
    /// Requests in flight at once on the connection (1..=64).
    pub pipeline_depth: Option<u32>,
    /// Retry policy.
    pub retry: Option<RetrySettings>,
    /// The management body's announcement public keys (protocol-spec/announcements.md): each
    /// 64 hex digits, or the path of a file holding them (e.g. `announce.pub`). When set, the
    /// client refuses a server whose key period and epoch are not covered by statements signed
    /// with one of them. Unset: nothing is checked (development and the demo without keys).
    pub announcement_keys: Option<Vec<String>>,
    /// Offer classical TLS key exchange (X25519, P-256, P-384) after the post-quantum hybrid
    /// X25519MLKEM768, so that a server offering only classical groups is accepted. Default
    /// false: such a server is refused (protocol-spec/wire.md §2.1).
    pub allow_classical_key_exchange: Option<bool>,
}

macro_rules! take_some {
    ($self:ident, $other:ident, $($f:ident),*) => {
        $( if $other.$f.is_some() { $self.$f = $other.$f; } )*
    };
}

impl ClientConfig {
    /// Reads a `client.toml`. Unknown keys are an error (they are usually typos).
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClientError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg: ClientConfig = toml::from_str(&text).map_err(|e| ClientError::ConfigFile {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        // Relative paths in the file are relative to the file's directory.
        if let Some(base) = path.parent() {
            for p in [
                &mut cfg.ca,
                &mut cfg.cert,
                &mut cfg.key,
                &mut cfg.input,
                &mut cfg.output,
                &mut cfg.cache_dir,
                &mut cfg.report,
            ]
            .into_iter()
            .flatten()
            {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
            for k in cfg.announcement_keys.iter_mut().flatten() {
                if !is_key_hex(k) && Path::new(k.trim()).is_relative() {
                    *k = base.join(k.trim()).to_string_lossy().into_owned();
                }
            }
        }
        Ok(cfg)
    }

    /// Overrides every setting that `other` has (e.g. command-line flags over the file).
    /// `[columns]` and `[retry]` are merged field by field.
    pub fn merge(&mut self, other: ClientConfig) {
        let ClientConfig { columns, retry, .. } = &other;
        let (columns, retry) = (columns.clone(), retry.clone());
        take_some!(
            self,
            other,
            server,
            server_name,
            ca,
            cert,
            key,
            input,
            output,
            cache_dir,
            no_cache,
            encoding,
            delimiter,
            output_encoding,
            report,
            skip_invalid,
            repair,
            canonical_column,
            unlinked_group,
            batch_size,
            pipeline_depth,
            announcement_keys,
            allow_classical_key_exchange
        );
        if let Some(c) = columns {
            // Naming the combined column clears separate ones and vice versa.
            let mine = self.columns.get_or_insert_with(ColumnNames::default);
            if c.combined.is_some() {
                *mine = ColumnNames::default();
            } else if [&c.insurer, &c.symbol, &c.number, &c.branch]
                .iter()
                .any(|p| p.is_some())
            {
                mine.combined = None;
            }
            take_some!(mine, c, combined, insurer, symbol, number, branch);
        }
        if let Some(r) = retry {
            let mine = self.retry.get_or_insert_with(RetrySettings::default);
            take_some!(
                mine,
                r,
                max_attempts,
                initial_backoff_ms,
                max_backoff_ms,
                connect_timeout_ms,
                request_timeout_ms,
                max_epoch_restarts
            );
        }
    }

    /// Applies defaults and checks every setting.
    pub fn resolve(&self) -> Result<Resolved, ClientError> {
        fn need<T: Clone>(v: &Option<T>, setting: &'static str) -> Result<T, ClientError> {
            v.clone().ok_or(ClientError::MissingSetting { setting })
        }
        let server = need(&self.server, "server")?;
        let host = split_host(&server)?;
        let server_name = self.server_name.clone().unwrap_or_else(|| host.to_owned());
        if server_name.is_empty() {
            return Err(ClientError::Config {
                setting: "server_name",
                reason: "it is empty".into(),
            });
        }
        let input = need(&self.input, "input")?;
        let output = need(&self.output, "output")?;
        if same_file(&input, &output) {
            return Err(ClientError::Config {
                setting: "output",
                reason: "the output would overwrite the input; choose another path".into(),
            });
        }
        let batch_size = self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=nayose_wire::MAX_BATCH_ELEMENTS as u32).contains(&batch_size) {
            return Err(ClientError::Config {
                setting: "batch_size",
                reason: format!("{batch_size} is outside 1..=4096"),
            });
        }
        let pipeline_depth = self.pipeline_depth.unwrap_or(DEFAULT_PIPELINE_DEPTH);
        if !(1..=64).contains(&pipeline_depth) {
            return Err(ClientError::Config {
                setting: "pipeline_depth",
                reason: format!("{pipeline_depth} is outside 1..=64"),
            });
        }
        let r = self.retry.clone().unwrap_or_default();
        let retry = RetryPolicy {
            max_attempts: r.max_attempts.unwrap_or(8).max(1),
            initial_backoff: Duration::from_millis(r.initial_backoff_ms.unwrap_or(1000)),
            max_backoff: Duration::from_millis(r.max_backoff_ms.unwrap_or(60_000)),
            connect_timeout: Duration::from_millis(r.connect_timeout_ms.unwrap_or(10_000).max(1)),
            request_timeout: Duration::from_millis(r.request_timeout_ms.unwrap_or(60_000).max(1)),
            max_epoch_restarts: r.max_epoch_restarts.unwrap_or(3),
        };
        let delimiter = match &self.delimiter {
            Some(d) => Some(d.parse::<Delimiter>().map_err(|e| ClientError::Config {
                setting: "delimiter",
                reason: e.to_string(),
            })?),
            None => None,
        };
        let output_encoding = match &self.output_encoding {
            Some(e) => Some(
                e.parse::<OutputEncoding>()
                    .map_err(|e| ClientError::Config {
                        setting: "output_encoding",
                        reason: e.to_string(),
                    })?,
            ),
            None => None,
        };
        if let Some(report) = &self.report
            && (same_file(report, &input) || same_file(report, &output))
        {
            return Err(ClientError::Config {
                setting: "report",
                reason: "the report would overwrite the input or the output; choose another path"
                    .into(),
            });
        }
        let unlinked_group = match &self.unlinked_group {
            Some(u) => u.parse::<UnlinkedGroup>()?,
            None => UnlinkedGroup::Empty,
        };
        let announcement_keys = self
            .announcement_keys
            .iter()
            .flatten()
            .map(|k| announcement_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        let cache_dir = if self.no_cache.unwrap_or(false) {
            None
        } else {
            self.cache_dir.clone().or_else(default_cache_dir)
        };
        Ok(Resolved {
            server,
            server_name,
            ca: need(&self.ca, "ca")?,
            cert: need(&self.cert, "cert")?,
            key: need(&self.key, "key")?,
            input,
            output,
            cache_dir,
            columns: self.columns.clone().unwrap_or_default().resolve()?,
            encoding: self.encoding.unwrap_or_default(),
            delimiter,
            output_encoding,
            report: self.report.clone(),
            skip_invalid: self.skip_invalid.unwrap_or(false),
            repair: self.repair.unwrap_or(false),
            canonical_column: self.canonical_column.unwrap_or(false),
            unlinked_group,
            batch_size,
            pipeline_depth,
            retry,
            announcement_keys,
            allow_classical_key_exchange: self.allow_classical_key_exchange.unwrap_or(false),
        })
    }
}

/// Whether an `announcement_keys` entry is a key itself (64 hex digits) rather than a path.
fn is_key_hex(entry: &str) -> bool {
    let t = entry.trim();
    t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One `announcement_keys` entry: 64 hex digits, or a file holding them.
fn announcement_key(entry: &str) -> Result<AnnouncementKey, ClientError> {
    let bad = |reason: String| ClientError::Config {
        setting: "announcement_keys",
        reason,
    };
    let t = entry.trim();
    if is_key_hex(t) {
        return AnnouncementKey::from_hex(t).map_err(|e| bad(e.to_string()));
    }
    let path = PathBuf::from(t);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        bad(format!(
            "{entry:?} is neither 64 hex digits nor a readable key file ({}: {e})",
            path.display()
        ))
    })?;
    AnnouncementKey::from_hex(&text).map_err(|e| bad(format!("{}: {e}", path.display())))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The host part of `HOST:PORT` (`[v6]:PORT` accepted).
fn split_host(server: &str) -> Result<&str, ClientError> {
    let bad = |reason: &str| ClientError::Config {
        setting: "server",
        reason: format!("{server:?}: {reason}; write HOST:PORT"),
    };
    let (host, port) = server.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    port.parse::<u16>()
        .map_err(|_| bad("the port is not a number 0-65535"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(host)
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("nayose"));
    }
    std::env::var_os("HOME")
        .filter(|x| !x.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("nayose"))
}

/// Retry and timeout policy, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Consecutive failed attempts tolerated; reset by any successful request.
    pub max_attempts: u32,
    /// First backoff delay.
    pub initial_backoff: Duration,
    /// Largest backoff delay.
    pub max_backoff: Duration,
    /// Time limit for one handshake.
    pub connect_timeout: Duration,
    /// Time limit for one response or table frame.
    pub request_timeout: Duration,
    /// Times the run may restart for a new epoch.
    pub max_epoch_restarts: u32,
}

impl RetryPolicy {
    /// The delay before attempt `attempt` (1-based count of consecutive failures so far):
    /// `initial * 2^(attempt-1)`, capped at `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(20);
        self.initial_backoff
            .saturating_mul(1u32 << shift)
            .min(self.max_backoff)
    }
}

/// A complete, checked configuration ([`ClientConfig::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `HOST:PORT`.
    pub server: String,
    /// Name checked in the server certificate.
    pub server_name: String,
    /// CA certificate file.
    pub ca: PathBuf,
    /// Client certificate file.
    pub cert: PathBuf,
    /// Client key file.
    pub key: PathBuf,
    /// Held CSV.
    pub input: PathBuf,
    /// Output CSV.
    pub output: PathBuf,
    /// Cache directory (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Number columns (`None`: recognised from the header, see [`ColumnNames`]).
    pub columns: Option<HeldColumns>,
    /// Input encoding.
    pub encoding: Encoding,
    /// The input's delimiter (`None`: detect).
    pub delimiter: Option<Delimiter>,
    /// The output's and the report's encoding (`None`: the input's, with a BOM for UTF-8).
    pub output_encoding: Option<OutputEncoding>,
    /// The row report's path (`None`: no report file).
    pub report: Option<PathBuf>,
    /// Whether invalid rows are skipped rather than fatal.
    pub skip_invalid: bool,
    /// Whether numbers are repaired.
    pub repair: bool,
    /// Whether the output gets the `nayose_number` column.
    pub canonical_column: bool,
    /// What `nayose_group` holds for rows not linked.
    pub unlinked_group: UnlinkedGroup,
    /// Evaluate batch size (before the server's cap).
    pub batch_size: u32,
    /// Requests in flight.
    pub pipeline_depth: u32,
    /// Retries and timeouts.
    pub retry: RetryPolicy,
    /// Trusted announcement keys (empty: announcements are not checked).
    pub announcement_keys: Vec<AnnouncementKey>,
    /// Whether classical TLS key exchange is offered after X25519MLKEM768.
    pub allow_classical_key_exchange: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn base() -> ClientConfig {
        ClientConfig {
            server: Some("127.0.0.1:4433".into()),
            ca: Some("ca.pem".into()),
            cert: Some("c.pem".into()),
            key: Some("c.key".into()),
            input: Some("in.csv".into()),
            output: Some("out.csv".into()),
            ..Default::default()
        }
    }

    #[test]
    fn toml_round_trip_and_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        std::fs::write(
            &path,
            r#"
server = "linkage.example.jp:4433"
ca = "pki/ca.pem"
cert = "/abs/c.pem"
key = "pki/c.key"
input = "held.csv"
output = "out.csv"
encoding = "cp932"
batch_size = 512
[columns]
insurer = "保険者番号"
symbol = "記号"
number = "番号"
branch = "枝番"
[retry]
max_attempts = 3
"#,
        )
        .unwrap();
        let cfg = ClientConfig::load(&path).unwrap();
        assert_eq!(
            cfg.ca.as_deref(),
            Some(dir.path().join("pki/ca.pem").as_path())
        );
        assert_eq!(cfg.cert.as_deref(), Some(Path::new("/abs/c.pem")));
        let r = cfg.resolve().unwrap();
        assert_eq!(r.server_name, "linkage.example.jp");
        assert_eq!(r.encoding, Encoding::Cp932);
        assert_eq!(r.batch_size, 512);
        assert_eq!(r.retry.max_attempts, 3);
        assert!(
            matches!(r.columns, Some(HeldColumns::Fields { ref insurer, .. }) if insurer == "保険者番号")
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        std::fs::write(&path, "sever = \"x:1\"\n").unwrap();
        let e = ClientConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("sever"), "{e}");
        std::fs::write(&path, "privacy = \"k-anon\"\n").unwrap();
        assert!(ClientConfig::load(&path).is_err());
    }

    #[test]
    fn merge_overrides_and_defaults() {
        let mut cfg = base();
        cfg.columns = Some(ColumnNames {
            combined: Some("番号".into()),
            ..Default::default()
        });
        cfg.merge(ClientConfig {
            server_name: Some("srv".into()),
            columns: Some(ColumnNames {
                insurer: Some("a".into()),
                symbol: Some("b".into()),
                number: Some("c".into()),
                branch: Some("d".into()),
                combined: None,
            }),
            retry: Some(RetrySettings {
                max_attempts: Some(9),
                ..Default::default()
            }),
            ..Default::default()
        });
        let r = cfg.resolve().unwrap();
        assert_eq!(r.server_name, "srv");
        assert_eq!(r.server, "127.0.0.1:4433");
        assert_eq!(r.retry.max_attempts, 9);
        assert_eq!(r.retry.initial_backoff, Duration::from_millis(1000));
        assert!(matches!(r.columns, Some(HeldColumns::Fields { .. })));
        assert_eq!(base().resolve().unwrap().columns, None);
    }

    #[test]
    fn classical_key_exchange_is_off_unless_allowed() {
        assert!(!base().resolve().unwrap().allow_classical_key_exchange);
        let mut cfg = base();
        cfg.merge(ClientConfig {
            allow_classical_key_exchange: Some(true),
            ..Default::default()
        });
        assert!(cfg.resolve().unwrap().allow_classical_key_exchange);
        let t: ClientConfig = toml::from_str("allow_classical_key_exchange = true").unwrap();
        assert_eq!(t.allow_classical_key_exchange, Some(true));
    }

    #[test]
    fn resolve_rejects_missing_and_out_of_range() {
        let mut c = base();
        c.key = None;
        assert!(matches!(
            c.resolve(),
            Err(ClientError::MissingSetting { setting: "key" })
        ));
        let mut c = base();
        c.batch_size = Some(5000);
        assert!(c.resolve().is_err());
        let mut c = base();
        c.server = Some("nohost".into());
        assert!(c.resolve().is_err());
        let mut c = base();
        c.output = c.input.clone();
        assert!(c.resolve().is_err());
        let mut c = base();
        c.columns = Some(ColumnNames {
            insurer: Some("a".into()),
            ..Default::default()
        });
        assert!(c.resolve().is_err());
        let mut c = base();
        c.server = Some("[::1]:4433".into());
        assert_eq!(c.resolve().unwrap().server_name, "::1");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = base().resolve().unwrap().retry;
        assert_eq!(p.backoff(1), Duration::from_millis(1000));
        assert_eq!(p.backoff(2), Duration::from_millis(2000));
        assert_eq!(p.backoff(3), Duration::from_millis(4000));
        assert_eq!(p.backoff(40), Duration::from_millis(60_000));
    }
}
