//! `certassert demo`: the whole flow on this machine, nothing to set up: a key, a
//! self-signed certificate, the emulator started in-process with that certificate
//! registered, a token obtained (then again from the cache), its claims and the timings.

use super::{print, Result};
use certassert::cert::create_self_signed;
use certassert::emulator::{self, App, Config};
use certassert::encoding::{b64url_decode, hex, random, rfc3339, unix_now, uuid_v4};
use certassert::entra::{Cache, Client, Credential, Grant, HttpOptions, Target, TokenRequest};
use certassert::keyref::KeyRef;
use certassert::{signer, Algorithm};
use std::fmt::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// The demo's key, in `dir` (removed afterwards), and a description of where it lives.
/// The one place that decides the key source.
fn demo_key(dir: &Path) -> Result<(KeyRef, String)> {
    #[cfg(feature = "pkcs11")]
    if let Some(module) = SOFTHSM2.iter().map(Path::new).find(|p| p.is_file()) {
        match softhsm_key(dir, module) {
            Ok(found) => return Ok(found),
            Err(e) => eprintln!(
                "note: the throwaway SoftHSM2 token failed ({e}); using a software key instead"
            ),
        }
    }
    let der = signer::generate_software_key(2048)?;
    let path = dir.join("demo.key.pem");
    let pem = zeroize::Zeroizing::new(certassert::public_key::pem::encode("PRIVATE KEY", &der));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut f, pem.as_bytes())?;
    let description = format!("software RSA-2048 key file {}", path.display());
    Ok((
        KeyRef::File {
            path,
            password: None,
        },
        description,
    ))
}

#[cfg(feature = "pkcs11")]
const SOFTHSM2: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
];

/// A throwaway SoftHSM2 token in `dir` (configuration, token files, a random PIN in a
/// 0600 file) with an RSA-2048 key generated inside it, as on an HSM.
#[cfg(feature = "pkcs11")]
fn softhsm_key(dir: &Path, module: &Path) -> Result<(KeyRef, String)> {
    use certassert::secret::Secret;
    let tokens = dir.join("softhsm-tokens");
    std::fs::DirBuilder::new().mode(0o700).create(&tokens)?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )?;
    // SoftHSM2 reads its configuration when the module initialises, which is below;
    // nothing else runs yet (the emulator starts after the key exists).
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let digits = |n: usize| -> String {
        random::<16>()[..n]
            .iter()
            .map(|b| char::from(b'0' + b % 10))
            .collect()
    };
    let (so_pin, pin) = (Secret::new(digits(8)), Secret::new(digits(8)));
    let pin_path = dir.join("pin");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&pin_path)?;
    std::io::Write::write_all(&mut f, pin.expose().as_bytes())?;
    certassert::signer::pkcs11::init_token(module, "certassert-demo", &so_pin, &pin)?;
    let uri = format!(
        "pkcs11:token=certassert-demo;object=demo-key?module-path={}&pin-source=file:{}",
        module.display(),
        pin_path.display()
    );
    let keyref: KeyRef = uri.parse()?;
    super::generate_key(&keyref, 2048, None)?;
    Ok((
        keyref,
        "RSA-2048 key generated inside a throwaway SoftHSM2 token (pkcs11:token=certassert-demo;object=demo-key; sensitive, non-extractable)".into(),
    ))
}

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        let path =
            std::env::temp_dir().join(format!("certassert-demo-{}", hex(&random::<6>(), false)));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ms(t: Instant) -> String {
    format!("{:8.1} ms", t.elapsed().as_secs_f64() * 1000.0)
}

fn decode_part(part: &str) -> serde_json::Value {
    b64url_decode(part)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn run() -> Result<ExitCode> {
    let dir = TempDir::new()?;
    let mut out = String::from(
        "certassert demo: key -> certificate -> emulator (local Entra token endpoint) -> token\n\n",
    );
    let row = |out: &mut String, step: &str, what: String, time: String| {
        let _ = writeln!(out, "  {step:<12} {time}  {what}");
    };

    let t = Instant::now();
    let (keyref, key_description) = demo_key(&dir.0)?;
    let signer = super::open_key(&keyref)?;
    row(&mut out, "key", key_description, ms(t));

    let t = Instant::now();
    let cert = create_self_signed(
        signer.as_ref(),
        Algorithm::Rs256,
        "CN=certassert-demo",
        30,
        unix_now(),
    )?;
    let cert_path = dir.0.join("demo.cert.pem");
    std::fs::write(&cert_path, cert.to_pem())?;
    row(
        &mut out,
        "certificate",
        format!(
            "{}, thumbprint {} (x5t {})",
            cert.subject(),
            cert.thumbprint_hex(),
            cert.x5t()
        ),
        ms(t),
    );

    let t = Instant::now();
    let client_id = uuid_v4();
    let tenant = uuid_v4();
    let running = emulator::start(Config {
        apps: vec![App {
            client_id: client_id.clone(),
            certificates: vec![cert.clone()],
        }],
        tenant: Some(tenant.clone()),
        roles: vec!["Demo.Read".into()],
        ..Config::default()
    })?;
    row(
        &mut out,
        "emulator",
        format!(
            "{} (tenant {tenant}, app {client_id} with this certificate)",
            running.url()
        ),
        ms(t),
    );

    let request = TokenRequest {
        endpoint: running.token_endpoint(&tenant, false)?,
        client_id: client_id.clone(),
        target: Target::Scopes(vec!["api://certassert-demo/.default".into()]),
        grant: Grant::ClientCredentials,
        claims: None,
    };
    let chain = [cert];
    let credential = Credential {
        signer: signer.as_ref(),
        chain: &chain,
        alg: Algorithm::Rs256,
        x5c: false,
        lifetime: certassert::assertion::DEFAULT_LIFETIME,
    };
    let client = Client::new(
        HttpOptions::default(),
        Some(Cache::open(&dir.0.join("cache"))?),
    );
    let t = Instant::now();
    let first = client.acquire(&credential, &request)?;
    row(
        &mut out,
        "token",
        format!(
            "POST {} with a signed client assertion: {} request(s), token of {} bytes",
            request.endpoint,
            first.attempts,
            first.token.access_token.expose().len()
        ),
        ms(t),
    );
    let t = Instant::now();
    let second = client.acquire(&credential, &request)?;
    row(
        &mut out,
        "cached",
        format!(
            "same token again from the cache: {} (nothing signed, nothing sent)",
            if second.cached
                && second.token.access_token.expose() == first.token.access_token.expose()
            {
                "yes"
            } else {
                "NO"
            }
        ),
        ms(t),
    );

    let token = first.token.access_token.expose();
    let parts: Vec<&str> = token.split('.').collect();
    let verified = parts.len() == 3
        && b64url_decode(parts[2]).is_some_and(|sig| {
            signer::verify(
                running.signing_key_spki(),
                Algorithm::Rs256,
                &token.as_bytes()[..parts[0].len() + 1 + parts[1].len()],
                &sig,
            )
            .is_ok()
        });
    let claims = decode_part(parts.get(1).copied().unwrap_or_default());
    let _ = writeln!(
        out,
        "\naccess token (signature {} with the emulator's key):\n  header {}\n  claims {}",
        if verified {
            "verifies"
        } else {
            "DOES NOT verify"
        },
        decode_part(parts.first().copied().unwrap_or_default()),
        serde_json::to_string_pretty(&claims)?.replace('\n', "\n  ")
    );
    if let Some(exp) = claims["exp"].as_i64() {
        let _ = writeln!(
            out,
            "  expires {} (in {} s)",
            rfc3339(exp),
            exp - unix_now()
        );
    }
    let _ = writeln!(
        out,
        "\nNext: the same against Entra ID —\n  certassert token --key KEY --cert CERT --tenant T --client-id C --scope https://graph.microsoft.com/.default"
    );
    drop(running);
    print(&out)?;
    Ok(if verified && second.cached {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
