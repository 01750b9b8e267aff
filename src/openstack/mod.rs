//! The cloud API: how image-factory finds and talks to OpenStack.
//!
//! [`config`] resolves which cloud and credentials (clouds.yaml, `OS_*`); [`Cloud::connect`]
//! authenticates with Keystone v3 and gives a cheap-to-clone handle whose methods are grouped by
//! service: [`compute`], [`image`], [`network`], [`volume`], [`orchestration`],
//! [`object_store`]; [`waiter`] polls resources until they reach a status.

mod auth;
pub mod catalog;
mod client;
pub mod compute;
pub mod config;
mod discovery;
pub mod error;
pub mod image;
pub mod network;
pub mod object_store;
pub mod orchestration;
mod paging;
mod request;
pub mod retry;
pub mod volume;
pub mod waiter;

pub use auth::Named;
pub use catalog::{COMPUTE_MICROVERSION, COMPUTE_MIN_MICROVERSION, Microversion};
pub use client::{Cloud, Options};
pub use error::{ApiError, Service, TransportKind};
pub use retry::RetryPolicy;
pub use waiter::{PollPolicy, StatusChange, Wait};

#[cfg(test)]
mod tests;
