//! The cloud API: how image-factory finds and talks to OpenStack.

pub mod config;
