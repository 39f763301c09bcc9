//! One module per subcommand; [`run`] dispatches (every subcommand by name: adding one to
//! `cli::Command` without a line here does not compile).

mod append;
mod bench;
mod demo;
mod export;
mod import;
mod import_legacy;
mod init;
mod projections;
mod publish;
mod read;
mod schema;
mod stats;
mod subscribe;
mod tail;

use anyhow::Result;

use crate::backend::StoreUrl;
use crate::cli::{Cli, Command};

pub(crate) async fn run(cli: Cli) -> Result<()> {
    let url = StoreUrl {
        url: cli.url,
        schema: cli.schema,
        ca_file: cli.pg_ca_file,
    };
    match cli.command {
        Command::Init(args) => init::run(&url, &args).await,
        Command::Append(args) => append::run(&url.facade().await?, args).await,
        Command::Read(args) => read::run(&url.facade().await?, args).await,
        Command::Tail(args) => tail::run(&url.facade().await?, args).await,
        Command::Stats(args) => stats::run(&url.open(false).await?, &args).await,
        Command::Schema(args) => schema::run(&url.open(false).await?, &args).await,
        Command::Export(args) => export::run(&url.facade().await?, args).await,
        Command::Import(args) => import::run(&url.facade().await?, args).await,
        Command::ImportLegacy(args) => import_legacy::run(&url.facade().await?, args).await,
        Command::Publish(args) => publish::run(url.open(false).await?, args).await,
        Command::Subscribe(args) => subscribe::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Projections(command) => projections::run(url.open(false).await?, command).await,
    }
}
