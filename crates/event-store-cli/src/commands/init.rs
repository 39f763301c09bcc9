//! `event-store init`: create or migrate the store's schema.

use std::io::Write as _;

use anyhow::Result;
use event_store_postgres::Indexes;

use crate::backend::StoreUrl;
use crate::cli::{InitArgs, OptionalIndex};

pub(crate) async fn run(url: &StoreUrl, args: &InitArgs) -> Result<()> {
    let mut indexes = Indexes::default();
    for index in &args.index {
        match index {
            OptionalIndex::Subject => indexes.subject = true,
            OptionalIndex::Time => indexes.time = true,
        }
    }
    let store = url.init(indexes).await?;
    let ready = store.migrate().await?;
    writeln!(std::io::stdout(), "{ready}")?;
    Ok(())
}
