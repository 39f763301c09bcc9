//! An event's columns, checked into a recorded event.

use event_store::{EventContext, Position, RecordedEvent, Result};
use serde_json::Value;
use uuid::Uuid;

use crate::convert::unsigned;

/// The columns of one event as the driver decoded them.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// The event's position.
    pub position: Position,
    /// `id`.
    pub id: Uuid,
    /// `stream`.
    pub stream: String,
    /// `version`, as stored.
    pub version: i64,
    /// `namespace`.
    pub namespace: String,
    /// `event_type`.
    pub event_type: String,
    /// `data`.
    pub data: Value,
    /// `context`.
    pub context: EventContext,
}

impl EventRow {
    /// The recorded event; a negative version is an error naming the column.
    pub fn into_recorded(self, backend: &'static str) -> Result<RecordedEvent> {
        Ok(RecordedEvent {
            id: self.id,
            stream: self.stream,
            version: unsigned(backend, "version", self.version)?,
            position: self.position,
            namespace: self.namespace,
            event_type: self.event_type,
            data: self.data,
            context: self.context,
        })
    }
}
