//! Named checkpoints.

use event_store::{CheckpointName, Checkpoints, Error, Position};

use crate::support::suffix;

/// Named checkpoints round-trip, are replaced by later saves, and are listed (a bad name cannot
/// reach the store: [`CheckpointName`] refuses it).
pub async fn checkpoints_round_trip<S: Checkpoints>(store: &S) {
    let name = CheckpointName::new(format!("relay:{}", suffix())).expect("a valid name");
    assert_eq!(store.load_checkpoint(&name).await.expect("load"), None);
    store
        .save_checkpoint(&name, Position::from_parts(7, 9))
        .await
        .expect("save");
    assert_eq!(
        store.load_checkpoint(&name).await.expect("load"),
        Some(Position::from_parts(7, 9))
    );
    store
        .save_checkpoint(&name, Position::from_offset(42))
        .await
        .expect("save");
    assert_eq!(
        store.load_checkpoint(&name).await.expect("load"),
        Some(Position::from_offset(42))
    );
    let other = CheckpointName::new(format!("{name}-other")).expect("a valid name");
    store
        .save_checkpoint(&other, Position::START)
        .await
        .expect("save");
    let all = store.checkpoints().await.expect("list");
    assert!(
        all.contains(&(name.clone(), Position::from_offset(42)))
            && all.contains(&(other, Position::START)),
        "{all:?}"
    );
    for bad in ["", "line\nbreak"] {
        assert!(
            matches!(CheckpointName::new(bad), Err(Error::InvalidInput { .. })),
            "{bad:?} is not a checkpoint name"
        );
    }
}
