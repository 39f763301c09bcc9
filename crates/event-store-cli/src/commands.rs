//! The subcommands that operate a store.

use std::io::{BufWriter, IsTerminal as _, Write as _};

use anyhow::{Context as _, Result, anyhow, bail};
use event_store::{
    Checkpoints as _, Direction, EventStore, ExpectedVersion, NewEvent, PAGE_SIZE, Position,
    RecordedEvent, Store,
};
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::io::{AsyncBufRead, BufReader};

use crate::backend::AnyStore;
use crate::cli::{
    AppendArgs, Cli, Command, ExportArgs, Format, ImportArgs, ReadArgs, StatsArgs, TailArgs,
};
use crate::lines::{Batcher, next_line, parse};
use crate::output::Printer;

pub(crate) async fn run(cli: Cli) -> Result<()> {
    let (url, schema, ca_file) = (cli.url, cli.schema, cli.pg_ca_file);
    let open = |init| AnyStore::open(&url, &schema, ca_file.clone(), init);
    match cli.command {
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Subscribe(args) => crate::broker::subscribe(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Init => {
            let store = open(true).await?;
            println!("{}", store.migrate().await?);
            Ok(())
        }
        command => {
            let store = open(false).await?;
            let es =
                EventStore::from_store(store.clone()).with_poll_interval(store.poll_interval());
            match command {
                Command::Append(args) if args.ndjson => append_ndjson(&es, args.derive_ids).await,
                Command::Append(args) => append_one(&es, args).await,
                Command::Read(args) => read(&es, args).await,
                Command::Tail(args) => tail(&es, args).await,
                Command::Stats(args) => stats(&store, &args).await,
                Command::Export(args) => export(&es, args).await,
                Command::Import(args) => import(&es, args).await,
                Command::Publish(args) => crate::broker::publish(store, args).await,
                Command::Init | Command::Demo(_) | Command::Subscribe(_) | Command::Bench(_) => {
                    Ok(())
                }
            }
        }
    }
}

fn stdout() -> BufWriter<std::io::Stdout> {
    BufWriter::new(std::io::stdout())
}

fn print_line(out: &mut impl std::io::Write, e: &RecordedEvent) -> Result<()> {
    serde_json::to_writer(&mut *out, e)?;
    writeln!(out)?;
    Ok(())
}

fn checkpoint(text: &str) -> Result<Position> {
    text.parse::<Position>().map_err(|_| {
        anyhow!("--from `{text}` is not a checkpoint (a number like 42, or high:low like 7741:42)")
    })
}

async fn append_one(es: &EventStore<AnyStore>, args: AppendArgs) -> Result<()> {
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
    let expected: ExpectedVersion = args.expected_version.parse().map_err(|_| {
        anyhow!(
            "--expected-version `{}` is not any, no-stream, exists or a version number",
            args.expected_version
        )
    })?;
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

async fn append_lines<R: AsyncBufRead + Unpin>(
    es: &EventStore<AnyStore>,
    mut input: R,
    derive_ids: bool,
    mut on_appended: impl FnMut(&[RecordedEvent], u64) -> Result<()>,
) -> Result<crate::lines::Progress> {
    let mut batcher = Batcher::new(es, derive_ids);
    let mut buf = Vec::new();
    let mut read = 0u64;
    let mut number = 0usize;
    loop {
        let more = next_line(&mut input, &mut buf, &mut read)
            .await
            .with_context(|| format!("reading line {}", number + 1))?;
        if more.is_none() {
            break;
        }
        number += 1;
        let line = match parse(&buf) {
            Ok(Some(line)) => line,
            Ok(None) => {
                batcher.skip(number);
                continue;
            }
            Err(e) => bail!("line {number}: {e}; {}", batcher.progress.describe()),
        };
        match batcher.push(number, line).await {
            Ok(events) => on_appended(&events, read)?,
            Err(e) => bail!("{e}; {}", batcher.progress.describe()),
        }
    }
    match batcher.flush().await {
        Ok(events) => on_appended(&events, read)?,
        Err(e) => bail!("{e}; {}", batcher.progress.describe()),
    }
    Ok(batcher.progress)
}

async fn append_ndjson(es: &EventStore<AnyStore>, derive_ids: bool) -> Result<()> {
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

async fn read(es: &EventStore<AnyStore>, args: ReadArgs) -> Result<()> {
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Ndjson
    });
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut printer = Printer::new(stdout(), format)?;
    let direction = if args.backward {
        Direction::Backward
    } else {
        Direction::Forward
    };
    if let Some(stream) = args.stream {
        let from = match &args.from {
            Some(f) => f
                .parse::<u64>()
                .map_err(|_| anyhow!("--from for a stream is a version number, not `{f}`"))?,
            None if args.backward => u64::MAX,
            None => 0,
        };
        let mut events = Box::pin(es.read_stream(&stream, from, direction).take(limit));
        while let Some(e) = events.next().await {
            printer.event(&e?)?;
        }
    } else if args.backward {
        let mut before = args.from.as_deref().map(checkpoint).transpose()?;
        let mut left = limit;
        while left > 0 {
            let page = es
                .store()
                .read_all_backward(before, PAGE_SIZE.min(left))
                .await?;
            let Some(last) = page.last() else { break };
            before = Some(last.position);
            left -= page.len();
            for e in &page {
                printer.event(e)?;
            }
        }
    } else {
        let after = args
            .from
            .as_deref()
            .map(checkpoint)
            .transpose()?
            .unwrap_or(Position::START);
        let mut events = Box::pin(es.read_all(after).take(limit));
        while let Some(e) = events.next().await {
            printer.event(&e?)?;
        }
    }
    printer.finish()?;
    Ok(())
}

async fn tail(es: &EventStore<AnyStore>, args: TailArgs) -> Result<()> {
    let start = match &args.from {
        Some(f) => checkpoint(f)?,
        None => es
            .store()
            .read_all_backward(None, 1)
            .await?
            .first()
            .map_or(Position::START, |e| e.position),
    };
    let idle = args.idle_exit;
    let keep = |e: &RecordedEvent| {
        args.stream.as_ref().is_none_or(|s| *s == e.stream)
            && args.namespace.as_ref().is_none_or(|n| *n == e.namespace)
            && args.event_type.as_ref().is_none_or(|t| *t == e.event_type)
    };
    let limit = args.limit.unwrap_or(usize::MAX);
    if limit == 0 {
        return Ok(());
    }
    let mut out = stdout();
    let mut tail = Box::pin(es.tail(start, None));
    // A deadline too far to represent is no deadline.
    let mut deadline = idle.and_then(|d| tokio::time::Instant::now().checked_add(d));
    let mut count = 0;
    loop {
        let next = match deadline {
            Some(at) => match tokio::time::timeout_at(at, tail.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => tail.next().await,
        };
        match next {
            Some(Ok(e)) if keep(&e) => {
                print_line(&mut out, &e)?;
                out.flush()?;
                count += 1;
                if count >= limit {
                    break;
                }
                deadline = idle.and_then(|d| tokio::time::Instant::now().checked_add(d));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => eprintln!("warning: {e}; still following"),
            None => break,
        }
    }
    Ok(())
}

/// Followers of the log (relays) with their checkpoints and how many events they are behind
/// (counted up to 100 000).
async fn followers(store: &AnyStore) -> Result<Vec<(String, Position, u64)>> {
    let mut out = Vec::new();
    for (name, at) in store.checkpoints().await? {
        let mut lag = 0u64;
        let mut after = at;
        while lag < 100_000 {
            let page = store.read_all(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            lag += page.len() as u64;
        }
        out.push((name, at, lag));
    }
    Ok(out)
}

async fn stats(store: &AnyStore, args: &StatsArgs) -> Result<()> {
    let stats = store.stats().await?;
    let followers = followers(store).await?;
    let mut out = stdout();
    match args.format {
        Format::Json | Format::Ndjson => {
            let mut value = serde_json::to_value(&stats)?;
            value["checkpoints"] = followers
                .iter()
                .map(
                    |(name, at, lag)| serde_json::json!({"name": name, "position": at, "lag": lag}),
                )
                .collect();
            serde_json::to_writer(&mut out, &value)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(out, "events        {}", stats.events)?;
            writeln!(out, "streams       {}", stats.streams)?;
            match stats.size_bytes {
                Some(b) => writeln!(out, "size on disk  {}", human_bytes(b))?,
                None => writeln!(out, "size on disk  -")?,
            }
            match stats.head {
                Some(h) => writeln!(out, "head          {h}")?,
                None => writeln!(out, "head          - (empty)")?,
            }
            if !stats.types.is_empty() {
                writeln!(out)?;
                let width = stats
                    .types
                    .iter()
                    .map(|t| t.namespace.len() + t.event_type.len() + 1)
                    .max()
                    .unwrap_or(4)
                    .max(4);
                writeln!(out, "{:<width$}  EVENTS", "TYPE")?;
                for t in &stats.types {
                    writeln!(
                        out,
                        "{:<width$}  {}",
                        format!("{}.{}", t.namespace, t.event_type),
                        t.events
                    )?;
                }
            }
            if !followers.is_empty() {
                writeln!(out)?;
                writeln!(
                    out,
                    "{:<40} {:<20} LAG (events behind)",
                    "FOLLOWER", "CHECKPOINT"
                )?;
                for (name, at, lag) in &followers {
                    writeln!(out, "{name:<40} {:<20} {lag}", at.to_string())?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

#[allow(clippy::cast_precision_loss)]
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn bar(total: Option<u64>, what: &str) -> ProgressBar {
    let bar = match total {
        Some(t) => ProgressBar::new(t).with_style(
            ProgressStyle::with_template(&format!(
                "{what} {{bar:40}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner(),
    };
    // Hidden unless stderr is a terminal (quiet when piped).
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

async fn export(es: &EventStore<AnyStore>, args: ExportArgs) -> Result<()> {
    let after = args
        .from
        .as_deref()
        .map(checkpoint)
        .transpose()?
        .unwrap_or(Position::START);
    let total = if after == Position::START {
        Some(es.store().stats().await?.events)
    } else {
        None
    };
    let mut out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(stdout()),
    };
    let progress = bar(total, "exporting");
    let mut events = Box::pin(es.read_all(after));
    let mut count = 0u64;
    let mut last = None;
    while let Some(e) = events.next().await {
        let e = e?;
        print_line(&mut out, &e)?;
        last = Some(e.position);
        count += 1;
        progress.inc(1);
    }
    out.flush()?;
    progress.finish_and_clear();
    if std::io::stderr().is_terminal() {
        match last {
            Some(p) => eprintln!("exported {count} events, through checkpoint {p}"),
            None => eprintln!("exported 0 events"),
        }
    }
    Ok(())
}

async fn import(es: &EventStore<AnyStore>, args: ImportArgs) -> Result<()> {
    let progress;
    let result = if args.file.as_os_str() == "-" {
        progress = bar(None, "importing");
        let p = &progress;
        append_lines(
            es,
            BufReader::new(tokio::io::stdin()),
            args.derive_ids,
            |_, _| {
                p.tick();
                Ok(())
            },
        )
        .await
    } else {
        let file = tokio::fs::File::open(&args.file)
            .await
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let size = file.metadata().await.map(|m| m.len()).ok();
        progress = bar(size, "importing");
        let p = &progress;
        append_lines(es, BufReader::new(file), args.derive_ids, |_, read| {
            p.set_position(read);
            Ok(())
        })
        .await
    };
    progress.finish_and_clear();
    let done = result?;
    eprintln!(
        "imported {} events ({} already present)",
        done.stored, done.already
    );
    if done.fresh_ids > 0 {
        eprintln!(
            "note: {} lines had no id and were given new ones: importing them again stores them \
             again (--derive-ids gives ids that repeat)",
            done.fresh_ids
        );
    }
    Ok(())
}
