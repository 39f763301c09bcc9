//! `event-store`: operate an event store from the shell. See `event-store --help`.

mod backend;
mod cli;
mod commands;
mod lines;
mod out;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc rather than the system allocator: reads decode on one thread and free on another,
/// which glibc's allocator handles poorly (a third of a read's time in `malloc` and `free`
/// under `perf`; the README's performance section gives the measured difference).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // Usage mistakes: clap's first line, which names the problem.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("error: invalid arguments");
            eprintln!("{first} (see --help)");
            return ExitCode::from(2);
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
    match runtime.block_on(commands::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
