//! Why the emulator could not start.

use std::net::SocketAddr;

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Key or certificate generation failed.
    #[error("cannot create the emulator's keys: {0}")]
    Keys(String),
    /// The TLS configuration was refused.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The runtime could not start.
    #[error("cannot start the emulator: {0}")]
    Runtime(std::io::Error),
}
