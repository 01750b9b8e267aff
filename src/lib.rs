//! image-factory: builds OpenStack server images and the HEAT stacks that use them.
//!
//! The library holds everything but the screen: `tui` and `cli` live beside `main.rs` and use it.

pub mod catalog;
pub mod engine;
pub mod history;
pub mod openstack;
pub mod osimage;
pub mod paths;
pub mod provision;
pub mod render;
pub mod sandbox;
pub mod serde_millis;
pub mod vm;
pub mod waiting;
pub mod yaml;
