//! image-factory: builds OpenStack server images and the HEAT stacks that use them.
//!
//! The library holds everything but the screen: `tui` and `cli` live beside `main.rs` and use it.

pub mod catalog;
pub mod openstack;
pub mod osimage;
pub mod render;
pub mod yaml;
