//! Authority hosts and token endpoints: the public cloud, US Government, China (21Vianet)
//! or a custom host (env `AZURE_AUTHORITY_HOST`), v2 (`scope`) or v1 (`resource`), or an
//! explicit token URL for any RFC 7523 server.

use crate::assertion::{self, EndpointVersion};

/// The public cloud (the default).
pub const AUTHORITY_PUBLIC: &str = crate::assertion::DEFAULT_AUTHORITY_HOST;
/// Azure US Government.
pub const AUTHORITY_US_GOVERNMENT: &str = "https://login.microsoftonline.us";
/// Azure operated by 21Vianet (China).
pub const AUTHORITY_CHINA: &str = "https://login.chinacloudapi.cn";

/// The token endpoint to post to (and the assertion's `aud`): `token_url` when given,
/// else `{authority_host}/{tenant}/oauth2/v2.0/token` for scopes or
/// `{authority_host}/{tenant}/oauth2/token` for a resource (see [`Target::version`](super::Target::version)).
///
/// # Errors
/// Plain http to a non-loopback host, a missing or multi-tenant tenant, a bad URL.
pub fn endpoint(
    authority_host: &str,
    tenant: Option<&str>,
    token_url: Option<&str>,
    version: EndpointVersion,
) -> Result<String, assertion::Error> {
    if let Some(url) = token_url {
        assertion::check_url("--token-url", url)?;
        return Ok(url.to_string());
    }
    assertion::token_endpoint(authority_host, tenant.unwrap_or_default(), version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entra::Target;

    #[test]
    fn v1_for_resource_v2_for_scopes_token_url_wins() {
        let s = Target::Scopes(vec!["https://graph.microsoft.com/.default".into()]);
        let r = Target::Resource("https://vault.azure.net".into());
        assert_eq!(
            endpoint(AUTHORITY_US_GOVERNMENT, Some("t"), None, s.version()).unwrap(),
            "https://login.microsoftonline.us/t/oauth2/v2.0/token"
        );
        assert_eq!(
            endpoint(AUTHORITY_CHINA, Some("t"), None, r.version()).unwrap(),
            "https://login.chinacloudapi.cn/t/oauth2/token"
        );
        assert_eq!(
            endpoint(
                AUTHORITY_PUBLIC,
                None,
                Some("https://idp.example/token"),
                s.version()
            )
            .unwrap(),
            "https://idp.example/token"
        );
        let e = endpoint("http://login.example.com", Some("t"), None, s.version()).unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        let e = endpoint(
            AUTHORITY_PUBLIC,
            None,
            Some("http://10.0.0.1/token"),
            s.version(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        assert!(endpoint(AUTHORITY_PUBLIC, Some("common"), None, s.version()).is_err());
    }
}
