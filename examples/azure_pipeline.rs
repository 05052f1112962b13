//! An azure_core pipeline authenticated by certassert's `SignerCredential`: the key stays
//! in its HSM, TPM or file, and every request the pipeline sends carries a bearer token
//! from Entra ID (cached, renewed ahead of expiry). This is what every Rust Azure SDK
//! client builds inside; pass the same credential to `SecretClient::new`, `BlobClient`…
//!
//! ```text
//! cargo run --example azure_pipeline --features azure -- \
//!     --key 'pkcs11:token=app;object=app?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:PIN' \
//!     --cert app.cert.pem --tenant contoso.onmicrosoft.com --client-id 2f877daa-… \
//!     --url 'https://myvault.vault.azure.net/secrets?api-version=7.4' [--scope https://vault.azure.net/.default] \
//!     [--authority-host URL] [--ca-file PEM]
//! ```
//!
//! It prints the answer's status and the first 300 bytes of its body.

use azure_core::credentials::TokenCredential;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{ClientOptions, Context, Method, Pipeline, Request, Url};
use certassert::azure::{CredentialOptions, SignerCredential};
use certassert::cert::Certificate;
use certassert::entra::HttpOptions;
use std::collections::HashMap;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: HashMap<String, String> = HashMap::new();
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        args.insert(flag.trim_start_matches("--").to_string(), value);
    }
    let need = |name: &str| {
        args.get(name).cloned().ok_or_else(|| {
            format!("missing --{name} (see the comment at the top of examples/azure_pipeline.rs)")
        })
    };
    let url = Url::parse(&need("url")?)?;
    let scope = args.get("scope").cloned().unwrap_or_else(|| {
        format!(
            "{}://{}/.default",
            url.scheme(),
            url.host_str().unwrap_or_default()
        )
    });

    // The credential: any Signer (here: whatever --key names) and its certificate.
    let signer =
        certassert::signer::open(&need("key")?.parse()?, &certassert::secret::NoCallbacks)?;
    let chain = match args.get("cert") {
        Some(path) => Certificate::load_chain(path.as_ref())?,
        None => vec![Certificate::from_der(
            signer
                .certificate_der()
                .ok_or("no --cert and no certificate stored with the key")?
                .to_vec(),
        )?],
    };
    let options = CredentialOptions {
        authority_host: args
            .get("authority-host")
            .cloned()
            .unwrap_or_else(|| certassert::entra::AUTHORITY_PUBLIC.into()),
        http: HttpOptions {
            ca_file: args.get("ca-file").map(Into::into),
            ..HttpOptions::default()
        },
        ..CredentialOptions::default()
    };
    let credential: Arc<dyn TokenCredential> = SignerCredential::new(
        signer.into(),
        chain,
        &need("tenant")?,
        &need("client-id")?,
        options,
    )?;

    // The pipeline: the SDK's bearer-token policy asks the credential for each request.
    let auth = BearerTokenAuthorizationPolicy::new(credential, [scope.as_str()]);
    let pipeline = Pipeline::new(
        Some("certassert-example"),
        Some(env!("CARGO_PKG_VERSION")),
        ClientOptions::default(),
        Vec::new(),
        vec![Arc::new(auth)],
        None,
    );
    let mut request = Request::new(url, Method::Get);
    let started = std::time::Instant::now();
    let answer = pipeline.send(&Context::new(), &mut request, None).await?;
    let status = answer.status();
    let body = answer.into_body();
    let text = String::from_utf8_lossy(&body);
    println!("{status} in {:?}", started.elapsed());
    println!("{}", text.chars().take(300).collect::<String>());
    Ok(())
}
