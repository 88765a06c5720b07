//! `nayose`: the command-line node of nayose, privacy-preserving linkage of Japanese
//! insured-person numbers.
//!
//! Every subcommand is a thin shell over a library crate: `server …` over `nayose-server`,
//! `client link` over `nayose-client`, `pki …` over `nayose-pki`, and `demo` runs all of them
//! together on loopback. Errors are reported through `anyhow` with their causes, and the process
//! exits non-zero on any failure.

mod announce_cmd;
mod cli;
mod client_cmd;
mod demo;
mod i18n;
mod pki_cmd;
mod progress;
mod server_cmd;
mod signals;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose, args.quiet, args.is_server(), args.log_format);
    let lang = args.lang();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            for line in i18n::error_lines(lang, &e) {
                eprintln!("{line}");
            }
            ExitCode::FAILURE
        }
    }
}
