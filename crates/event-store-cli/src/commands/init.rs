//! `event-store init`: create or migrate the store's schema.

use anyhow::Result;

use crate::backend::StoreUrl;

pub(crate) async fn run(url: &StoreUrl) -> Result<()> {
    let store = url.open(true).await?;
    println!("{}", store.migrate().await?);
    Ok(())
}
