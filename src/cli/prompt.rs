//! The CLI's answer to the library's [`Callbacks`]: a PIN or password no `…-source=`
//! supplies is asked for on the terminal, without echo (rpassword). When standard input
//! is not a terminal nothing is asked — a service, a pipe, `cargo test` or CI never waits
//! for input nobody will type — and the library's error says which `…-source=` to add.

use certassert::secret::{Callbacks, Secret, SecretRequest};
use std::io::IsTerminal as _;

/// Asks on the terminal, without echo; refuses (answers `None`) off a terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct TerminalPrompt;

impl Callbacks for TerminalPrompt {
    fn request_secret(&self, request: &SecretRequest) -> Option<Secret> {
        if !std::io::stdin().is_terminal() {
            return None;
        }
        match rpassword::prompt_password(format!("Enter {}: ", request.description)) {
            Ok(text) => Some(Secret::new(text)),
            Err(e) => {
                super::warn(&format!(
                    "reading the {} from the terminal failed: {e}",
                    request.description
                ));
                None
            }
        }
    }
}
