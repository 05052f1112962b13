//! The CLI's edge for the library's token-side errors: library messages say "the
//! lifetime", "the tenant", "the authority host"; here each error variant gets the flag
//! (or environment variable) that set the value it is about, and an Entra refusal whose
//! hint says what to check gets the flags that set it. Matching is on variants and
//! AADSTS codes only, never on message text.

use super::{AppArgs, EndpointArgs};
use certassert::assertion;
use certassert::entra::{self, authority};
use std::error::Error;
use std::fmt;

type Boxed = Box<dyn Error>;

/// A library error with the flag that set the value it is about in front:
/// `--lifetime 0: assertion lifetime 0 s is out of range: …`.
#[derive(Debug)]
struct Flagged {
    flag: String,
    error: Boxed,
}

impl fmt::Display for Flagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.flag, self.error)
    }
}

impl Error for Flagged {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.error.as_ref())
    }
}

/// An Entra refusal whose hint line ends with the flags that set what it says to check.
#[derive(Debug)]
struct Hinted {
    flags: &'static str,
    error: Boxed,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; set with {}", self.error, self.flags)
    }
}

impl Error for Hinted {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.error.as_ref())
    }
}

fn flagged(flag: impl Into<String>, error: impl Into<Boxed>) -> Boxed {
    Box::new(Flagged {
        flag: flag.into(),
        error: error.into(),
    })
}

/// The flags that set what an AADSTS code's hint tells the user to check.
fn aadsts_flags(code: u32) -> Option<&'static str> {
    Some(match code {
        700023 => "--tenant TENANT-ID, or --token-url URL",
        700016 => "--client-id and --tenant",
        700021 => "--client-id",
        90002 => "--tenant and --authority-host",
        1002012 | 70011 => "--scope RESOURCE/.default",
        901002 => "--scope RESOURCE/.default, or --resource R",
        _ => return None,
    })
}

/// An assertion error with its flag: `--lifetime N`, `--client-id` (or
/// `AZURE_CLIENT_ID`), `--aud`, `--cert`.
pub fn assertion(e: assertion::Error, app: &AppArgs) -> Boxed {
    let flag = match &e {
        assertion::Error::Lifetime(n) => format!("--lifetime {n}"),
        assertion::Error::ClientId => app.client_id_source().to_string(),
        assertion::Error::Audience => "--aud".to_string(),
        assertion::Error::NoCertificate => "--cert".to_string(),
        _ => return e.into(),
    };
    flagged(flag, e)
}

/// An endpoint error with its flag: `--authority-host` (or `AZURE_AUTHORITY_HOST`),
/// `--token-url`, `--aud`, `--tenant` (or `AZURE_TENANT_ID`).
pub fn endpoint(e: authority::Error, app: &AppArgs, endpoint: &EndpointArgs) -> Boxed {
    let flag = match &e {
        authority::Error::Url { role, .. } => match role {
            authority::UrlRole::AuthorityHost => endpoint.authority_host_source(),
            authority::UrlRole::TokenUrl => "--token-url",
            authority::UrlRole::Audience => "--aud",
            _ => return e.into(),
        },
        authority::Error::Tenant
        | authority::Error::MultiTenant(_)
        | authority::Error::TenantSyntax(_) => app.tenant_source(),
        _ => return e.into(),
    };
    flagged(flag, e)
}

/// A token-request error with its flag, or an Entra refusal with the flags its hint is
/// about (`hint: the tenant was not found: … ; set with --tenant and --authority-host`).
pub fn entra(e: entra::Error, app: &AppArgs, endpoint_args: &EndpointArgs) -> Boxed {
    match e {
        entra::Error::Assertion(e) => assertion(e, app),
        entra::Error::Endpoint(e) => endpoint(e, app, endpoint_args),
        entra::Error::ClaimsEncoding | entra::Error::ClaimsNotObject => flagged("--claims", e),
        entra::Error::CaFile { .. } => flagged("--ca-file", e),
        entra::Error::Entra(refusal) => {
            let flags = refusal.hint_code().and_then(aadsts_flags);
            let error: Boxed = entra::Error::Entra(refusal).into();
            match flags {
                Some(flags) => Box::new(Hinted { flags, error }),
                None => error,
            }
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_hint_belongs_to_a_library_hint() {
        for code in [700023, 700016, 700021, 90002, 1002012, 70011, 901002] {
            assert!(aadsts_flags(code).is_some(), "{code}");
            assert!(entra::hint(code).is_some(), "{code}");
        }
    }
}
