//! `event-store forget` and `event-store keys` on a SQLite file written by a service with keys:
//! no plaintext of a personal field in the file, forgetting erases it on every read, a wrong
//! master key changes nothing, rotation keeps everything readable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

use std::path::Path;
use std::process::{Command, Output};

use event_store::erasure::{Keys, MasterKey};
use event_store::{EventStore, ExpectedVersion};
use event_store_sqlite::{SqliteCache, SqliteKeyStore, SqliteStore};
use event_store_testkit::{KitAccountProfile, Registered};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_event-store");

type Account = KitAccountProfile;

fn run(url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--url", url])
        .args(args)
        .env_remove("EVENT_STORE_MASTER_KEY")
        .output()
        .unwrap()
}

fn ok(url: &str, args: &[&str]) -> String {
    let out = run(url, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A new master key written to `dir/name`.
fn new_key(url: &str, dir: &Path, name: &str, id: &str) -> (std::path::PathBuf, MasterKey) {
    let text = ok(url, &["keys", "generate", id]);
    let path = dir.join(name);
    std::fs::write(&path, &text).unwrap();
    (path, MasterKey::from_text(&text).unwrap())
}

/// Every byte of the store's files.
fn bytes(db: &Path) -> Vec<u8> {
    let mut all = std::fs::read(db).unwrap();
    if let Ok(wal) = std::fs::read(db.with_extension("db-wal")) {
        all.extend(wal);
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The store's events and keys, to compare before and after.
async fn state(
    db: &Path,
) -> (
    Vec<event_store::RecordedEvent>,
    Vec<(String, event_store::erasure::WrappedKey)>,
) {
    use event_store::Store as _;
    use event_store::erasure::KeyStore as _;
    let store = SqliteStore::open(db).await.unwrap();
    let events = store
        .read_all(event_store::Position::START, 1000)
        .await
        .unwrap();
    let keys = SqliteKeyStore::new(&store)
        .active(None, 1000)
        .await
        .unwrap();
    (events, keys)
}

/// The user's email, folded by a service with keys and the store's cache (which then holds the
/// state, sealed when it has the email).
async fn email(db: &Path, master: MasterKey, user: &str) -> Option<String> {
    let store = SqliteStore::open(db).await.unwrap();
    let keys = Keys::new(SqliteKeyStore::new(&store), master, vec![]);
    keys.check().await.unwrap();
    let cache = SqliteCache::new(&store);
    let es = EventStore::new(store, cache, event_store::NoEmitter).with_keys(keys);
    es.aggregate::<Account>(user).await.unwrap().email
}

/// The store's cached state of the user's account, if any.
async fn cached(db: &Path, user: &str) -> Option<event_store::CachedState> {
    use event_store::Cache as _;
    let store = SqliteStore::open(db).await.unwrap();
    let key = Account::cache_key(user);
    SqliteCache::new(&store).get(&key).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_and_rotate_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let url = format!("sqlite:{}", db.display());
    ok(&url, &["init"]);
    let (key1, master1) = new_key(&url, dir.path(), "k1", "k1");

    // A service with keys writes personal data.
    {
        let store = SqliteStore::open(&db).await.unwrap();
        let keys = Keys::new(SqliteKeyStore::new(&store), master1, vec![]);
        keys.check().await.unwrap();
        let es = EventStore::from_store(store).with_keys(keys);
        for (user, email) in [("7", "ada@example.com"), ("8", "bob@example.com")] {
            let e = Registered::new_event(user, email);
            es.append(&format!("user-{user}"), ExpectedVersion::Any, vec![e])
                .await
                .unwrap();
        }
    }
    let k1 = || MasterKey::from_text(&std::fs::read_to_string(&key1).unwrap()).unwrap();
    for (user, mail) in [("7", "ada@example.com"), ("8", "bob@example.com")] {
        assert_eq!(email(&db, k1(), user).await.as_deref(), Some(mail));
        let entry = cached(&db, user).await.expect("the fold is cached");
        assert_eq!(entry.subjects, [user], "sealed for its subject");
    }
    // No plaintext of a personal field anywhere in the file (events, keys, cache), before or
    // after.
    for plain in ["ada@example.com", "bob@example.com"] {
        assert!(!contains(&bytes(&db), plain), "{plain} in the file");
    }
    // Exports carry the sealed form.
    let export = ok(&url, &["export"]);
    assert!(
        !export.contains("ada@") && export.contains("$sealed"),
        "{export}"
    );

    // A missing or wrong master key: a usage error, nothing written.
    let before = state(&db).await;
    let out = run(&url, &["forget", "7", "--by", "ticket-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no master key"));
    let (wrong, _) = new_key(&url, dir.path(), "wrong", "k1");
    let out = run(
        &url,
        &[
            "forget",
            "7",
            "--by",
            "ticket-1",
            "--master-key-file",
            wrong.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("other bytes") && e.lines().count() == 1, "{e}");
    assert!(
        state(&db).await == before,
        "nothing written with a wrong key"
    );

    // Forget 7: recorded, and erased for every reader; 8 is unaffected.
    let audit: Value = serde_json::from_str(&ok(
        &url,
        &[
            "forget",
            "7",
            "--by",
            "ticket-1",
            "--master-key-file",
            key1.to_str().unwrap(),
        ],
    ))
    .unwrap();
    assert_eq!(audit["type"], "SubjectForgotten");
    assert_eq!(
        (
            &audit["data"]["subject"],
            &audit["data"]["by"],
            &audit["data"]["had_key"]
        ),
        (
            &Value::from("7"),
            &Value::from("ticket-1"),
            &Value::from(true)
        )
    );
    assert_eq!(
        cached(&db, "7").await,
        None,
        "its cached state went with it"
    );
    assert!(cached(&db, "8").await.is_some());
    assert_eq!(email(&db, k1(), "7").await, None);
    assert_eq!(
        email(&db, k1(), "8").await.as_deref(),
        Some("bob@example.com")
    );
    for plain in ["ada@example.com", "bob@example.com"] {
        assert!(!contains(&bytes(&db), plain), "{plain} in the file");
    }

    // Rotate to k2: 8's key and the canary are rewrapped; k1 is no longer needed.
    let (key2, master2) = new_key(&url, dir.path(), "k2", "k2");
    let rewrapped = ok(
        &url,
        &[
            "keys",
            "rotate",
            "--master-key-file",
            key2.to_str().unwrap(),
            "--previous-key-file",
            key1.to_str().unwrap(),
        ],
    );
    assert_eq!(rewrapped.trim(), "2");
    assert_eq!(
        email(&db, master2, "8").await.as_deref(),
        Some("bob@example.com")
    );
    let out = run(
        &url,
        &[
            "forget",
            "8",
            "--by",
            "x",
            "--master-key-file",
            key1.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "k1 alone no longer opens the store"
    );
}
