//! `certassert cert create|csr|show|manifest`, and the CLI's wording of certificate and
//! key-file errors: the library names no flag, so the flag that fixes a mistake
//! (`--subject`, `--days`, `--key`, `--cert`) is added here, chosen by the error variant.

use super::{print, write_new, KeyArg, Result};
use certassert::cert::{self, Certificate};
use certassert::config::Profile;
use certassert::encoding::{rfc3339, unix_now};
use certassert::keyref::KeyRef;
use certassert::public_key::pem;
use certassert::Algorithm;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum CertCommand {
    /// Create a self-signed certificate for the key (signed inside the key's backend)
    #[command(
        after_help = "Examples:\n  certassert cert create --key app.key.pem --subject \"CN=my-app,O=Contoso\" --out app.cert.pem\n  certassert cert create --key app.key.pem --subject CN=my-app --days 730 --alg PS256 \\\n      --out app.cert.pem\n\nUpload the certificate (not the key) under App registrations > Certificates & secrets,\nor print a manifest entry with: certassert cert manifest --cert app.cert.pem"
    )]
    Create(CreateArgs),
    /// Create a PKCS#10 certificate signing request for the key, to have a CA sign it
    #[command(
        after_help = "Example:\n  certassert cert csr --key app.key.pem --subject CN=my-app --out app.csr"
    )]
    Csr(CsrArgs),
    /// Show a certificate: the portal's hex thumbprint, x5t, x5t#S256, validity, key usage
    #[command(
        after_help = "Examples:\n  certassert cert show --cert app.cert.pem\n  certassert cert show --key 'file:app.pfx?password-source=env:PFX_PASS'\n  certassert cert show --key app.key.pem --cert app.cert.pem     # also checks they belong together\n\n--format json prints {\"subject\",\"issuer\",\"serial\",\"not_before\",\"not_after\",\"valid\",\"key\",\n\"key_usage\",\"ca\",\"thumbprint_sha1\",\"x5t\",\"x5t#S256\",\"key_matches\",\"chain_length\"}."
    )]
    Show(ShowArgs),
    /// Print the keyCredentials entry that registers the certificate in an app manifest / Microsoft Graph
    #[command(
        after_help = "Examples:\n  certassert cert manifest --cert app.cert.pem --display-name \"my-app 2026\"\n  certassert cert manifest --cert app.cert.pem --graph     # for Microsoft Graph's keyCredentials"
    )]
    Manifest(ManifestArgs),
    /// Register a new key's certificate on the app through Microsoft Graph, signed off by the current one
    Rotate(Box<super::rotate::RotateArgs>),
    /// Remove a certificate credential from the app through Microsoft Graph
    Retire(Box<super::rotate::RetireArgs>),
}

/// What `cert create` and `cert csr` share: the key that signs, the subject, the output.
#[derive(Args)]
pub struct SignedPemArgs {
    #[command(flatten)]
    key: KeyArg,
    /// Subject, e.g. "CN=my-app,O=Contoso" (RFC 4514) or "/O=Contoso/CN=my-app"
    #[arg(long)]
    subject: String,
    /// Write the PEM here (never overwrites without --force); default: stdout
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Signature algorithm of the certificate or request itself
    #[arg(long, default_value = "RS256", value_parser = parse_alg)]
    alg: Algorithm,
    /// Replace an existing --out file
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    common: SignedPemArgs,
    /// Days of validity from now
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Store the certificate on the token beside its key (pkcs11:, piv:); prints the PEM only with --out
    #[arg(long)]
    store: bool,
}

#[derive(Args)]
pub struct CsrArgs {
    #[command(flatten)]
    common: SignedPemArgs,
}

#[derive(Args)]
pub struct ShowArgs {
    /// Certificate file (PEM or DER, at most 1 MiB) [env: CERTASSERT_CERT, else the profile's cert]
    #[arg(long, value_name = "PATH")]
    cert: Option<PathBuf>,
    #[command(flatten)]
    key: KeyArg,
    #[command(flatten)]
    format: super::flags::FormatArg,
}

#[derive(Args)]
pub struct ManifestArgs {
    /// Certificate file (PEM or DER, at most 1 MiB) [env: CERTASSERT_CERT]
    #[arg(long, value_name = "PATH")]
    cert: Option<PathBuf>,
    /// displayName of the credential (default: the certificate's subject)
    #[arg(long)]
    display_name: Option<String>,
    /// Print Microsoft Graph's keyCredential (startDateTime, endDateTime, key), for
    /// PATCH /applications/{id}, instead of the app manifest's entry (startDate, endDate, value)
    #[arg(long)]
    graph: bool,
}

/// An error whose message the CLI reworded to name the flag that fixes it.
#[derive(Debug)]
struct Hinted<E> {
    message: String,
    error: E,
}

impl<E> std::fmt::Display for Hinted<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> std::error::Error for Hinted<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The error's own causes; its text is in `message` already.
        self.error.source()
    }
}

/// A certificate error as the CLI says it: with the flag that fixes it, where one does.
pub fn cert_error(e: cert::Error) -> Box<dyn std::error::Error> {
    let message = match &e {
        cert::Error::Subject { subject, reason } => format!("--subject \"{subject}\": {reason}"),
        cert::Error::Days(days) => format!("--days {days}: choose between 1 and 36500"),
        cert::Error::NoCertificate {
            instead: cert::Instead::PrivateKey,
            ..
        } => format!("{e}; pass it with --key"),
        cert::Error::KeyMismatch { .. } => {
            format!("{e} (certassert cert show --key KEY prints the certificate stored with a key)")
        }
        _ => return Box::new(e),
    };
    Box::new(Hinted { message, error: e })
}

pub fn parse_alg(s: &str) -> std::result::Result<Algorithm, String> {
    s.parse()
}

pub fn run(cmd: CertCommand) -> Result<ExitCode> {
    match cmd {
        CertCommand::Create(args) => create(&args),
        CertCommand::Csr(args) => csr(&args),
        CertCommand::Show(args) => show(&args),
        CertCommand::Manifest(args) => manifest(&args),
        CertCommand::Rotate(args) => super::rotate::rotate(&args),
        CertCommand::Retire(args) => super::rotate::retire(&args),
    }
}

fn create(args: &CreateArgs) -> Result<ExitCode> {
    let common = &args.common;
    let profile = common.key.profile()?;
    let keyref = common.key.keyref(profile.as_ref())?;
    let signer = common.key.open_ref(&keyref)?;
    if args.store && !matches!(keyref, KeyRef::Pkcs11(_)) {
        return Err("--store writes the certificate into the token beside its key (pkcs11:, piv:); for a key file or a TPM key, use --out".into());
    }
    let cert = cert::create_self_signed(
        signer.as_ref(),
        common.alg,
        &common.subject,
        args.days,
        unix_now(),
    )
    .map_err(cert_error)?;
    if args.store {
        signer.store_certificate(cert.der())?;
        eprintln!("stored the certificate on the token beside its key (same CKA_ID); later commands find it without --cert");
    }
    if !args.store || common.out.is_some() {
        emit(common.out.as_ref(), cert.to_pem().as_bytes(), common.force)?;
    }
    eprintln!(
        "created {} valid until {}\n  thumbprint {} (as the portal shows it)\n  x5t        {}\nnext: upload {} under App registrations > Certificates & secrets, or: certassert cert manifest --cert …",
        cert.subject(),
        rfc3339(cert.not_after()),
        cert.thumbprint_hex(),
        cert.x5t(),
        common.out.as_ref().map_or("the certificate".to_string(), |p| p.display().to_string()),
    );
    Ok(ExitCode::SUCCESS)
}

fn csr(args: &CsrArgs) -> Result<ExitCode> {
    let profile = args.common.key.profile()?;
    let signer = args.common.key.open(profile.as_ref())?;
    let der = cert::create_csr(signer.as_ref(), args.common.alg, &args.common.subject)
        .map_err(cert_error)?;
    emit(
        args.common.out.as_ref(),
        pem::encode("CERTIFICATE REQUEST", &der).as_bytes(),
        args.common.force,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn emit(out: Option<&PathBuf>, pem: &[u8], force: bool) -> Result<()> {
    match out {
        Some(path) => write_new(path, pem, 0o644, Some(force)),
        None => Ok(print(std::str::from_utf8(pem).expect("PEM is ASCII"))?),
    }
}

fn load_cert(path: Option<&PathBuf>, profile: Option<&Profile>) -> Result<Vec<Certificate>> {
    match super::cert_path(path, profile) {
        Some(p) => Ok(Certificate::load_chain(&p).map_err(cert_error)?),
        None => Err("no certificate: pass --cert PATH (or set CERTASSERT_CERT)".into()),
    }
}

fn show(args: &ShowArgs) -> Result<ExitCode> {
    let now = unix_now();
    let profile = args.key.profile()?;
    let profile = profile.as_ref();
    let have_key = args.key.key.is_some()
        || super::env("CERTASSERT_KEY").is_some()
        || profile.is_some_and(|p| p.key.is_some());
    let (chain, paired) = if have_key {
        let signer = args.key.open(profile)?;
        // As for `assertion`: an explicit certificate wins over the one stored with the key.
        let explicit = super::cert_path(args.cert.as_ref(), profile).is_some();
        let chain = match super::stored_chain(signer.as_ref())? {
            Some(stored) if !explicit => stored,
            None if !explicit => {
                return Err("no certificate is stored with this key; pass --cert PATH".into())
            }
            _ => load_cert(args.cert.as_ref(), profile)?,
        };
        chain[0].check_key(signer.as_ref()).map_err(cert_error)?;
        (chain, true)
    } else {
        (load_cert(args.cert.as_ref(), profile)?, false)
    };
    let c = &chain[0];
    let validity = match c.check_validity(now) {
        Ok(()) => format!("valid, {} days left", (c.not_after() - now) / 86_400),
        Err(e) => e.to_string(),
    };
    let key_usage = c
        .key_usage()
        .map_or_else(|| "(no extension: any)".to_string(), |ku| ku.join(", "));
    let key = c.rsa_bits().map_or_else(
        || "not RSA — Entra ID accepts RSA only".to_string(),
        |b| format!("RSA {b}"),
    );
    if args.format.get() == super::flags::Format::Json {
        let v = serde_json::json!({
            "subject": c.subject(), "issuer": c.issuer(), "serial": c.serial_hex(),
            "not_before": rfc3339(c.not_before()), "not_after": rfc3339(c.not_after()),
            "valid": c.check_validity(now).is_ok(), "key": key, "key_usage": c.key_usage(),
            "ca": c.is_ca(), "thumbprint_sha1": c.thumbprint_hex(), "x5t": c.x5t(), "x5t#S256": c.x5t_s256(),
            "key_matches": if paired { Some(true) } else { None }, "chain_length": chain.len(),
        });
        print(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let issuer = if c.is_self_issued() {
        format!("{} (self-signed)", c.issuer())
    } else {
        c.issuer()
    };
    let mut text = format!(
        "subject     {}\nissuer      {issuer}\nserial      {}\nnot before  {}\nnot after   {}  ({validity})\nkey         {key}{}\nkey usage   {key_usage}{}\n\
         thumbprint  {}   hex SHA-1, as the Azure portal shows it\nx5t         {}   JWT header for RS256 (base64url of the SHA-1 bytes)\nx5t#S256    {}   JWT header for PS256\n",
        c.subject(),
        c.serial_hex(),
        rfc3339(c.not_before()),
        rfc3339(c.not_after()),
        if paired { "  (matches the key)" } else { "" },
        if c.is_ca() { "\nbasic       CA:true (a CA certificate; Entra expects the app's own certificate)" } else { "" },
        c.thumbprint_hex(),
        c.x5t(),
        c.x5t_s256(),
    );
    if chain.len() > 1 {
        text.push_str(&format!(
            "chain       {} more certificate(s) after the leaf\n",
            chain.len() - 1
        ));
    }
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn manifest(args: &ManifestArgs) -> Result<ExitCode> {
    let chain = load_cert(args.cert.as_ref(), None)?;
    let entry = if args.graph {
        chain[0].graph_key_credential(args.display_name.as_deref())
    } else {
        chain[0].manifest_entry(args.display_name.as_deref())
    };
    if let Err(e) = chain[0].check_validity(unix_now()) {
        super::warn(&e.to_string());
    }
    print(&format!("{}\n", serde_json::to_string_pretty(&entry)?))?;
    Ok(ExitCode::SUCCESS)
}
