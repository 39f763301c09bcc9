//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use event_store::{ExpectedVersion, Position};

/// Operate an event store: an append-only log of immutable events.
///
/// The store is a SQLite file by default (created on first use); point --url at PostgreSQL for
/// the production backend. Positions (checkpoints) print as `42` or `7741:42`; `--from` takes
/// them back.
#[derive(Parser, Debug)]
#[command(name = "event-store", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Where the store is: sqlite://PATH or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE.
    #[arg(
        long,
        global = true,
        env = "EVENT_STORE_URL",
        default_value = "sqlite://./events.db"
    )]
    pub(crate) url: String,

    /// The PostgreSQL schema holding the store.
    #[arg(
        long,
        global = true,
        env = "EVENT_STORE_SCHEMA",
        default_value = "event_store"
    )]
    pub(crate) schema: String,

    /// A PEM file of CA certificates to trust for TLS to PostgreSQL (with `sslmode=require` in
    /// the URL, the server's certificate is verified against the Mozilla roots and these).
    #[arg(
        long,
        global = true,
        env = "EVENT_STORE_PG_CA_FILE",
        value_name = "PEM"
    )]
    pub(crate) pg_ca_file: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Create or migrate the store's schema (idempotent).
    Init(InitArgs),
    /// Append one event (printed back as one JSON line), or NDJSON lines from stdin.
    Append(AppendArgs),
    /// Read a stream, or the global log when no stream is given.
    Read(ReadArgs),
    /// Follow the global log live, printing events as NDJSON.
    Tail(TailArgs),
    /// Events, streams, counts per namespace and type, size on disk, head checkpoint.
    Stats(StatsArgs),
    /// The event types in the log per namespace, type and schema version, with counts and the
    /// positions of the first and last: which old versions are still there (and need an
    /// upcaster). Reads the whole log.
    Schema(SchemaArgs),
    /// Write the global log as NDJSON (to stdout or --output).
    Export(ExportArgs),
    /// Append the events of an NDJSON file (from `export`); ids are kept, so importing a file
    /// twice stores nothing new (lines without an id: see --derive-ids).
    Import(ImportArgs),
    /// Import the original event store's data: the `events(id, data, context)` tables of one or
    /// more PostgreSQL databases, cleaned (legacy `type` key, null subjects, non-RFC 3339 times),
    /// each event put in a stream by --stream-key, in time order. Ids are kept: a re-run stores
    /// nothing new. Prints a report (JSON when not on a terminal); --dry-run only reports.
    ImportLegacy(ImportLegacyArgs),
    /// Run the AMQP relay: publish the log to a RabbitMQ exchange, in order, from a checkpoint
    /// kept in the store (runs until interrupted; shows the lag).
    Publish(PublishArgs),
    /// Print what a subscriber group receives from RabbitMQ as NDJSON, acknowledging each.
    Subscribe(SubscribeArgs),
    /// Measure throughput and latency of every backend it can reach, each as a ratio to the
    /// same run's hardware baseline (plain SQL, plain rusqlite, raw lapin).
    Bench(BenchArgs),
    /// Run an end-to-end scenario on a fresh SQLite file and print a report.
    Demo(DemoArgs),
    /// Inspect and operate the store's projections (read models kept up to date by runners in
    /// your services): list them, show one's partitions and lag, rebuild one, resume a parked
    /// one.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
}

#[derive(Subcommand, Debug)]
pub(crate) enum ProjectionsCommand {
    /// Every projection: state, generation, position, lag, last error.
    List(ProjectionsListArgs),
    /// One projection in detail: its generations and each partition's checkpoint, lag, runner
    /// and, when parked, the event it stopped on and why.
    Status(ProjectionsStatusArgs),
    /// Rebuild a projection from the start of the log. The new generation is built beside the
    /// current one, which readers keep seeing until the new one has caught up and replaces it
    /// (the runners of the projection do the work; nothing is deleted before the switch).
    Reset(ProjectionsResetArgs),
    /// Resume a parked projection after fixing the cause: its runners apply the event it
    /// parked on again, then go on.
    Resume(ProjectionsResumeArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ProjectionsListArgs {
    /// Output format (default: a table on a terminal, NDJSON otherwise).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

#[derive(Args, Debug)]
pub(crate) struct ProjectionsStatusArgs {
    /// The projection's name (see `event-store projections list`).
    pub(crate) name: String,
    /// Output format (default: a table on a terminal, JSON otherwise).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

#[derive(Args, Debug)]
pub(crate) struct ProjectionsResetArgs {
    /// The projection's name.
    pub(crate) name: String,
    /// Rebuild with this many partitions (1 to 1024; default: as many as now).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) partitions: Option<u32>,
    /// Output format (default: a line for people on a terminal, JSON otherwise).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

#[derive(Args, Debug)]
pub(crate) struct ProjectionsResumeArgs {
    /// The projection's name.
    pub(crate) name: String,
    /// Only this partition (default: every parked partition).
    #[arg(long)]
    pub(crate) partition: Option<u32>,
    /// Output format (default: a line for people on a terminal, JSON otherwise).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

#[derive(Args, Debug)]
pub(crate) struct AppendArgs {
    /// The stream to append to.
    #[arg(required_unless_present = "ndjson")]
    pub(crate) stream: Option<String>,
    /// The event's namespace and type, as NAMESPACE.TYPE.
    #[arg(value_name = "NAMESPACE.TYPE", required_unless_present = "ndjson")]
    pub(crate) kind: Option<String>,
    /// The event's data: a JSON object (default `{}`).
    #[arg(value_name = "DATA_JSON")]
    pub(crate) data: Option<String>,
    /// The event's id (a UUID); appending the same id and content again is a no-op.
    #[arg(long)]
    pub(crate) id: Option<uuid::Uuid>,
    /// What the stream must be at: any, no-stream, exists, or a version number.
    #[arg(
        long,
        value_name = "any|no-stream|exists|N",
        default_value = "any",
        value_parser = expected_version
    )]
    pub(crate) expected_version: ExpectedVersion,
    /// Read events from stdin instead, one JSON object per line:
    /// {"stream","namespace","type","data","id"?,"context"?}. Up to 1 000 lines, whatever their
    /// streams, are committed together (each stream's lines in order); a failure names its line
    /// and what was committed. Lines without an id get a new one each time: appending the same
    /// lines twice stores them twice, unless --derive-ids is given.
    #[arg(long, conflicts_with_all = ["stream", "kind", "data", "id"])]
    pub(crate) ndjson: bool,
    /// With --ndjson: give each line without an id one derived from its content (stream,
    /// namespace, type, data, context) and how many identical lines came before it, so that
    /// appending the same input again stores nothing new.
    #[arg(long, requires = "ndjson")]
    pub(crate) derive_ids: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Format {
    /// One JSON array.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// A table for people.
    Table,
}

#[derive(Args, Debug)]
pub(crate) struct ReadArgs {
    /// The stream to read; the global log when absent.
    pub(crate) stream: Option<String>,
    /// Where to start: for the global log, a checkpoint (events after it; backward: before it);
    /// for a stream, a version (that version and after it; backward: it and before it).
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// At most this many events.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// Newest first.
    #[arg(long)]
    pub(crate) backward: bool,
    /// Output format (default: a table on a terminal, NDJSON otherwise).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

#[derive(Args, Debug)]
pub(crate) struct TailArgs {
    /// Start after this checkpoint (`0`: from the beginning). Default: only new events.
    #[arg(long, value_name = "CHECKPOINT", value_parser = position)]
    pub(crate) from: Option<Position>,
    /// Only this stream.
    #[arg(long)]
    pub(crate) stream: Option<String>,
    /// Only this namespace.
    #[arg(long)]
    pub(crate) namespace: Option<String>,
    /// Only this type.
    #[arg(long = "type")]
    pub(crate) event_type: Option<String>,
    /// Exit after this many events.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// Exit after this many seconds without a new event (0 to 1000000000).
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    pub(crate) idle_exit: Option<std::time::Duration>,
}

/// A checkpoint: `42`, or `7741:42`.
pub(crate) fn position(text: &str) -> Result<Position, String> {
    text.parse().map_err(|_| {
        format!("`{text}` is not a checkpoint (a number like 42, or high:low like 7741:42)")
    })
}

/// An expectation: `any`, `no-stream`, `exists` or a version number.
pub(crate) fn expected_version(text: &str) -> Result<ExpectedVersion, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not any, no-stream, exists or a version number"))
}

/// The longest `--idle-exit`: about 31 years.
pub(crate) const MAX_SECONDS: f64 = 1e9;

/// A number of seconds: finite, 0 to [`MAX_SECONDS`].
pub(crate) fn seconds(text: &str) -> Result<std::time::Duration, String> {
    let s: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(0.0..=MAX_SECONDS).contains(&s) {
        return Err(format!(
            "{text} seconds is out of range: use 0 to {MAX_SECONDS:.0}"
        ));
    }
    std::time::Duration::try_from_secs_f64(s).map_err(|e| format!("`{text}`: {e}"))
}

#[derive(Args, Debug)]
pub(crate) struct StatsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
}

#[derive(Args, Debug)]
pub(crate) struct ImportLegacyArgs {
    /// A database to read, as NAME=URL (NAME names it in the report and in the fallback stream,
    /// usually the service that owned it). Repeat for each service's database.
    #[arg(long = "source", value_name = "NAME=POSTGRES_URL", required = true, value_parser = legacy_source)]
    pub(crate) sources: Vec<(String, String)>,
    /// Which stream an event goes to: `data.FIELD` or `context.subject.FIELD` (a string or a
    /// number). Repeatable: the first rule that finds a value wins.
    #[arg(long = "stream-key", value_name = "data.FIELD|context.subject.FIELD", value_parser = stream_key)]
    pub(crate) stream_keys: Vec<StreamKey>,
    /// Put before each key to make the stream id (e.g. `account-`).
    #[arg(long, default_value = "")]
    pub(crate) stream_prefix: String,
    /// The stream of events no --stream-key rule finds a value for; `{source}` is replaced by the
    /// source's NAME.
    #[arg(long, default_value = "legacy-{source}")]
    pub(crate) fallback_stream: String,
    /// The table to read in each source.
    #[arg(long, default_value = "events", value_name = "[SCHEMA.]TABLE")]
    pub(crate) table: String,
    /// A PEM file of CA certificates to trust for TLS to the sources (with `sslmode=require`).
    #[arg(long, value_name = "PEM")]
    pub(crate) pg_ca_file: Option<PathBuf>,
    /// Read and check everything, print the report, import nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Report format (default: a table on a terminal, JSON otherwise).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

/// Where `import-legacy` finds an event's stream key.
#[derive(Clone, Debug)]
pub(crate) enum StreamKey {
    /// A field of the data.
    Data(String),
    /// A field of the context's subject.
    Subject(String),
}

fn legacy_source(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => {
            Ok((name.to_owned(), url.to_owned()))
        }
        _ => Err(format!(
            "{text:?} is not NAME=URL (e.g. accounts=postgres://user@host/accounts)"
        )),
    }
}

fn stream_key(text: &str) -> Result<StreamKey, String> {
    if let Some(field) = text.strip_prefix("data.").filter(|f| !f.is_empty()) {
        Ok(StreamKey::Data(field.to_owned()))
    } else if let Some(field) = text
        .strip_prefix("context.subject.")
        .filter(|f| !f.is_empty())
    {
        Ok(StreamKey::Subject(field.to_owned()))
    } else {
        Err(format!(
            "{text:?} is neither data.FIELD nor context.subject.FIELD"
        ))
    }
}

#[derive(Args, Debug)]
pub(crate) struct SchemaArgs {
    /// Output format (default: a table on a terminal, NDJSON otherwise).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// Start after this checkpoint.
    #[arg(long, value_name = "CHECKPOINT", value_parser = position)]
    pub(crate) from: Option<Position>,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct ImportArgs {
    /// The NDJSON file (`-` for stdin).
    pub(crate) file: PathBuf,
    /// Give each line without an id one derived from its content (stream, namespace, type,
    /// data, context) and how many identical lines came before it, so that importing the same
    /// file again stores nothing new. Lines with an id (every line `export` writes) keep it.
    #[arg(long)]
    pub(crate) derive_ids: bool,
}

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Keep the demo's database at this path (default: a temporary file, removed afterwards).
    #[arg(long)]
    pub(crate) keep: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct BrokerArgs {
    /// The RabbitMQ broker: amqp://USER:PASSWORD@HOST:PORT/VHOST (`%2f` is the vhost `/`), or
    /// amqps://… for TLS.
    #[arg(
        long,
        env = "EVENT_STORE_AMQP",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub(crate) amqp: String,
    /// The topic exchange the events go to.
    #[arg(long, env = "EVENT_STORE_EXCHANGE", default_value = "event_store")]
    pub(crate) exchange: String,
    /// Speak the original event store's wire format, as the service STORE_NAMESPACE: payloads
    /// `{"id","data","context"}`, queues `STORE_NAMESPACE-NS.TYPE`, and (publish) answering the
    /// original's `_eventstore.EventReplayRequested`. For migrations where services still run the
    /// original library.
    #[arg(long, value_name = "STORE_NAMESPACE")]
    pub(crate) legacy: Option<String>,
}

impl BrokerArgs {
    /// The AMQP settings these arguments describe.
    pub(crate) fn config(&self) -> event_store_amqp::AmqpConfig {
        let mut config =
            event_store_amqp::AmqpConfig::new(self.amqp.clone(), self.exchange.clone());
        config.legacy = self.legacy.clone().map(event_store_amqp::LegacyWire::new);
        config
    }
}

#[derive(Args, Debug)]
pub(crate) struct PublishArgs {
    #[command(flatten)]
    pub(crate) broker: BrokerArgs,
    /// When this destination (broker, virtual host, exchange) has no checkpoint yet, take over
    /// the one earlier releases kept under the exchange's name alone. Use it once, when
    /// upgrading a relay that published to this same broker and virtual host.
    #[arg(long)]
    pub(crate) adopt_legacy_checkpoint: bool,
}

#[derive(Args, Debug)]
pub(crate) struct SubscribeArgs {
    #[command(flatten)]
    pub(crate) broker: BrokerArgs,
    /// The subscriber group (a service name): instances of a group share its events.
    #[arg(long)]
    pub(crate) group: String,
    /// A routing key to receive: NAMESPACE.TYPE, or NAMESPACE.* (repeatable; default: every
    /// event).
    #[arg(long, value_name = "NAMESPACE.TYPE")]
    pub(crate) bind: Vec<String>,
    /// Exit after this many events.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// Exit after this many seconds without a new event (0 to 1000000000).
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    pub(crate) idle_exit: Option<std::time::Duration>,
}

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// A short run (under a minute) with small sizes.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Also write the figures as a JSON array to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// PostgreSQL to measure (a scratch schema is created and dropped).
    #[arg(
        long,
        env = "EVENT_STORE_BENCH_PG",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pub(crate) pg: String,
    /// RabbitMQ to measure (a scratch exchange and queue are created and deleted).
    #[arg(
        long,
        env = "EVENT_STORE_BENCH_AMQP",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub(crate) amqp: String,
    /// Only these backends (memory, sqlite, postgres, amqp); default: all that are reachable.
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
}

/// `init`'s options.
#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    /// PostgreSQL: also create an optional index (repeat, or separate with commas). `subject`
    /// speeds up queries on context.subject fields, `time` time ranges; each costs every append
    /// (the README gives the measured cost). Migrating never drops one.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "INDEX")]
    pub(crate) index: Vec<OptionalIndex>,
}

/// An optional secondary index.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OptionalIndex {
    /// A GIN index on context.subject (queries on subject fields).
    Subject,
    /// A B-tree on the event time (time ranges).
    Time,
}
