//! certassert gets OAuth 2.0 access tokens from Microsoft Entra ID with a certificate
//! credential whose private key never leaves the hardware it lives in: a PKCS#11 HSM or
//! smartcard, a TPM 2.0, or — as a fallback — a software key file.
//!
//! Layers, top to bottom (data never flows back up):
//! - [`entra`] gets tokens with that credential: endpoints and URL policy
//!   ([`entra::authority`]), grants, bounded retries, AADSTS errors with hints, the cache.
//!   The `emulator` module (feature `emulator`) is a local Entra token endpoint as strict
//!   as the real one. The `serve` module (feature `serve`) is a local managed-identity
//!   endpoint that hands the credential's tokens to unmodified Azure SDK apps.
//! - [`graph`] is Microsoft Graph's key-rolling subset (`addKey`/`removeKey` with a
//!   proof of possession), for an app that renews its own certificate.
//! - [`assertion`] builds client assertion JWTs and [`inspect`] lints any JWT against
//!   Entra's rules; both share [`rules`] (Entra's assertion rules, one table) and [`jws`]
//!   (the one strict compact-JWS decoder).
//! - [`cert`] loads and issues X.509 certificates and computes thumbprints, signing
//!   through the [`signer::Signer`] trait; [`public_key`] reads RSA public keys and PEM.
//! - [`signer`] is the seam: software key files always, PKCS#11 (feature `pkcs11`) and
//!   TPM 2.0 (feature `tpm`) when built.
//! - [`keyref`] parses what names a key (every form, in every build) and [`secret`] what
//!   unlocks it; secrets nobody configured are asked for through [`secret::Callbacks`],
//!   never on the terminal by the library itself.
//! - [`config`] loads named profiles (`[profile.NAME]` tables of a TOML file): a key,
//!   its certificate, tenant, client id and the rest, typed and checked at load.
//! - [`input`] reads every file and stream a user hands it: regular files only, each
//!   within a documented size limit.
//!
//! - The `azure` module (feature `azure`, off by default) is the Rust Azure SDK's door:
//!   an `azure_core` `TokenCredential` and an `azure_identity` `ClientAssertion` over any
//!   Signer.
//!
//! Features: `pkcs11`, `tpm`, `cli` (the `certassert` command), `emulator` and `serve`, all
//! on by default, and `azure`, off; with none, the crate is the library alone (software
//! keys and token flows).

#![warn(missing_docs)]

pub mod assertion;
#[cfg(feature = "azure")]
pub mod azure;
pub mod cert;
pub mod config;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod encoding;
pub mod entra;
pub mod graph;
pub mod input;
pub mod inspect;
pub mod jws;
pub mod keyref;
pub mod output;
pub mod public_key;
pub mod rules;
pub mod secret;
#[cfg(feature = "serve")]
pub mod serve;
pub mod signer;

pub use signer::{Algorithm, Signer};

/// The README's examples, compiled as doctests so they cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
