//! Command-line arguments and dispatch.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::i18n::Lang;
use crate::{client_cmd, demo, pki_cmd, server_cmd};

/// nayose: find which of the insured-person numbers you hold belong to the same person, and
/// learn nothing else.
#[derive(Debug, Parser)]
#[command(name = "nayose", version, about, long_about = None)]
pub(crate) struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Language of the messages an entity's staff read (the summary and errors of client
    /// link): en or ja. Default: the locale (LC_ALL, LC_MESSAGES, LANG starting with ja:
    /// Japanese), else English.
    #[arg(long, global = true, value_parser = ["en", "ja"])]
    pub(crate) lang: Option<String>,
    /// Format of the log lines on stderr: text (plain, coloured only on a terminal) or json
    /// (one JSON object per line, never coloured, for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Plain text; ANSI colours only when stderr is a terminal.
    Text,
    /// JSON lines: `{"timestamp":…,"level":…,"fields":{"message":…},"target":…}`.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system on loopback with synthetic data and check the result.
    Demo(DemoArgs),
    /// The management body's server node.
    #[command(subcommand)]
    Server(server_cmd::ServerCommand),
    /// The accredited entity's client node.
    #[command(subcommand)]
    Client(client_cmd::ClientCommand),
    /// Certificates: a development PKI for trials, and the real workflow (request, sign,
    /// revoke).
    #[command(subcommand)]
    Pki(pki_cmd::PkiCommand),
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Persons in the synthetic registry (each holds 1 to 6 numbers, 3.5 on average).
    #[arg(long, default_value_t = 57_000)]
    pub(crate) persons: usize,
    /// Rows in the accredited entity's held file.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) held: usize,
    /// Seed of the synthetic data (the same seed gives the same data).
    #[arg(long, default_value_t = 2026)]
    pub(crate) seed: u64,
    /// Keep the demo's files in this directory instead of a temporary one.
    #[arg(long)]
    pub(crate) keep: Option<PathBuf>,
    /// Print the client's summary as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

impl Cli {
    /// The language of messages: `--lang`, else the locale.
    pub(crate) fn lang(&self) -> Lang {
        Lang::select(self.lang.as_deref()).unwrap_or_default()
    }

    /// Whether this is the long-running server, whose operators need its info-level status
    /// lines (epoch pickup, per-client counters) without asking for them.
    pub(crate) fn is_server(&self) -> bool {
        matches!(
            self.command,
            Command::Server(server_cmd::ServerCommand::Serve(_))
        )
    }
}

/// Logs go to stderr; stdout is reserved for `--json` output. The server logs at info by
/// default, every other command at warn; `-v`/`-q` and `RUST_LOG` override. Text logs carry
/// colours (ANSI escapes) only when stderr is a terminal, so log files and pipes get plain
/// text; JSON lines never do.
pub(crate) fn init_logging(verbose: u8, quiet: bool, server: bool, format: LogFormat) {
    let default = match (quiet, verbose + u8::from(server)) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

pub(crate) fn run(cli: Cli) -> Result<ExitCode> {
    let lang = cli.lang();
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Server(cmd) => {
            server_cmd::run(cmd, cli.quiet, cli.log_format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(cmd) => client_cmd::run(cmd, cli.quiet, lang),
        Command::Pki(cmd) => {
            pki_cmd::run(cmd)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
