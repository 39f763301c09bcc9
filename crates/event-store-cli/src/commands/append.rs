//! `event-store append`: one event from the arguments, or NDJSON lines from stdin.

use std::io::Write as _;

use anyhow::Result;
use event_store::NewEvent;
use serde_json::Value;
use tokio::io::BufReader;

use crate::backend::{Access, StoreUrl};
use crate::cli::AppendArgs;
use crate::lines::{Options, append_lines};
use crate::out::{print_line, stdout};
use crate::usage::usage;

pub(crate) async fn run(url: &StoreUrl, args: AppendArgs) -> Result<()> {
    let options = Options {
        derive_ids: args.derive_ids,
        expected: args.expected_version,
    };
    if args.ndjson {
        let es = url.facade(Access::Write).await?;
        let mut out = stdout();
        let input = BufReader::new(tokio::io::stdin());
        append_lines(&es, input, options, |events, _, _| {
            for e in events {
                print_line(&mut out, e)?;
            }
            Ok(())
        })
        .await?;
        out.flush()?;
        return Ok(());
    }
    // The arguments are checked before the store is opened (or created).
    let (Some(stream), Some(kind)) = (args.stream, args.kind) else {
        return Err(usage(
            "append needs STREAM and NAMESPACE.TYPE (or --ndjson)",
        ));
    };
    let Some((namespace, event_type)) = kind.split_once('.') else {
        return Err(usage(format!(
            "`{kind}` is not NAMESPACE.TYPE (like shop.OrderPlaced)"
        )));
    };
    let data: Value = match &args.data {
        Some(text) => event_store::json::value_from_str("DATA_JSON", text)
            .map_err(|e| usage(e.to_string()))?,
        None => Value::Object(serde_json::Map::new()),
    };
    let mut event = NewEvent::new(namespace, event_type, data);
    event.id = args.id;
    let es = url.facade(Access::Write).await?;
    let appended = es
        .append(&stream, args.expected_version, vec![event])
        .await?;
    let mut out = stdout();
    for e in &appended.events {
        print_line(&mut out, e)?;
    }
    out.flush()?;
    Ok(())
}
