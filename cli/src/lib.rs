//! The `ferry` CLI: a clap dispatcher that routes to the client commands (over the HTTP API),
//! the embedded server and local tools. Business logic lives in the library crates.

mod agent_client;
mod args;
mod client;
mod commands;
mod manifest;
mod output;
mod server;
pub mod sigv4;
mod stacks;

use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;

/// Runs the CLI; errors are printed with their cause chain and exit non-zero.
pub async fn main() -> ExitCode {
    let cli = Cli::parse_from(args::seed_spellings(std::env::args_os()));
    match commands::dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<commands::agent::Exit>() {
            Some(exit) => {
                eprintln!("{}", exit.message);
                ExitCode::from(exit.code)
            }
            None => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
