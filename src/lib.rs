//! certassert gets OAuth 2.0 access tokens from Microsoft Entra ID with a certificate
//! credential whose private key never leaves the hardware it lives in: a PKCS#11 HSM or
//! smartcard, a TPM 2.0, or — as a fallback — a software key file.
//!
//! Layers, top to bottom (data never flows back up):
//! [`assertion`] (client assertion JWTs) and [`inspect`] (lint any JWT against Entra's
//! rules) share [`rules`] (Entra's assertion rules, one table) and [`jws`] (the one
//! strict compact-JWS decoder), and sit on [`cert`] (X.509 load/build, thumbprints),
//! which signs through the [`signer::Signer`] trait; [`keyref`] and [`secret`] parse what names a key and what
//! unlocks it. [`entra`] gets tokens with that credential (grants, retries, AADSTS
//! hints, cache); [`emulator`] is a local Entra token endpoint as strict as the real one.

#![warn(missing_docs)]

pub mod assertion;
pub mod cert;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod encoding;
pub mod entra;
pub mod inspect;
pub mod jws;
pub mod keyref;
pub mod public_key;
// Transitional: tests/common still names `certassert::pem`; the tests' owner moves it to
// `public_key::pem`, after which this line goes.
#[doc(hidden)]
pub use public_key::pem;
pub mod rules;
pub mod secret;
pub mod signer;

pub use signer::{Algorithm, Signer};

/// The README's examples, compiled as doctests so they cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
