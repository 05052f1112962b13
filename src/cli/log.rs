//! What the command says while it works, on stderr: the library's `tracing` events (and
//! the `log` records of ureq, cryptoki and tss-esapi) through one filter.
//!
//! | setting | shows |
//! |---|---|
//! | (none) | `info` from certassert: retries and their waits, key generation, a device being waited for |
//! | `-v` | and `debug`: the endpoint posted to, each attempt, cache hits and misses, the key and device opened, timings |
//! | `-vv` | and certassert's `trace`, and `info` from the crates it uses |
//! | `-vvv` | everything |
//! | `CERTASSERT_LOG`, else `RUST_LOG` | an `EnvFilter` directive (`certassert=debug,ureq=info`), in place of `-v` |
//!
//! No event carries a secret: key references print redacted, assertions, tokens, PINs
//! and passwords are never fields, and ureq-proto's wire dumps are always off
//! (tests/flows/verbose.rs looks for any 8 characters of the token at every setting;
//! tests/canaries.rs runs every failure path at `trace`).

use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// The environment variables read for a filter, first wins.
const FILTER_ENV: [&str; 2] = ["CERTASSERT_LOG", "RUST_LOG"];

/// Install the stderr subscriber for `verbose` (the count of `-v`).
pub fn init(verbose: u8) {
    let from_env = FILTER_ENV
        .iter()
        .find_map(|var| std::env::var(var).ok().map(|value| (*var, value)))
        .filter(|(_, value)| !value.trim().is_empty());
    let (filter, detailed) = match from_env {
        Some((var, value)) => match EnvFilter::try_new(&value) {
            Ok(filter) => (filter, true),
            Err(e) => {
                super::warn(&format!(
                    "{var} is not a log filter ({e}); write it like certassert=debug,ureq=info"
                ));
                (default_filter(verbose), verbose > 0)
            }
        },
        None => (default_filter(verbose), verbose > 0),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    // A second subscriber (tests calling main twice) is not an error worth showing.
    let _ = if detailed {
        let layer = layer
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_target(true);
        tracing_subscriber::registry()
            .with(filter)
            .with(layer.with_filter(filter_fn(no_raw_dumps)))
            .try_init()
    } else {
        // Without -v only certassert's feedback lines show, as plain sentences.
        let layer = layer.without_time().with_target(false).with_level(false);
        tracing_subscriber::registry()
            .with(filter)
            .with(layer.with_filter(filter_fn(no_raw_dumps)))
            .try_init()
    };
}

/// ureq-proto's `trace` records are hex dumps of the bytes on the wire — an answer's
/// access token among them — so they stay off whatever the filter says.
fn no_raw_dumps(meta: &tracing::Metadata<'_>) -> bool {
    !(*meta.level() == tracing::Level::TRACE && meta.target().starts_with("ureq_proto"))
}

fn default_filter(verbose: u8) -> EnvFilter {
    EnvFilter::new(match verbose {
        0 => "certassert=info",
        1 => "certassert=debug",
        2 => "certassert=trace,info",
        _ => "trace",
    })
}
