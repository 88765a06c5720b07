//! `nayose`: the command-line node of nayose, privacy-preserving linkage of Japanese
//! insured-person numbers.
//!
//! Every subcommand is a thin shell over a library crate: `server …` over `nayose-server`,
//! `client link` over `nayose-client`, `pki …` over `nayose-pki`, and `demo` runs all of them
//! together on loopback. Errors are reported through `anyhow` with their causes, and the process
//! exits non-zero on any failure.

mod cli;
mod client_cmd;
mod demo;
mod pki_cmd;
mod progress;
mod server_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose, args.quiet, args.is_server());
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
