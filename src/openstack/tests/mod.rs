//! The client over real HTTP, against small axum servers on 127.0.0.1.

mod auth_retry;
mod fake;
mod secrets;
mod services;
mod streaming;
