//! The build engine: builds, steps, events, the resource journal, cancellation, concurrency.
//!
//! Never knows the screen: the console and the headless command are two subscribers of the same
//! event stream.

pub mod build;
pub mod cleanup;
pub mod events;
pub mod journal;
pub mod lock;
