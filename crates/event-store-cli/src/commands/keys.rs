//! `event-store forget` and `event-store keys`: crypto-shredding's operations (see
//! `event_store::erasure`).

use anyhow::{Context as _, Result};
use event_store::EventStore;
use event_store::erasure::{Keys, MasterKey};

use crate::backend::{AnyCache, AnyKeyStore, AnyStore};
use crate::cli::{ForgetArgs, KeysCommand, MasterKeyArgs};
use crate::usage::usage;

fn read_key(text: &str, whence: &str) -> Result<MasterKey> {
    MasterKey::from_text(text).map_err(|e| usage(format!("the master key in {whence}: {e}")))
}

/// The master key from `--master-key-file`, else `EVENT_STORE_MASTER_KEY`; and the previous
/// ones from `--previous-key-file`.
fn master_keys(args: &MasterKeyArgs) -> Result<(MasterKey, Vec<MasterKey>)> {
    let file = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the key file {}", path.display()))
    };
    let master = match &args.master_key_file {
        Some(path) => read_key(&file(path)?, &path.display().to_string())?,
        None => match std::env::var("EVENT_STORE_MASTER_KEY") {
            Ok(text) if !text.trim().is_empty() => read_key(&text, "EVENT_STORE_MASTER_KEY")?,
            _ => {
                return Err(usage(
                    "no master key: give --master-key-file FILE or set EVENT_STORE_MASTER_KEY \
                     (`event-store keys generate ID` makes one)",
                ));
            }
        },
    };
    let previous = args
        .previous_key_file
        .iter()
        .map(|path| read_key(&file(path)?, &path.display().to_string()))
        .collect::<Result<Vec<_>>>()?;
    Ok((master, previous))
}

/// The store's keys, checked against the master key before anything else is written.
async fn keys(
    store: &AnyStore,
    master: MasterKey,
    previous: Vec<MasterKey>,
) -> Result<Keys<AnyKeyStore>> {
    let keys = Keys::new(AnyKeyStore::of(store), master, previous);
    keys.check().await.map_err(|e| match e {
        event_store::Error::InvalidInput { .. } => usage(e.to_string()),
        other => other.into(),
    })?;
    Ok(keys)
}

pub(crate) async fn forget(es: EventStore<AnyStore>, args: ForgetArgs) -> Result<()> {
    let (master, previous) = master_keys(&args.keys)?;
    let keys = keys(es.store(), master, previous).await?;
    let cache = AnyCache::of(es.store());
    let audit = es
        .with_cache(cache)
        .with_keys(keys)
        .forget(&args.subject, &args.by)
        .await?;
    let mut out = std::io::stdout().lock();
    crate::out::print_json(&mut out, &audit)?;
    Ok(())
}

pub(crate) async fn run(store: Option<AnyStore>, command: KeysCommand, quiet: bool) -> Result<()> {
    match command {
        KeysCommand::Generate(args) => {
            let (_, text) = MasterKey::generate(&args.id).map_err(|e| usage(e.to_string()))?;
            println!("{}", text.as_str());
            if !quiet {
                eprintln!(
                    "keep it outside the store (a secret manager, a file only the service reads); \
                     without it, personal data cannot be read"
                );
            }
            Ok(())
        }
        KeysCommand::Rotate(args) => {
            let Some(store) = store else {
                return Err(usage("keys rotate needs a store"));
            };
            let (master, previous) = master_keys(&args.keys)?;
            let id = master.id().to_owned();
            let keys = keys(&store, master, previous).await?;
            let rewrapped = keys.rotate().await?;
            println!("{rewrapped}");
            if !quiet {
                eprintln!(
                    "rewrapped {rewrapped} keys under master key `{id}`; the previous keys are no longer needed"
                );
            }
            Ok(())
        }
    }
}
