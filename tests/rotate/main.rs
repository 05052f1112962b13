//! `cert rotate` / `cert retire` (issue 12): Graph's proof of possession as an
//! independent verifier (PyJWT) reads it, the emulator's Graph subset refusing each bad
//! proof claim by claim, and the commands end to end against the emulator with software,
//! SoftHSM2 and swtpm keys.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod emulator;
mod hardware;
mod proof;
