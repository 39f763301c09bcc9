//! `event-store`: operate an event store from the shell. See `event-store --help`.

mod backend;
mod cli;
mod commands;
mod filter;
mod lines;
mod out;
mod output;
mod progress;
mod prometheus;
mod summary;
mod usage;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};

/// mimalloc rather than the system allocator: reads decode on one thread and free on another,
/// which glibc's allocator handles poorly (a third of a read's time in `malloc` and `free`
/// under `perf`; the README's performance section gives the measured difference).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let parsed = cli::Cli::command().try_get_matches().and_then(|matches| {
        let url_given = matches.value_source("url") == Some(clap::parser::ValueSource::CommandLine);
        cli::Cli::from_arg_matches(&matches).map(|cli| (cli, url_given))
    });
    let (args, url_given) = match parsed {
        Ok(parsed) => parsed,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // Usage mistakes: clap's whole message (what is missing, the valid values, the
            // usage line and the pointer to --help).
            let _ = e.print();
            return ExitCode::from(usage::USAGE);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            // By default only the store's own errors: a failure the command reports as its
            // `error:` line is not logged a second time by the drivers underneath (lapin logs
            // a refused login at ERROR level).
            tracing_subscriber::EnvFilter::try_from_env("EVENT_STORE_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "off,event_store=error,event_store_amqp=error,event_store_postgres=error,\
                     event_store_sqlite=error,event_store_cli=error",
                )
            }),
        )
        .with_writer(std::io::stderr)
        // Colour only for people, and never when NO_COLOR is set (https://no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(commands::run(args, url_given));
    // Whatever still runs is abandoned, not awaited: a read of stdin that will never return
    // (after Ctrl-C, or an error, with the input still open) must not keep the process alive.
    // Every write a command reported was committed before its future returned.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match usage::outcome(&e) {
            // stdout was closed by its reader (`read | head -1`): done, as every Unix tool.
            None => ExitCode::SUCCESS,
            Some((message, code)) => {
                eprintln!("error: {message}");
                code
            }
        },
    }
}
