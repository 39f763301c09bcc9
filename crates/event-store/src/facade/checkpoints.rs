//! Checkpoints on the facade, for log followers (read models, relays).

use crate::backend::{Checkpoints, Publish, Store};
use crate::error::Result;
use crate::facade::EventStore;
use crate::model::{CheckpointName, Position};

impl<S: Store + Checkpoints, C: Send + Sync + 'static, E: Publish> EventStore<S, C, E> {
    /// The checkpoint saved under `name` (`None`: never saved; start from
    /// [`Position::START`]).
    pub async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>> {
        self.inner
            .store
            .load_checkpoint(&CheckpointName::new(name)?)
            .await
    }

    /// Saves `position` under `name`: the follower has handled every event up to it.
    pub async fn save_checkpoint(&self, name: &str, position: Position) -> Result<()> {
        self.inner
            .store
            .save_checkpoint(&CheckpointName::new(name)?, position)
            .await
    }

    /// Every saved checkpoint.
    pub async fn checkpoints(&self) -> Result<Vec<(CheckpointName, Position)>> {
        self.inner.store.checkpoints().await
    }
}
