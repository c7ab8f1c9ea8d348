//! Events: violations stored in SQLite with their snapshot and clip, and retention.

pub mod retention;
mod snapshot;
pub mod stats;
mod store;
pub mod workflow;

pub use snapshot::{Mark, SnapshotError, render};
pub use store::{Event, EventFiles, Filter, NewEvent, Status, Store, StoreError, Transition, stored_file};
