//! `event-store import-legacy`: the original store's per-service `events` tables into this store
//! (the original's "unifier", done right).
//!
//! Two passes over one snapshot of each source. The first reads every id in id order from all
//! sources at once (a merge, constant memory) and finds the ids present in more than one source:
//! the same content is one event, imported once; other content is a collision, reported with both
//! contents and not imported. The second merges the sources' rows by time then id, cleans each
//! (`event_store::legacy::clean`), assigns it a stream and appends windows of 500 events in one
//! multi-stream transaction each, in order. Ids are kept, so a re-run stores nothing new.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;

use anyhow::{Context as _, Result, bail};
use event_store::legacy::clean;
use event_store::{AppendBatch, Error, EventStore, ExpectedVersion, NewEvent, Uuid};
use event_store_postgres::PgTls;
use event_store_postgres::legacy::{LegacyRow, LegacySource};
use serde_json::{Value, json};

use crate::backend::AnyStore;
use crate::cli::{Format, ImportLegacyArgs, StreamKey};
use crate::out::stdout;
use crate::progress::bar;

/// Rows fetched per round trip, per source.
const FETCH: u32 = 1000;
/// Most events appended in one transaction.
const WINDOW_EVENTS: usize = 500;
/// Most bytes of JSON appended in one transaction (half the store's limit for one append).
const WINDOW_BYTES: usize = event_store::limits::MAX_BATCH_BYTES / 2;

/// An event on its way into the store.
struct Pending {
    source: usize,
    stream: String,
    event: NewEvent,
}

struct Source {
    name: String,
    reader: LegacySource,
    rows: std::collections::VecDeque<LegacyRow>,
    done: bool,
}

#[derive(Default, serde::Serialize)]
struct SourceReport {
    rows: u64,
    imported: u64,
    already_present: u64,
    types: BTreeMap<String, u64>,
}

#[derive(Default, serde::Serialize)]
struct Report {
    dry_run: bool,
    sources: BTreeMap<String, SourceReport>,
    cleaned: BTreeMap<&'static str, u64>,
    without_stream_key: u64,
    duplicates_with_same_content: u64,
    collisions: Vec<Value>,
    refused: Vec<Value>,
}

pub(crate) async fn run(
    es: &EventStore<AnyStore>,
    args: ImportLegacyArgs,
    quiet: bool,
) -> Result<()> {
    let mut sources = connect(&args).await?;
    let mut report = Report {
        dry_run: args.dry_run,
        ..Report::default()
    };
    let mut total = 0;
    for s in &sources {
        total += s.reader.count().await?;
    }

    // Pass 1: ids in more than one source.
    let progress = bar(Some(total), "checking ids", quiet);
    let shared = shared_ids(&mut sources, |n| progress.inc(n)).await?;
    progress.finish_and_clear();
    let (collide, mut once) = compare_shared(&sources, &shared, &mut report).await?;

    // Pass 2: rows by time then id, cleaned, appended in runs of one stream.
    let progress = bar(
        Some(total),
        if args.dry_run {
            "checking"
        } else {
            "importing"
        },
        quiet,
    );
    for s in &mut sources {
        s.reader.start_rows().await?;
    }
    // One transaction per window of events, in order, across streams; a window is appended
    // while the next one is read.
    let mut appender = Appender {
        es: es.clone(),
        names: std::sync::Arc::new(sources.iter().map(|s| s.name.clone()).collect()),
        dry_run: args.dry_run,
        in_flight: None,
    };
    let mut window: Vec<Pending> = Vec::new();
    let mut window_bytes = 0usize;
    while let Some((i, row)) = next_row(&mut sources).await? {
        progress.inc(1);
        let name = sources[i].name.clone();
        let per = report.sources.entry(name.clone()).or_default();
        per.rows += 1;
        if collide.contains(&row.id) || (shared.contains_key(&row.id) && !once.insert(row.id)) {
            continue;
        }
        let id = row.id;
        let cleaned = match clean(id, row.data, row.context) {
            Ok(c) => c,
            Err(reason) => {
                report
                    .refused
                    .push(json!({"source": name, "id": id, "reason": reason}));
                continue;
            }
        };
        for fix in &cleaned.fixes {
            *report.cleaned.entry(fix.name()).or_default() += 1;
        }
        let event = cleaned.event;
        let stream = match stream_for(&event, &args.stream_keys) {
            Some(key) => format!("{}{key}", args.stream_prefix),
            None => {
                report.without_stream_key += 1;
                args.fallback_stream.replace("{source}", &name)
            }
        };
        // Refuse what the store would refuse, per event, before anything is appended.
        let bytes = match AppendBatch::new(&stream, ExpectedVersion::Any, vec![event.clone()]) {
            Ok(b) => b.size_bytes(),
            Err(e) => {
                report
                    .refused
                    .push(json!({"source": name, "id": id, "reason": e.to_string()}));
                continue;
            }
        };
        *per.types
            .entry(format!("{}.{}", event.namespace, event.event_type))
            .or_default() += 1;
        if window.len() == WINDOW_EVENTS || window_bytes + bytes > WINDOW_BYTES {
            appender.flush(&mut window, &mut report).await?;
            window_bytes = 0;
        }
        window_bytes += bytes;
        window.push(Pending {
            source: i,
            stream,
            event,
        });
    }
    appender.flush(&mut window, &mut report).await?;
    appender.wait(&mut report).await?;
    progress.finish_and_clear();
    print_report(&report, args.format)?;
    Ok(())
}

/// Connects to every source, each in its own snapshot.
async fn connect(args: &ImportLegacyArgs) -> Result<Vec<Source>> {
    let tls = match &args.pg_ca_file {
        Some(ca) => PgTls::Verified {
            ca_file: Some(ca.clone()),
        },
        None => PgTls::FromUrl,
    };
    let mut sources = Vec::new();
    let mut seen_names = HashSet::new();
    for (name, url) in &args.sources {
        if !seen_names.insert(name.clone()) {
            bail!("--source {name}=… is given twice");
        }
        let reader = LegacySource::connect(url, &tls, &args.table)
            .await
            .with_context(|| format!("source `{name}`"))?;
        sources.push(Source {
            name: name.clone(),
            reader,
            rows: std::collections::VecDeque::new(),
            done: false,
        });
    }
    Ok(sources)
}

/// The ids present in more than one source, with the sources holding each.
async fn shared_ids(
    sources: &mut [Source],
    mut progress: impl FnMut(u64),
) -> Result<HashMap<Uuid, Vec<usize>>> {
    let mut heads: Vec<std::collections::VecDeque<Uuid>> = Vec::new();
    let mut done = vec![false; sources.len()];
    for s in sources.iter_mut() {
        s.reader.start_ids().await?;
        heads.push(std::collections::VecDeque::new());
    }
    let mut shared = HashMap::new();
    loop {
        for (i, s) in sources.iter_mut().enumerate() {
            if heads[i].is_empty() && !done[i] {
                let page = s.reader.next_ids(FETCH * 10).await?;
                done[i] = page.is_empty();
                heads[i].extend(page);
            }
        }
        let Some(min) = heads.iter().filter_map(|h| h.front().copied()).min() else {
            return Ok(shared);
        };
        let holders: Vec<usize> = (0..heads.len())
            .filter(|i| heads[*i].front() == Some(&min))
            .collect();
        for i in &holders {
            heads[*i].pop_front();
        }
        progress(holders.len() as u64);
        if holders.len() > 1 {
            shared.insert(min, holders);
        }
    }
}

/// Splits the shared ids into collisions (other content: reported, never imported) and
/// duplicates (the same content in several sources: imported once); returns the collisions and
/// an empty set to record which duplicates were imported.
async fn compare_shared(
    sources: &[Source],
    shared: &HashMap<Uuid, Vec<usize>>,
    report: &mut Report,
) -> Result<(HashSet<Uuid>, HashSet<Uuid>)> {
    let ids: Vec<Uuid> = shared.keys().copied().collect();
    let mut contents: HashMap<Uuid, Vec<(String, Value)>> = HashMap::new();
    for chunk in ids.chunks(1000) {
        for s in sources {
            for row in s.reader.rows_by_id(chunk).await? {
                contents.entry(row.id).or_default().push((
                    s.name.clone(),
                    json!({"data": row.data, "context": row.context}),
                ));
            }
        }
    }
    let mut collide = HashSet::new();
    let mut ids: Vec<_> = contents.into_iter().collect();
    ids.sort_by_key(|(id, _)| *id);
    for (id, versions) in ids {
        if versions.windows(2).all(|w| w[0].1 == w[1].1) {
            report.duplicates_with_same_content += 1;
        } else {
            collide.insert(id);
            report.collisions.push(json!({
                "id": id,
                "sources": versions
                    .into_iter()
                    .map(|(name, content)| json!({"source": name, "content": content}))
                    .collect::<Vec<_>>(),
            }));
        }
    }
    Ok((collide, HashSet::new()))
}

/// The next row by (time, id) across the sources (rows without a readable time last).
async fn next_row(sources: &mut [Source]) -> Result<Option<(usize, LegacyRow)>> {
    for s in sources.iter_mut() {
        if s.rows.is_empty() && !s.done {
            let page = s.reader.next_rows(FETCH).await?;
            s.done = page.is_empty();
            s.rows.extend(page);
        }
    }
    let best = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            s.rows
                .front()
                .map(|r| (i, (r.time_micros.unwrap_or(i64::MAX), r.id)))
        })
        .min_by_key(|(_, key)| *key)
        .map(|(i, _)| i);
    Ok(best.and_then(|i| sources[i].rows.pop_front().map(|r| (i, r))))
}

/// The stream key of an event: the first rule that finds a string or a number.
fn stream_for(event: &NewEvent, keys: &[StreamKey]) -> Option<String> {
    keys.iter().find_map(|key| {
        let value = match key {
            StreamKey::Data(field) => event.data.get(field),
            StreamKey::Subject(field) => event.context.subject.get(field),
        }?;
        match value {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    })
}

/// What appending one window found, per source (by index): events stored now, events stored
/// before, and refusals.
#[derive(Default)]
struct Outcome {
    counts: Vec<(usize, bool)>,
    refused: Vec<Value>,
}

/// Appends windows one after another while the caller reads the next: at most one window is
/// being appended, and each one's outcome is folded into the report before the next starts, so
/// windows go in order and a failure stops the import before anything after it is appended.
struct Appender {
    es: EventStore<AnyStore>,
    names: std::sync::Arc<Vec<String>>,
    dry_run: bool,
    in_flight: Option<tokio::task::JoinHandle<Result<Outcome>>>,
}

impl Appender {
    /// Waits for the window in flight, then starts appending `window` (emptied).
    async fn flush(&mut self, window: &mut Vec<Pending>, report: &mut Report) -> Result<()> {
        self.wait(report).await?;
        let taken = std::mem::take(window);
        if taken.is_empty() {
            return Ok(());
        }
        if self.dry_run {
            for p in &taken {
                count(report, &self.names, p.source, true);
            }
            return Ok(());
        }
        let (es, names) = (self.es.clone(), self.names.clone());
        self.in_flight = Some(tokio::spawn(async move {
            append_window(&es, taken, &names).await
        }));
        Ok(())
    }

    /// Waits for the window in flight, if any, and adds its outcome to `report`.
    async fn wait(&mut self, report: &mut Report) -> Result<()> {
        let Some(task) = self.in_flight.take() else {
            return Ok(());
        };
        let outcome = task.await.context("the append of a window stopped")??;
        for (source, stored) in outcome.counts {
            count(report, &self.names, source, stored);
        }
        report.refused.extend(outcome.refused);
        Ok(())
    }
}

fn count(report: &mut Report, names: &[String], source: usize, stored: bool) {
    let per = report.sources.entry(names[source].clone()).or_default();
    if stored {
        per.imported += 1;
    } else {
        per.already_present += 1;
    }
}

/// Appends a window of events in one multi-stream transaction, in order (each run of one
/// stream a batch). A window that mixes events stored by an earlier import with new ones (the
/// sources grew since) is appended one event at a time, where stored ones are no-ops.
async fn append_window(
    es: &EventStore<AnyStore>,
    taken: Vec<Pending>,
    names: &[String],
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    // Runs of one stream, in order.
    let mut runs: Vec<(&str, Vec<usize>, Vec<NewEvent>)> = Vec::new();
    for p in &taken {
        match runs.last_mut() {
            Some((stream, of, events)) if *stream == p.stream => {
                of.push(p.source);
                events.push(p.event.clone());
            }
            _ => runs.push((&p.stream, vec![p.source], vec![p.event.clone()])),
        }
    }
    let mut batches = Vec::with_capacity(runs.len());
    let mut owners = Vec::with_capacity(runs.len());
    for (stream, of, events) in runs {
        batches.push(AppendBatch::new(stream, ExpectedVersion::Any, events)?);
        owners.push(of);
    }
    match es.append_many(batches).await {
        Ok(appended) => {
            for (of, a) in owners.iter().zip(&appended) {
                outcome.counts.extend(of.iter().map(|s| (*s, a.stored)));
            }
            Ok(outcome)
        }
        Err(Error::DuplicateId { .. }) => {
            for p in taken {
                let id = p.event.id;
                match es
                    .append(&p.stream, ExpectedVersion::Any, vec![p.event])
                    .await
                {
                    Ok(a) => outcome.counts.push((p.source, a.stored)),
                    Err(e @ Error::DuplicateId { .. }) => outcome.refused.push(json!({
                        "source": names[p.source],
                        "id": id,
                        "reason": format!("{e} in this store"),
                    })),
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("appending to stream `{}`", p.stream));
                    }
                }
            }
            Ok(outcome)
        }
        Err(e) => Err(e).context("appending a window of events"),
    }
}

fn print_report(report: &Report, format: Option<Format>) -> Result<()> {
    let mut out = stdout();
    let table = match format {
        Some(Format::Table) => true,
        Some(_) => false,
        None => std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    if !table {
        serde_json::to_writer(&mut out, report)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(());
    }
    let verb = if report.dry_run {
        "would import"
    } else {
        "imported"
    };
    for (name, s) in &report.sources {
        writeln!(
            out,
            "source {name}: {} rows; {verb} {}, {} already present",
            s.rows, s.imported, s.already_present
        )?;
        for (t, n) in &s.types {
            writeln!(out, "  {t:<40} {n:>10}")?;
        }
    }
    for (fix, n) in &report.cleaned {
        writeln!(out, "cleaned: {fix}: {n}")?;
    }
    writeln!(
        out,
        "events without a stream key: {}",
        report.without_stream_key
    )?;
    writeln!(
        out,
        "ids in several sources with the same content (imported once): {}",
        report.duplicates_with_same_content
    )?;
    writeln!(
        out,
        "id collisions (not imported): {}",
        report.collisions.len()
    )?;
    for c in &report.collisions {
        writeln!(out, "  {c}")?;
    }
    writeln!(out, "refused: {}", report.refused.len())?;
    for r in &report.refused {
        writeln!(out, "  {r}")?;
    }
    out.flush()?;
    Ok(())
}
