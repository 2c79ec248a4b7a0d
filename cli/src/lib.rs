//! The `ferry` CLI: a clap dispatcher that routes to the client commands (over the HTTP API),
//! the embedded server and local tools. Business logic lives in the library crates.

mod agent_client;
mod args;
mod client;
mod commands;
mod entrypoint;
mod manifest;
mod output;
mod server;
pub mod sigv4;
mod stacks;

use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;

/// The exit status of a client command whose reader closed its output early
/// (`ferry flow-run ls | head -1`): 141, as a process ended by SIGPIPE reports in a shell.
pub const CLOSED_OUTPUT_EXIT: i32 = 141;

/// Client commands end quietly with [`CLOSED_OUTPUT_EXIT`] when their stdout or stderr is a
/// pipe closed early, instead of panicking in `println!`. Rust ignores SIGPIPE, so a write to
/// a closed pipe is an `EPIPE` error that the print macros turn into a panic; this hook turns
/// exactly that panic into the exit a Unix tool killed by SIGPIPE would have. Long-running
/// processes (server, agent, dev) keep the default: they write to sockets and must not die.
fn end_quietly_on_closed_output() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(CLOSED_OUTPUT_EXIT);
        }
        default(info)
    }));
}

/// Runs the CLI; errors are printed with their cause chain and exit non-zero.
pub async fn main() -> ExitCode {
    let cli = Cli::parse_from(args::seed_spellings(std::env::args_os()));
    if !cli.command.is_long_running() {
        end_quietly_on_closed_output();
    }
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
