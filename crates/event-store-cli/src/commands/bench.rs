//! `event-store bench`: the benchmark harness (crate `event-store-bench`).

use anyhow::Result;

use crate::cli::BenchArgs;

pub(crate) async fn run(args: BenchArgs) -> Result<()> {
    event_store_bench::run(event_store_bench::Options {
        quick: args.quick,
        json: args.json,
        pg: args.pg,
        amqp: args.amqp,
        only: args.only,
    })
    .await?;
    Ok(())
}
