//! Entra ID's rules for a client assertion, in one table: the clock skew it allows, the
//! algorithms it accepts, the header parameters that name the certificate and their
//! shapes, the lifetimes, and the tenant aliases that name no one tenant. The assertion
//! builder ([`crate::assertion`]), the linter ([`crate::inspect`]) and the emulator's
//! verifier all read these, so the three cannot drift apart. This module holds data and
//! tiny predicates only; each user phrases its own findings.

use crate::cert::Certificate;
use crate::signer::Algorithm;

/// Seconds of clock skew Entra allows on `nbf` and `exp`.
pub const CLOCK_SKEW: i64 = 300;

/// The signature algorithms Entra accepts for a certificate credential, in the order its
/// error messages list them.
pub const ALGORITHMS: [Algorithm; 2] = [Algorithm::Rs256, Algorithm::Ps256];

/// The longest assertion lifetime certassert signs, in seconds.
pub const MAX_LIFETIME: u64 = 3600;

/// The longest lifetime Entra advises (5–10 minutes after `nbf`), in seconds: the
/// default lifetime, and past it the linter warns that a seen assertion can be replayed.
pub const ADVISED_LIFETIME: u64 = 600;

/// Tenant aliases that name no one tenant: an assertion's `aud` must name one tenant, so
/// these give AADSTS700023 (compared without regard to case).
pub const MULTI_TENANT_ALIASES: [&str; 3] = ["common", "organizations", "consumers"];

/// A NumericDate above this (the year 5138) is milliseconds, not seconds.
pub const MILLISECONDS_ABOVE: i64 = 100_000_000_000;

/// The JOSE `typ` of a client assertion.
pub const TYP: &str = "JWT";

/// The header parameter a verifier refuses (RFC 7515 §4.1.11): the extensions it lists
/// are not understood.
pub const CRIT: &str = "crit";

/// Header parameters that point at a key and that Entra ignores: it only uses the
/// certificates registered with the app (RFC 8725 §3.10).
pub const IGNORED_KEY_HEADERS: [&str; 3] = ["jku", "jwk", "x5u"];

/// The algorithm a JOSE `alg` names, if Entra accepts it (exact, case-sensitive match).
pub fn algorithm(alg: &str) -> Option<Algorithm> {
    ALGORITHMS.into_iter().find(|a| a.as_str() == alg)
}

/// Whether `tenant` is one of [`MULTI_TENANT_ALIASES`].
pub fn is_multi_tenant(tenant: &str) -> bool {
    MULTI_TENANT_ALIASES
        .iter()
        .any(|alias| alias.eq_ignore_ascii_case(tenant))
}

/// Whether an assertion whose `exp` is `exp` is expired at `now`, skew allowed.
pub fn expired(exp: i64, now: i64) -> bool {
    now > exp + CLOCK_SKEW
}

/// Whether an assertion whose `nbf` is `nbf` is not valid yet at `now`, skew allowed.
pub fn not_yet_valid(nbf: i64, now: i64) -> bool {
    nbf > now + CLOCK_SKEW
}

/// Whether a NumericDate `t` is milliseconds, not seconds (above [`MILLISECONDS_ABOVE`]).
pub fn is_milliseconds(t: i64) -> bool {
    t > MILLISECONDS_ABOVE
}

/// Whether a validity window from `start` (`nbf`, or `iat` without one) to `exp` never
/// opens: `exp` is not after `start`. Entra answers AADSTS700024.
pub fn never_valid(start: i64, exp: i64) -> bool {
    exp <= start
}

/// The bytes of an `x5t`/`x5t#S256` value as Entra reads it: base64url, with or without
/// its `=` padding. Entra accepts the padded form, which MSAL Python sends
/// (`urlsafe_b64encode` of the thumbprint: `…E8=`); only canonical padding is taken,
/// never padding in the middle, and never standard base64 (`+`, `/`).
pub fn thumbprint_bytes(text: &str) -> Option<Vec<u8>> {
    let unpadded = text.strip_suffix("==").or_else(|| text.strip_suffix('='));
    match unpadded {
        Some(bare) if text.len().is_multiple_of(4) && !bare.ends_with('=') => {
            crate::encoding::b64url_decode(bare)
        }
        Some(_) => None,
        None => crate::encoding::b64url_decode(text),
    }
}

/// Why a time claim is not a NumericDate Entra takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeProblem {
    /// Not a JSON number (a string, …), or a fraction where only an integer is taken
    /// (`nbf`).
    NotANumber,
    /// Seconds above [`MILLISECONDS_ABOVE`]: milliseconds by mistake.
    Milliseconds(i64),
}

/// A time claim (`exp`, `nbf`, `iat`) as Entra reads it, in whole seconds. RFC 7519 lets
/// a NumericDate be non-integer, and Entra takes a fractional `exp` and `iat`: MSAL Python
/// (and azure-identity through it) signs `exp = time.time() + 600` and `iat = time.time()`
/// as JSON floats, and Entra answers with tokens; those are read as whole seconds (the
/// fraction dropped). `nbf` stays an integer (IdentityModel refuses a fractional `nbf`:
/// "could not be parsed to an integer"), and a string is no NumericDate at all.
pub fn numeric_date(name: &str, value: &serde_json::Value) -> Result<i64, TimeProblem> {
    let seconds = value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| name != "nbf" && f.is_finite() && *f >= 0.0 && *f < 1e15)
            .map(|f| f.floor() as i64)
    });
    match seconds {
        Some(t) if is_milliseconds(t) => Err(TimeProblem::Milliseconds(t)),
        Some(t) => Ok(t),
        None => Err(TimeProblem::NotANumber),
    }
}

/// Whether a time claim's value is a JSON number with a fraction (read as whole seconds).
pub fn is_fractional(value: &serde_json::Value) -> bool {
    value.is_f64()
}

/// Which digest of the certificate's DER a thumbprint header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest {
    Sha1,
    Sha256,
}

/// A header parameter that names the certificate: base64url (no padding) of exactly
/// [`len`](Self::len) digest bytes of its DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thumbprint {
    /// The header parameter's name.
    pub header: &'static str,
    /// The number of raw digest bytes it encodes.
    pub len: usize,
    digest: Digest,
}

/// `x5t`: SHA-1 of the DER (the portal's thumbprint as raw bytes); goes with RS256.
pub const X5T: Thumbprint = Thumbprint {
    header: "x5t",
    len: 20,
    digest: Digest::Sha1,
};

/// `x5t#S256`: SHA-256 of the DER; goes with PS256.
pub const X5T_S256: Thumbprint = Thumbprint {
    header: "x5t#S256",
    len: 32,
    digest: Digest::Sha256,
};

/// The thumbprint headers in the order a verifier looks for them (`x5t#S256` first).
pub const THUMBPRINTS: [Thumbprint; 2] = [X5T_S256, X5T];

impl Thumbprint {
    /// The header certassert writes for `alg`: `x5t` for RS256, `x5t#S256` for PS256.
    pub fn for_alg(alg: Algorithm) -> Self {
        match alg {
            Algorithm::Rs256 => X5T,
            Algorithm::Ps256 => X5T_S256,
        }
    }

    /// The raw digest bytes this header holds for `cert`.
    pub fn digest(&self, cert: &Certificate) -> Vec<u8> {
        match self.digest {
            Digest::Sha1 => cert.sha1(),
            Digest::Sha256 => cert.sha256(),
        }
    }

    /// The header's value for `cert` (base64url of [`digest`](Self::digest)).
    pub fn value(&self, cert: &Certificate) -> String {
        match self.digest {
            Digest::Sha1 => cert.x5t(),
            Digest::Sha256 => cert.x5t_s256(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_entras_rules() {
        assert_eq!(algorithm("RS256"), Some(Algorithm::Rs256));
        assert_eq!(algorithm("PS256"), Some(Algorithm::Ps256));
        for other in ["rs256", "ES256", "HS256", "none", ""] {
            assert_eq!(algorithm(other), None, "{other}");
        }
        assert!(is_multi_tenant("Common") && is_multi_tenant("CONSUMERS"));
        assert!(!is_multi_tenant("contoso.onmicrosoft.com"));
        assert!(!expired(1000, 1300) && expired(1000, 1301));
        assert!(!not_yet_valid(1300, 1000) && not_yet_valid(1301, 1000));
        assert!(!is_milliseconds(MILLISECONDS_ABOVE) && is_milliseconds(1_700_000_000_000));
        assert!(never_valid(1000, 1000) && never_valid(1000, 999) && !never_valid(1000, 1001));
        assert_eq!(Thumbprint::for_alg(Algorithm::Rs256), X5T);
        assert_eq!(Thumbprint::for_alg(Algorithm::Ps256), X5T_S256);
        assert_eq!(THUMBPRINTS.map(|t| t.header), ["x5t#S256", "x5t"]);
    }
}
