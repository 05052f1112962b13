//! Token-endpoint answers, as the client reads them (`entra::http`'s answer parser is
//! private; this is its composition of public parts): an error status goes to
//! `EntraError::parse` and its message, a success body to JSON and `Token::from_json`.
//! The first byte picks the status. A parsed token's `Debug` must not show the access or
//! refresh token.
#![no_main]

use certassert::entra::error::EntraError;
use certassert::entra::token::Token;
use certassert::secret::Secret;
use libfuzzer_sys::fuzz_target;

const STATUSES: [u16; 8] = [200, 201, 400, 401, 403, 429, 500, 503];
const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let status = STATUSES[usize::from(pick) % STATUSES.len()];
    if !(200..300).contains(&status) {
        if let Some(e) = EntraError::parse(status, body) {
            let _ = (e.to_string(), e.code(), e.hint_code());
        }
        return;
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    if let Ok(token) = Token::from_json(&json, NOW) {
        let _ = token.is_fresh(NOW);
        // Debug must not depend on the secrets at all.
        let mut blank = token.clone();
        blank.access_token = Secret::new(String::new());
        blank.refresh_token = token
            .refresh_token
            .as_ref()
            .map(|_| Secret::new(String::new()));
        assert_eq!(
            format!("{token:?}"),
            format!("{blank:?}"),
            "a token's Debug shows a secret"
        );
    }
});
