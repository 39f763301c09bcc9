//! Crypto-shredding on the real PostgreSQL server: no plaintext of a personal field in any table
//! of the store's schema (events, cache, keys, checkpoints, projections), read through SQL and
//! byte by byte in the tables' files on disk and the write-ahead log written meanwhile, before
//! and after a forget; the forgotten subject's cached states are gone, others' stay.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

mod common;

use std::path::{Path, PathBuf};

use event_store::erasure::{Keys, MasterKey};
use event_store::{Cache as _, EventStore, NoEmitter};
use event_store_postgres::PgKeyStore;
use event_store_testkit::KitAccountProfile;

type Account = KitAccountProfile;

fn key(user: &str) -> event_store::CacheKey {
    Account::cache_key(user)
}

/// Every row of every table in `schema`, as text.
async fn tables_as_text(admin: &tokio_postgres::Client, schema: &str) -> String {
    let tables = admin
        .query(
            "SELECT table_name FROM information_schema.tables \
              WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
            &[&schema],
        )
        .await
        .unwrap();
    assert!(tables.len() >= 5, "the store's tables: {}", tables.len());
    let mut all = String::new();
    for row in tables {
        let table: String = row.get(0);
        let text: Option<String> = admin
            .query_one(
                &format!("SELECT string_agg(t::text, E'\\n') FROM \"{schema}\".\"{table}\" t"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        all.push_str(&text.unwrap_or_default());
    }
    all
}

/// The files of every relation of `schema` (tables, their TOAST tables and indexes), after a
/// checkpoint has written them out; `None` when this process cannot read the server's files.
async fn relation_files(admin: &tokio_postgres::Client, schema: &str) -> Option<Vec<PathBuf>> {
    admin.batch_execute("CHECKPOINT").await.unwrap();
    let dir: String = admin
        .query_one("SHOW data_directory", &[])
        .await
        .unwrap()
        .get(0);
    let rows = admin
        .query(
            "SELECT pg_relation_filepath(c.oid) FROM pg_class c \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'i', 't') \
             UNION ALL \
             SELECT pg_relation_filepath(c.reltoastrelid) FROM pg_class c \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = $1 AND c.reltoastrelid <> 0",
            &[&schema],
        )
        .await
        .unwrap();
    let mut files = Vec::new();
    for row in rows {
        let Some(relative) = row.get::<_, Option<String>>(0) else {
            continue;
        };
        let base = Path::new(&dir).join(relative);
        // A relation over 1 GiB has segments .1, .2, …; ours are small, but read them all.
        let mut segment = 0;
        loop {
            let path = if segment == 0 {
                base.clone()
            } else {
                PathBuf::from(format!("{}.{segment}", base.display()))
            };
            match std::fs::metadata(&path) {
                Ok(_) => files.push(path),
                Err(_) if segment > 0 => break,
                Err(e) => {
                    eprintln!("cannot read the server's files ({}: {e})", path.display());
                    return None;
                }
            }
            segment += 1;
        }
    }
    std::fs::read(&files[0]).ok()?;
    Some(files)
}

/// The write-ahead log segments from `first` (a WAL file name) to the current one.
async fn wal_files(admin: &tokio_postgres::Client, first: &str) -> Vec<PathBuf> {
    admin.batch_execute("SELECT pg_switch_wal()").await.unwrap();
    let dir: String = admin
        .query_one("SHOW data_directory", &[])
        .await
        .unwrap()
        .get(0);
    let last: String = admin
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .await
        .unwrap()
        .get(0);
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(&dir).join("pg_wal"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && n.as_str() >= first && n.as_str() <= last.as_str())
        .map(|n| Path::new(&dir).join("pg_wal").join(n))
        .collect();
    files.sort();
    files
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Fails when `files` hold any of `plain`, byte for byte.
fn assert_absent(files: &[PathBuf], plain: &[&str], what: &str) {
    assert!(!files.is_empty(), "{what}: no file to scan");
    for file in files {
        let Ok(bytes) = std::fs::read(file) else {
            continue; // a WAL segment recycled meanwhile
        };
        for p in plain {
            assert!(
                !contains(&bytes, p),
                "{what}: `{p}` is in {}",
                file.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_in_the_tables_their_files_or_the_wal() {
    let Some((t, cache)) = common::fresh_pair().await else {
        return;
    };
    let schema = common::Schema::schema(&t).to_owned();
    let admin = common::admin().await;
    let wal_start: String = admin
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .await
        .unwrap()
        .get(0);
    let tag = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let (ada, bob) = (format!("ada-{tag}"), format!("bob-{tag}"));
    let (ada_mail, bob_mail) = (format!("{ada}@example.com"), format!("{bob}@example.com"));
    let plain = [ada_mail.as_str(), bob_mail.as_str()];

    let master = MasterKey::new("pg", &[5; event_store::erasure::KEY_LEN]).unwrap();
    let keys = Keys::new(PgKeyStore::new(&t.store), master, vec![]);
    keys.check().await.unwrap();
    let es = EventStore::new(t.clone(), cache.clone(), NoEmitter).with_keys(keys);
    let last = event_store_testkit::register(&es, &[(&ada, &ada_mail), (&bob, &bob_mail)]).await;
    for (user, mail) in [(&ada, &ada_mail), (&bob, &bob_mail)] {
        let folded = es.aggregate::<Account>(user).await.unwrap();
        assert_eq!(folded.email.as_deref(), Some(mail.as_str()));
        let entry = cache
            .get(&key(user))
            .await
            .unwrap()
            .expect("cached, sealed");
        assert_eq!(&entry.subjects, std::slice::from_ref(user));
    }

    // A plain value the scans must find: a checkpoint's name (so a scan that reads the wrong
    // files, or none, fails here).
    let canary = format!("canary-{tag}");
    event_store::Checkpoints::save_checkpoint(
        &t,
        &event_store::CheckpointName::new(canary.clone()).unwrap(),
        last,
    )
    .await
    .unwrap();

    // Through SQL: no table of the schema holds a plaintext.
    let text = tables_as_text(&admin, &schema).await;
    assert!(text.contains("$sealed"), "the sealed values are there");
    for p in plain {
        assert!(!text.contains(p), "`{p}` in a table of the schema");
    }
    // On disk: the tables' files, their TOAST and indexes, and the WAL written since the start.
    let files = relation_files(&admin, &schema).await;
    match &files {
        Some(files) => {
            assert!(
                files
                    .iter()
                    .any(|f| contains(&std::fs::read(f).unwrap_or_default(), &canary)),
                "the scan reads the schema's files"
            );
            assert_absent(files, &plain, "before forget, the relations' files");
        }
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set: the byte scan of PostgreSQL's files must run (run the tests as a \
                 user who can read the server's data directory)"
            );
            eprintln!(
                "SKIPPED: the byte scan of PostgreSQL's files (the data directory is not readable here)"
            );
        }
    }
    if files.is_some() {
        let wal = wal_files(&admin, &wal_start).await;
        assert!(
            wal.iter()
                .any(|f| contains(&std::fs::read(f).unwrap_or_default(), &canary)),
            "the scan reads the WAL written meanwhile"
        );
        assert_absent(&wal, &plain, "before forget, the WAL");
    }

    // Forget ada: her cached state is gone, bob's stays; still no plaintext anywhere.
    es.forget(&ada, "ticket-pg").await.unwrap();
    assert_eq!(cache.get(&key(&ada)).await.unwrap(), None);
    assert!(cache.get(&key(&bob)).await.unwrap().is_some());
    let refolded = es.aggregate::<Account>(&ada).await.unwrap();
    assert_eq!(
        (refolded.email, refolded.plan.as_deref()),
        (None, Some("pro"))
    );
    assert_eq!(
        es.aggregate::<Account>(&bob)
            .await
            .unwrap()
            .email
            .as_deref(),
        Some(bob_mail.as_str())
    );
    let rows: i64 = admin
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{schema}\".subject_keys \
                  WHERE subject = $1 AND wrapped IS NULL"
            ),
            &[&ada],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "a tombstone, no key");
    let text = tables_as_text(&admin, &schema).await;
    for p in plain {
        assert!(!text.contains(p), "`{p}` in a table of the schema");
    }
    if let Some(files) = relation_files(&admin, &schema).await {
        assert_absent(&files, &plain, "after forget, the relations' files");
        let wal = wal_files(&admin, &wal_start).await;
        assert_absent(&wal, &plain, "after forget, the WAL");
    }
}
