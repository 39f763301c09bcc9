//! One module per subcommand; [`run`] dispatches (every subcommand by name: adding one to
//! `cli::Command` without a line here does not compile).

mod append;
mod bench;
mod demo;
mod export;
mod import;
mod import_legacy;
mod init;
mod keys;
mod man;
mod migrate;
mod projections;
mod publish;
mod read;
mod replicas;
mod schema;
mod serve;
mod stats;
mod streams;
mod subscribe;
mod tail;

use anyhow::Result;

use crate::backend::{Access, StoreUrl};
use crate::cli::{Cli, Command, ProjectionsCommand};
use crate::usage::usage;

/// Runs the command. `url_given`: whether `--url` was on the command line (not only in the
/// environment).
pub(crate) async fn run(cli: Cli, url_given: bool) -> Result<()> {
    let url = StoreUrl {
        url: cli.url,
        schema: cli.schema,
        ca_file: cli.pg_ca_file,
        replicas: crate::backend::replicas(&cli.replicas, cli.consistency, cli.max_replica_lag)?,
    };
    let quiet = cli.quiet;
    match cli.command {
        Command::Init(args) => init::run(&url, &args).await,
        Command::Append(args) => append::run(&url, args).await,
        Command::Read(args) => read::run(&url.facade(Access::Read).await?, args, quiet).await,
        Command::Tail(args) => tail::run(&url.facade(Access::Read).await?, args).await,
        Command::Streams(args) => streams::run(&url.open(Access::Read).await?, args).await,
        Command::Stats(args) => stats::run(&url.open(Access::Read).await?, &args).await,
        Command::Replicas(args) => replicas::run(&url, &args).await,
        Command::Schema(args) => schema::run(&url.open(Access::Read).await?, &args, quiet).await,
        Command::Export(args) => export::run(&url.facade(Access::Read).await?, args, quiet).await,
        Command::Import(args) => import::run(&url, args, quiet).await,
        Command::ImportLegacy(args) => {
            import_legacy::run(&url.facade(Access::Write).await?, args, quiet).await
        }
        Command::Publish(args) => publish::run(url.open(Access::Update).await?, args, quiet).await,
        Command::Subscribe(args) => subscribe::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Demo(args) if url_given => {
            let _ = args;
            Err(usage(
                "demo runs on a fresh SQLite file of its own and does not take --url (give --keep PATH to keep its file)",
            ))
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Projections(command) => {
            let access = match &command {
                ProjectionsCommand::List(_) | ProjectionsCommand::Status(_) => Access::Read,
                ProjectionsCommand::Reset(_) | ProjectionsCommand::Resume(_) => Access::Update,
            };
            projections::run(url.open(access).await?, command).await
        }
        Command::Serve(args) => serve::run(url.facade(Access::Update).await?, args, quiet).await,
        Command::Migrate(command) => migrate::run(&url, command).await,
        Command::Completions(args) => man::completions(&args),
        Command::Man(args) => man::run(&args),
        Command::Forget(args) => keys::forget(url.facade(Access::Update).await?, args).await,
        Command::Close(args) => {
            streams::close(&url.facade(Access::Update).await?, args, true).await
        }
        Command::Reopen(args) => {
            streams::close(&url.facade(Access::Update).await?, args, false).await
        }
        Command::Keys(command @ crate::cli::KeysCommand::Generate(_)) => {
            keys::run(None, command, quiet).await
        }
        Command::Keys(command) => {
            keys::run(Some(url.open(Access::Update).await?), command, quiet).await
        }
    }
}
