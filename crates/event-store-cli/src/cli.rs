//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use event_store::{ExpectedVersion, Position};

/// Operate an event store: an append-only log of immutable events.
///
/// The store is a SQLite file by default (`event-store init` creates it; `append` and `import`
/// create it on first use; the other commands only read, and never create or change a file);
/// point --url at PostgreSQL for the production backend. Positions (checkpoints) print as `42`
/// (SQLite) or `7741:42` (PostgreSQL); `--after` takes them back. Stream versions count from 0;
/// `read STREAM --from` takes them.
#[derive(Parser, Debug)]
#[command(
    name = "event-store",
    version,
    propagate_version = true,
    after_help = "\
URLs: sqlite://PATH, sqlite:PATH (sqlite:///abs/path for an absolute path), with ?mode=ro (never
write), ?mode=rw (the file must exist) or ?mode=rwc; postgres://USER[:PASSWORD]@HOST[:PORT]/DB.

Exit codes: 0 done (also when a reader such as `head` closed the output early), 1 failed,
2 malformed command line, 3 version conflict, 4 stream closed, 130 interrupted.

Examples:
  event-store init && event-store append order-1 shop.OrderPlaced '{\"total\": 42}'
  event-store read order-1
  event-store tail --type shop.OrderPlaced
  event-store --url postgres://app@db/app stats"
)]
pub(crate) struct Cli {
    /// Where the store is: sqlite://PATH, sqlite:PATH (optionally ?mode=ro|rw|rwc) or
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE.
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

    /// A PostgreSQL streaming replica (a hot standby of --url) to read from; repeat for more, or
    /// list them comma-separated in EVENT_STORE_REPLICAS. Reads of the log, tails and folds go
    /// to a healthy replica; writes, checkpoints and the cache stay on --url.
    #[arg(
        long = "replica",
        global = true,
        env = "EVENT_STORE_REPLICAS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub(crate) replicas: Vec<String>,

    /// What reads through --replica must see: `eventual` (any healthy replica), `session` (every
    /// append and close this process made), or `primary` (reads on --url only).
    #[arg(
        long,
        global = true,
        env = "EVENT_STORE_CONSISTENCY",
        value_enum,
        default_value_t = ConsistencyArg::Eventual
    )]
    pub(crate) consistency: ConsistencyArg,

    /// Skip a replica further than this behind --url (seconds, 0 to 1000000000).
    #[arg(
        long,
        global = true,
        env = "EVENT_STORE_MAX_REPLICA_LAG",
        value_name = "SECONDS",
        default_value = "5",
        allow_negative_numbers = true,
        value_parser = seconds
    )]
    pub(crate) max_replica_lag: std::time::Duration,

    /// Print only the results: no progress bars, summaries or notes on stderr (errors are
    /// still printed).
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `--consistency`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsistencyArg {
    /// Any healthy replica, else the primary.
    Eventual,
    /// A replica that has every append and close this process made, else the primary.
    Session,
    /// The primary only.
    Primary,
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
    /// The streams, in id order, with their event count, last version, last position and
    /// last time (`--prefix` for a category, `--after` to page).
    Streams(StreamsArgs),
    /// Events, streams, counts per namespace and type, size on disk, head checkpoint.
    Stats(StatsArgs),
    /// The PostgreSQL replicas given with --replica: whether reads go to each, and its lag.
    /// Exits 1 when one is not serving reads (for health checks).
    Replicas(ReplicasArgs),
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
    /// Serve the HTTP API: appends, paged reads, streams, stats and a live tail over
    /// Server-Sent Events (routes: the event-store-server crate's README). Runs until Ctrl-C
    /// or SIGTERM.
    Serve(ServeArgs),
    /// The store's schema migrations: which are applied, which this release would apply.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Forget a person: destroy the data key their personal fields were sealed with (every
    /// read path shows them erased from now on) and record a SubjectForgotten event naming the
    /// subject and who asked, without any personal data. Prints that event.
    Forget(ForgetArgs),
    /// The master key that wraps the store's data keys: generate one, or rotate to a new one.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Close a stream (a soft delete; nothing is removed): it takes no appends (exit 4), is
    /// left out of `streams` and refused by `read STREAM`, and its events stay in the global
    /// log for projections and subscribers. Records a StreamClosed event naming who closed it
    /// (in the stream event_store-streams) and prints it.
    Close(CloseArgs),
    /// Reopen a closed stream: appends and reads work again, versions going on where they
    /// stopped. Records a StreamReopened event and prints it.
    Reopen(CloseArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions(CompletionsArgs),
    /// Print the manual page (roff) to stdout, or write one page per subcommand to a directory.
    Man(ManArgs),
}

#[derive(Args, Debug)]
#[command(after_help = "\
Tokens: one per line, `TOKEN SCOPE[,SCOPE…]` with the scopes read, append and admin; `#` starts
a comment. Without tokens every request is allowed: keep such a server on 127.0.0.1.

Examples:
  event-store serve                                   http://127.0.0.1:7878
  event-store serve --listen 0.0.0.0:8443 --tokens /etc/event-store/tokens \\
       --tls-cert /etc/event-store/cert.pem --tls-key /etc/event-store/key.pem
  curl -X POST localhost:7878/streams/order-1 -H 'Expected-Version: no-stream' \\
       -d '[{\"namespace\":\"shop\",\"type\":\"Placed\",\"data\":{\"total\":12}}]'
  curl -N localhost:7878/log/live                     the live tail (Server-Sent Events)
  open http://127.0.0.1:7878/explorer/                the web explorer")]
pub(crate) struct ServeArgs {
    /// The address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDRESS:PORT")]
    pub(crate) listen: std::net::SocketAddr,
    /// A file of bearer tokens and their scopes (see below); the environment variable
    /// EVENT_STORE_TOKENS may hold the same lines instead.
    #[arg(long, env = "EVENT_STORE_TOKENS_FILE", value_name = "FILE")]
    pub(crate) tokens: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first); needs
    /// --tls-key.
    #[arg(
        long,
        env = "EVENT_STORE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1); needs --tls-cert.
    #[arg(
        long,
        env = "EVENT_STORE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub(crate) tls_key: Option<PathBuf>,
    /// Do not serve the web explorer (served at /explorer/ by default).
    #[arg(long)]
    pub(crate) no_explorer: bool,
}

/// Where the master key comes from.
#[derive(Args, Debug)]
pub(crate) struct MasterKeyArgs {
    /// A file holding the master key as `ID:BASE64` (else the environment variable
    /// EVENT_STORE_MASTER_KEY). Never keep it beside the store.
    #[arg(long, value_name = "FILE")]
    pub(crate) master_key_file: Option<PathBuf>,
    /// A master key the store's keys may still be wrapped with (during a rotation; repeatable).
    #[arg(long, value_name = "FILE")]
    pub(crate) previous_key_file: Vec<PathBuf>,
}

#[derive(Args, Debug)]
#[command(after_help = "\
The master key is checked against the store's keys before anything is written: a wrong one is
refused with exit 2. Forgetting again is harmless (the event records had_key: false).

Examples:
  EVENT_STORE_MASTER_KEY=$(cat /run/secrets/event-store-key) event-store forget 7f3a --by ticket-4711
  event-store forget 7f3a --by dpo@example.com --master-key-file /run/secrets/event-store-key")]
pub(crate) struct ForgetArgs {
    /// The subject: the value of the events' subject field (a user id, …).
    pub(crate) subject: String,
    /// Who asks (an operator, a ticket), recorded in the SubjectForgotten event.
    #[arg(long)]
    pub(crate) by: String,
    #[command(flatten)]
    pub(crate) keys: MasterKeyArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Closing or reopening again changes nothing and records was_open/was_closed: false. The store's
own streams (event_store-…) cannot be closed.

Examples:
  event-store close order-1041 --by ops@example.com
  event-store streams --closed                    the closed streams and when they were closed
  event-store read order-1041 --include-closed    its events, from the global log
  event-store reopen order-1041 --by ops@example.com")]
pub(crate) struct CloseArgs {
    /// The stream.
    pub(crate) stream: String,
    /// Who asks (an operator, a ticket), recorded in the event.
    #[arg(long)]
    pub(crate) by: String,
}

#[derive(Subcommand, Debug)]
pub(crate) enum KeysCommand {
    /// Print a new random master key (`ID:BASE64`) to keep outside the store.
    Generate(KeysGenerateArgs),
    /// Rewrap every data key under the master key, reading them with the previous keys; no
    /// event is touched. Prints how many keys were rewrapped.
    #[command(after_help = "\
Examples:
  event-store keys generate k2 > /run/secrets/k2
  event-store keys rotate --master-key-file /run/secrets/k2 --previous-key-file /run/secrets/k1")]
    Rotate(KeysRotateArgs),
}

#[derive(Args, Debug)]
pub(crate) struct KeysGenerateArgs {
    /// The key's id (`A–Z a–z 0–9 _ -`), stored with every key it wraps.
    pub(crate) id: String,
}

#[derive(Args, Debug)]
pub(crate) struct KeysRotateArgs {
    #[command(flatten)]
    pub(crate) keys: MasterKeyArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum MigrateCommand {
    /// Applied migrations with when each was applied, and pending ones (`event-store init`
    /// applies them). Reads only.
    Status(MigrateStatusArgs),
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  event-store migrate status
  event-store --url postgres://app@db/app migrate status --format json")]
pub(crate) struct MigrateStatusArgs {
    /// Output format (default: a table on a terminal, JSON otherwise).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  event-store completions bash > ~/.local/share/bash-completion/completions/event-store
  event-store completions zsh > ~/.zfunc/_event-store     (with fpath+=~/.zfunc in ~/.zshrc)
  event-store completions fish > ~/.config/fish/completions/event-store.fish")]
pub(crate) struct CompletionsArgs {
    /// The shell.
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  event-store man | man -l -
  event-store man --dir /usr/local/share/man/man1")]
pub(crate) struct ManArgs {
    /// Write event-store.1 and event-store-SUBCOMMAND.1 pages into this directory instead.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
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
#[command(after_help = "\
Examples:
  event-store projections list
  event-store projections list --format json")]
pub(crate) struct ProjectionsListArgs {
    /// Output format (default: a table on a terminal, NDJSON otherwise).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Example:
  event-store projections status order-totals")]
pub(crate) struct ProjectionsStatusArgs {
    /// The projection's name (see `event-store projections list`).
    pub(crate) name: String,
    /// Output format (default: a table on a terminal, JSON otherwise).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  event-store projections reset order-totals
  event-store projections reset order-totals --partitions 8")]
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
#[command(after_help = "\
Examples:
  event-store projections resume order-totals
  event-store projections resume order-totals --partition 3")]
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
#[command(after_help = "\
NDJSON lines (--ndjson, and `import`): one JSON object per line with the fields
  stream          the stream (required)
  namespace       the event's namespace (required)
  type            the event's type (required)
  data            a JSON object (default {}); it may hold `event_namespace` and `event_type`
                  (they must equal namespace and type; they are added when absent) and
                  `event_version`, the event's schema version (1 when absent)
  id              a UUID: the same id and content again is a no-op (default: a new id)
  context         {\"time\": RFC 3339, \"action\", \"subject\": {…}, \"correlation_id\",
                  \"causation_id\", \"metadata\": {…}}, every field optional
  version         the event's version where it was exported: the stream must be just before it
  position        ignored (exports carry it; the store assigns its own)
Any other field is an error that names its line. Lines `export` writes are valid input.

Exit codes: 0 done, 1 failed, 2 malformed command line, 3 version conflict (re-read, retry),
4 the stream is closed, 130 interrupted (what was committed is said).

Examples:
  event-store append order-1 shop.OrderPlaced '{\"total\": 42}'
  event-store append order-1 shop.OrderPaid --expected-version 0
  event-store append order-2 shop.OrderPlaced --expected-version no-stream
  printf '%s\\n' '{\"stream\":\"o-1\",\"namespace\":\"shop\",\"type\":\"Placed\"}' | event-store append --ndjson")]
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
    /// What the stream must be at: any, no-stream, exists, or a version number. With
    /// --ndjson: what each stream must be at before its first line (lines that carry a
    /// `version` keep their own).
    #[arg(
        long,
        value_name = "any|no-stream|exists|N",
        default_value = "any",
        allow_negative_numbers = true,
        value_parser = expected_version
    )]
    pub(crate) expected_version: ExpectedVersion,
    /// Read events from stdin instead, one JSON object per line (fields below). Up to 1 000
    /// lines, whatever their streams, are committed together (each stream's lines in order); a
    /// failure names its line and what was committed. Lines without an id get a new one each
    /// time: appending the same lines twice stores them twice, unless --derive-ids is given.
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
#[command(after_help = "\
Examples:
  event-store read                          the whole log, oldest first
  event-store read --after 1200 --limit 10  the 10 events after checkpoint 1200
  event-store read --backward --limit 5     the 5 newest events
  event-store read order-42                 one stream, from version 0
  event-store read order-42 --from 3        the stream from version 3 on
  event-store read --type shop.OrderPlaced  only that type (`--type OrderPlaced`: in any namespace)
  event-store read --stream-prefix order- --format json")]
pub(crate) struct ReadArgs {
    /// The stream to read; the global log when absent.
    pub(crate) stream: Option<String>,
    /// A stream's first version to read (that version and after it; backward: it and before
    /// it). Needs STREAM.
    #[arg(long, value_name = "VERSION", allow_negative_numbers = true, value_parser = version)]
    pub(crate) from: Option<u64>,
    /// The global log: the events after this checkpoint (as `read`, `tail` and `stats` print
    /// positions: `42`, or `7741:42` on PostgreSQL).
    #[arg(long, value_name = "CHECKPOINT", value_parser = position, conflicts_with_all = ["from", "before"])]
    pub(crate) after: Option<Position>,
    /// The global log, newest first, from the event before this checkpoint (implies
    /// --backward).
    #[arg(long, value_name = "CHECKPOINT", value_parser = position, conflicts_with = "from")]
    pub(crate) before: Option<Position>,
    /// At most this many events.
    #[arg(long, allow_negative_numbers = true, value_parser = count)]
    pub(crate) limit: Option<usize>,
    /// Newest first.
    #[arg(long)]
    pub(crate) backward: bool,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Print a summary instead of the events: per type, how many, and the first and last
    /// position and time.
    #[arg(long)]
    pub(crate) stats: bool,
    /// Read STREAM even when it is closed (its events, from the global log).
    #[arg(long, requires = "stream")]
    pub(crate) include_closed: bool,
    /// Output format (default: a table on a terminal, NDJSON otherwise).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  event-store streams                              every stream
  event-store streams --prefix order- --limit 20   the first 20 order streams
  event-store streams --prefix order- --after order-1041 --limit 20   the next page
  event-store streams --closed                     the closed streams, with when")]
pub(crate) struct StreamsArgs {
    /// List the closed streams (and when each was closed) instead of the open ones.
    #[arg(long)]
    pub(crate) closed: bool,
    /// Only streams whose id starts with this.
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub(crate) prefix: String,
    /// Start after this stream id (the last one of the previous page).
    #[arg(long, value_name = "STREAM")]
    pub(crate) after: Option<String>,
    /// At most this many streams (default: all).
    #[arg(long, allow_negative_numbers = true, value_parser = count)]
    pub(crate) limit: Option<usize>,
    /// Output format (default: a table on a terminal, NDJSON otherwise).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

/// Which events to show: the same filters for `read` and `tail`.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct FilterArgs {
    /// Only this namespace.
    #[arg(long)]
    pub(crate) namespace: Option<String>,
    /// Only this type: NAMESPACE.TYPE, or TYPE in any namespace (repeatable: any of them).
    #[arg(long = "type", value_name = "[NAMESPACE.]TYPE")]
    pub(crate) types: Vec<String>,
    /// Only streams whose id starts with this.
    #[arg(long, value_name = "PREFIX")]
    pub(crate) stream_prefix: Option<String>,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  event-store tail                          new events as they are appended
  event-store tail --after 0                the whole log, then new events
  event-store tail --type shop.OrderPlaced --limit 1 --idle-exit 30")]
pub(crate) struct TailArgs {
    /// Start after this checkpoint (`0`: from the beginning). Default: only new events.
    #[arg(long, alias = "from", value_name = "CHECKPOINT", value_parser = position)]
    pub(crate) after: Option<Position>,
    /// Only this stream.
    #[arg(long, conflicts_with = "stream_prefix")]
    pub(crate) stream: Option<String>,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Exit after this many events.
    #[arg(long, allow_negative_numbers = true, value_parser = count)]
    pub(crate) limit: Option<usize>,
    /// Exit after this many seconds without a new event (0 to 1000000000).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true, value_parser = seconds)]
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
    if text.starts_with('-') {
        return Err(format!(
            "`{text}`: versions count from 0; give any, no-stream, exists or a version number"
        ));
    }
    text.parse()
        .map_err(|_| format!("`{text}` is not any, no-stream, exists or a version number"))
}

/// A stream version: 0, 1, 2, …
pub(crate) fn version(text: &str) -> Result<u64, String> {
    text.trim().parse().map_err(|_| {
        if text.trim().starts_with('-') {
            format!("`{text}`: versions count from 0, they are never negative")
        } else {
            format!("`{text}` is not a stream version (0, 1, 2, …)")
        }
    })
}

/// A count: 0 or more.
pub(crate) fn count(text: &str) -> Result<usize, String> {
    text.trim().parse().map_err(|_| {
        if text.trim().starts_with('-') {
            format!("`{text}`: give 0 or more")
        } else {
            format!("`{text}` is not a whole number")
        }
    })
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
#[command(after_help = "\
Examples:
  event-store --url postgres://app@primary/app --replica postgres://app@standby1/app replicas
  EVENT_STORE_REPLICAS=postgres://app@s1/app,postgres://app@s2/app event-store replicas --format json")]
pub(crate) struct ReplicasArgs {
    /// Output format (default: a table on a terminal, JSON otherwise): one object per replica,
    /// {"replica", "healthy", "reachable", "lag_seconds"} (null while unknown).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  event-store stats
  event-store stats --format json | jq .events")]
pub(crate) struct StatsArgs {
    /// Output format (default: a table on a terminal, JSON otherwise). `json` and `ndjson` both
    /// print one object, {"events", "streams", "types": [{"namespace", "type", "events"}],
    /// "size_bytes" (null when the backend cannot tell), "head" (the last checkpoint, as a
    /// string; null when empty), "checkpoints": [{"name", "position", "lag"}]}: `json` indents
    /// it on a terminal, `ndjson` keeps it on one line.
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  event-store import-legacy --source accounts=postgres://u@old/accounts --stream-key data.account_id --dry-run
  event-store import-legacy --source accounts=postgres://u@old/accounts \\
      --source billing=postgres://u@old/billing --stream-key context.subject.id --stream-prefix user-")]
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
#[command(after_help = "\
Examples:
  event-store schema
  event-store schema --format json")]
pub(crate) struct SchemaArgs {
    /// Output format (default: a table on a terminal, NDJSON otherwise).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  event-store export > log.ndjson                    the whole log
  event-store export --after 1200 -o since-1200.ndjson
  event-store --url sqlite://copy.db import log.ndjson")]
pub(crate) struct ExportArgs {
    /// Start after this checkpoint.
    #[arg(long, alias = "from", value_name = "CHECKPOINT", value_parser = position)]
    pub(crate) after: Option<Position>,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(after_help = "\
The lines are those of `append --ndjson` (see `event-store append --help` for every field).

Examples:
  event-store import log.ndjson                  a file `export` wrote (a re-run stores nothing new)
  gunzip -c log.ndjson.gz | event-store import -
  event-store import --derive-ids hand-written.ndjson")]
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
#[command(after_help = "\
Examples:
  event-store demo
  event-store demo --keep demo.db && event-store --url sqlite://demo.db stats")]
pub(crate) struct DemoArgs {
    /// Keep the demo's database at this path (default: a temporary file, removed afterwards).
    /// The demo always runs on a fresh SQLite file of its own: it refuses --url.
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
#[command(after_help = "\
Examples:
  event-store publish
  event-store publish --amqp amqp://user:pass@mq:5672/%2f --exchange events")]
pub(crate) struct PublishArgs {
    #[command(flatten)]
    pub(crate) broker: BrokerArgs,
    /// When this destination (broker, virtual host, exchange) has no checkpoint yet, take over
    /// the one earlier releases kept under the exchange's name alone. Use it once, when
    /// upgrading a relay that published to this same broker and virtual host.
    #[arg(long)]
    pub(crate) adopt_legacy_checkpoint: bool,
    /// Serve the relay's metrics (published, lag, …) in the Prometheus text format at
    /// http://ADDRESS:PORT/metrics.
    #[arg(long, value_name = "ADDRESS:PORT")]
    pub(crate) metrics: Option<std::net::SocketAddr>,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  event-store subscribe --group billing --bind shop.OrderPlaced
  event-store subscribe --group billing --quorum --bind shop.OrderPlaced
  event-store subscribe --group audit --bind 'shop.*' --limit 10 --idle-exit 5")]
pub(crate) struct SubscribeArgs {
    #[command(flatten)]
    pub(crate) broker: BrokerArgs,
    /// The subscriber group (a service name): instances of a group share its events.
    #[arg(long)]
    pub(crate) group: String,
    /// Declare the group's queues as RabbitMQ quorum queues (replicated across a broker
    /// cluster); every instance of a group must agree, and an existing queue keeps its type.
    #[arg(long)]
    pub(crate) quorum: bool,
    /// Serve the subscriber's metrics (delivered, redeliveries, dead letters, …) in the
    /// Prometheus text format at http://ADDRESS:PORT/metrics.
    #[arg(long, value_name = "ADDRESS:PORT")]
    pub(crate) metrics: Option<std::net::SocketAddr>,
    /// A routing key to receive: NAMESPACE.TYPE, or NAMESPACE.* (repeatable; default: every
    /// event).
    #[arg(long, value_name = "NAMESPACE.TYPE")]
    pub(crate) bind: Vec<String>,
    /// Exit after this many events.
    #[arg(long, allow_negative_numbers = true, value_parser = count)]
    pub(crate) limit: Option<usize>,
    /// Exit after this many seconds without a new event (0 to 1000000000).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true, value_parser = seconds)]
    pub(crate) idle_exit: Option<std::time::Duration>,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  event-store bench --quick
  event-store bench --only sqlite,postgres --json figures.json")]
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
    /// Only these backends (memory, sqlite, postgres, replicas, amqp; replicas starts a private
    /// primary and 2 standbys from the PostgreSQL server binaries); default: all that are
    /// reachable.
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
}

/// `init`'s options.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  event-store init                                   ./events.db
  event-store --url sqlite:///var/lib/app/events.db init
  event-store --url postgres://app@db/app --schema events init --index subject")]
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
