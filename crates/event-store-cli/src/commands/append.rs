//! `event-store append`: one event from the arguments, or NDJSON lines from stdin.

use std::io::Write as _;

use anyhow::{Result, bail};
use event_store::{EventStore, NewEvent};
use serde_json::Value;
use tokio::io::BufReader;

use crate::backend::AnyStore;
use crate::cli::AppendArgs;
use crate::lines::append_lines;
use crate::out::{print_line, stdout};

pub(crate) async fn run(es: &EventStore<AnyStore>, args: AppendArgs) -> Result<()> {
    if args.ndjson {
        return ndjson(es, args.derive_ids).await;
    }
    let (Some(stream), Some(kind)) = (args.stream, args.kind) else {
        bail!("append needs STREAM and NAMESPACE.TYPE (or --ndjson)");
    };
    let Some((namespace, event_type)) = kind.split_once('.') else {
        bail!("`{kind}` is not NAMESPACE.TYPE (like shop.OrderPlaced)");
    };
    let data: Value = match &args.data {
        Some(text) => event_store::json::value_from_str("DATA_JSON", text)?,
        None => Value::Object(serde_json::Map::new()),
    };
    let expected = args.expected_version;
    let mut event = NewEvent::new(namespace, event_type, data);
    event.id = args.id;
    let appended = es.append(&stream, expected, vec![event]).await?;
    let mut out = stdout();
    for e in &appended.events {
        print_line(&mut out, e)?;
    }
    out.flush()?;
    Ok(())
}

async fn ndjson(es: &EventStore<AnyStore>, derive_ids: bool) -> Result<()> {
    let mut out = stdout();
    let input = BufReader::new(tokio::io::stdin());
    append_lines(es, input, derive_ids, |events, _| {
        for e in events {
            print_line(&mut out, e)?;
        }
        Ok(())
    })
    .await?;
    out.flush()?;
    Ok(())
}
