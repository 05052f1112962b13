//! `certassert key generate`, `key list` and `key show`.

use super::flags::Format;
use super::{write_new, KeyArg, KeyError, Result};
use certassert::cert::Certificate;
use certassert::encoding::{hex, rfc3339};
use certassert::keyref::KeyRef;
use certassert::signer::list::{self, Device, Place};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Generate an RSA key pair where --key says (a key file is written 0600 and never overwritten)
    #[command(
        after_help = "Examples:\n  certassert key generate --key app.key.pem\n  certassert key generate --key app.key.pem --bits 3072"
    )]
    Generate(GenerateArgs),
    /// List the keys of a PKCS#11 module's tokens or a TPM, each as a reference to paste
    #[command(after_help = "\
Examples:
  certassert key list --module /usr/lib/softhsm/libsofthsm2.so
  certassert key list \\
      --key 'pkcs11:token=HSM?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:PIN'
  certassert key list --key tpm: --format json

Without a PIN, a token shows the public keys and certificates that stand for its private
keys; a --key naming the token with pin-source= logs in (once) and lists its private keys.
The JSON is {\"devices\":[{\"name\",\"note\",\"keys\":[{\"reference\",\"label\",\"algorithm\",
\"bits\",\"private_key\",\"unusable\",\"certificate\":{\"subject\",\"not_after\",\"thumbprint\",\"x5t\",
\"x5t#S256\"}}]}]}; unusable says why a key cannot sign assertions, else null.")]
    List(ListArgs),
    /// Show a key's public half and the certificate stored with it
    #[command(after_help = "\
Examples:
  certassert key show --key app.key.pem
  certassert key show --key 'pkcs11:token=HSM;object=app?pin-source=file:/run/pin' --format json
  certassert key show --key tpm:handle=0x81000001

The JSON is {\"reference\",\"algorithm\",\"bits\",\"public_key_sha256\",\"public_key_pem\",
\"certificate\":{\"subject\",\"not_after\",\"thumbprint\",\"x5t\",\"x5t#S256\"}} (certificate null
when the key has none stored with it).")]
    Show(ShowArgs),
}

#[derive(Args)]
pub struct ListArgs {
    /// A PKCS#11 module: list every token it shows
    #[arg(long, value_name = "PATH", conflicts_with = "key")]
    module: Option<PathBuf>,
    /// A pkcs11:/piv: reference (its module's tokens; with pin-source= its token logged in)
    /// or a tpm: reference (that TPM's persistent keys; `tpm:` alone is the default TPM)
    #[arg(long, value_name = "URI")]
    key: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    key: KeyArg,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    key: KeyArg,
    /// RSA modulus size; Entra ID requires at least 2048
    #[arg(long, default_value_t = 2048, value_parser = parse_bits)]
    bits: usize,
    /// Object label for keys made in a token (pkcs11:, tpm:); not used for key files
    #[arg(long)]
    label: Option<String>,
}

fn parse_bits(s: &str) -> std::result::Result<usize, String> {
    match s {
        "2048" | "3072" | "4096" => Ok(s.parse().expect("a listed number")),
        _ => Err(format!(
            "{s}: choose 2048, 3072 or 4096 (Entra ID requires at least 2048)"
        )),
    }
}

pub fn run(cmd: KeyCommand) -> Result<ExitCode> {
    match cmd {
        KeyCommand::Generate(args) => generate(&args),
        KeyCommand::List(args) => list_keys(&args),
        KeyCommand::Show(args) => show(&args),
    }
}

fn generate(args: &GenerateArgs) -> Result<ExitCode> {
    let profile = args.key.profile()?;
    let keyref = args.key.keyref(profile.as_ref())?;
    let path = match &keyref {
        KeyRef::File {
            path,
            password: None,
        } => path.clone(),
        KeyRef::File {
            password: Some(_), ..
        } => {
            return Err(
                "key generate writes an unencrypted PKCS#8 file protected by its mode (0600); \
                        drop the ?password-… part, or keep the key in hardware (pkcs11:, tpm:)"
                    .into(),
            )
        }
        other => {
            let signer = super::generate_key(other, args.bits, args.label.as_deref())?;
            let spki = signer.public_key_der();
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
            eprintln!(
                "made a {}-bit RSA key in {} (public key SHA-256 {})\nnext: certassert cert create {} --subject CN=my-app --out app.cert.pem",
                args.bits,
                other.backend(),
                certassert::encoding::hex(digest.as_ref(), false),
                match (&args.key.key, &profile) {
                    (Some(key), _) => format!("--key '{key}'"),
                    (None, Some(p)) if super::env("CERTASSERT_KEY").is_none() => format!("--profile '{}'", p.name),
                    _ => "--key \"$CERTASSERT_KEY\"".to_string(),
                },
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    if args.label.is_some() {
        super::warn("--label names objects in a token; a key file has no label, so it is ignored");
    }
    let pkcs8 = certassert::signer::generate_software_key(args.bits).map_err(KeyError::from)?;
    let pem = zeroize::Zeroizing::new(certassert::public_key::pem::encode("PRIVATE KEY", &pkcs8));
    write_new(&path, pem.as_bytes(), 0o600, None)?;
    eprintln!(
        "wrote a {}-bit RSA key to {} (PKCS#8, mode 0600)\nnext: certassert cert create --key {} --subject CN=my-app --out app.cert.pem",
        args.bits,
        path.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn certificate_json(cert: &Certificate) -> Value {
    json!({
        "subject": cert.subject(),
        "not_after": rfc3339(cert.not_after()),
        "thumbprint": cert.thumbprint_hex(),
        "x5t": cert.x5t(),
        "x5t#S256": cert.x5t_s256(),
    })
}

fn list_keys(args: &ListArgs) -> Result<ExitCode> {
    let place = match (&args.module, &args.key) {
        (Some(module), _) => Place::Module(module.clone()),
        (None, Some(key)) => {
            // `tpm:` (or `tpm:?tcti=…`) names a TPM without a key: any handle parses it.
            let keyref: KeyRef = match key.strip_prefix("tpm:") {
                Some(rest) if rest.is_empty() || rest.starts_with('?') => {
                    format!("tpm:handle=0x81000000{rest}").parse()?
                }
                _ => key.parse()?,
            };
            for w in keyref.warnings() {
                super::warn(&w);
            }
            Place::Reference(Box::new(keyref))
        }
        (None, None) => {
            return Err("say where to look: --module /path/to/pkcs11-module.so, or --key with a pkcs11: or tpm: reference (tpm: alone is the default TPM)".into())
        }
    };
    let devices = list::list(&place, &super::prompt::TerminalPrompt).map_err(KeyError::from)?;
    match args.format {
        Format::Json => {
            let devices: Vec<Value> = devices.iter().map(device_json).collect();
            let text = serde_json::to_string_pretty(&json!({ "devices": devices }))?;
            super::print(&format!("{text}\n"))?;
        }
        Format::Text => super::print(&devices_text(&devices))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn device_json(device: &Device) -> Value {
    let keys: Vec<Value> = device
        .keys
        .iter()
        .map(|k| {
            json!({
                "reference": k.reference,
                "label": k.label,
                "algorithm": k.algorithm,
                "bits": k.bits,
                "private_key": k.private_key,
                "unusable": k.unusable,
                "certificate": k.certificate.as_ref().map(certificate_json),
            })
        })
        .collect();
    json!({ "name": device.name, "note": device.note, "keys": keys })
}

fn devices_text(devices: &[Device]) -> String {
    if devices.is_empty() {
        return "no initialised token (SoftHSM2: softhsm2-util --init-token --free --label NAME; a card: is it inserted?)\n".into();
    }
    let mut out = String::new();
    for device in devices {
        out.push_str(&format!("{}\n", device.name));
        if device.keys.is_empty() {
            out.push_str("  no keys\n");
        }
        for key in &device.keys {
            let size = key.bits.map(|b| format!(" {b}")).unwrap_or_default();
            let shown = if key.private_key {
                ""
            } else {
                ", private key not shown"
            };
            let unusable = key
                .unusable
                .as_ref()
                .map(|why| format!(" — cannot sign assertions: {why}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  '{}'\n    {}{size}{shown}{unusable}\n",
                key.reference, key.algorithm
            ));
            if let Some(cert) = &key.certificate {
                out.push_str(&format!(
                    "    certificate {} until {}, thumbprint {}\n",
                    cert.subject(),
                    rfc3339(cert.not_after()),
                    cert.thumbprint_hex()
                ));
            }
        }
        if let Some(note) = &device.note {
            out.push_str(&format!("  note: {note}\n"));
        }
    }
    out
}

fn show(args: &ShowArgs) -> Result<ExitCode> {
    let profile = args.key.profile()?;
    let keyref = args.key.keyref(profile.as_ref())?;
    let signer = args.key.open_ref(&keyref)?;
    let spki = signer.public_key_der();
    let public = certassert::public_key::RsaPublicKey::from_spki_der(spki).ok();
    let bits = public.as_ref().map(|k| k.bits());
    let sha256 = hex(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki).as_ref(),
        false,
    );
    let pem = certassert::public_key::pem::encode("PUBLIC KEY", spki);
    let certificate = signer
        .certificate_der()
        .map(|der| Certificate::from_der(der.to_vec()))
        .transpose()?;
    match args.format {
        Format::Json => {
            let v = json!({
                "reference": keyref.to_string(),
                "algorithm": if public.is_some() { "RSA" } else { "?" },
                "bits": bits,
                "public_key_sha256": sha256,
                "public_key_pem": pem,
                "certificate": certificate.as_ref().map(certificate_json),
            });
            super::print(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
        }
        Format::Text => {
            let mut out = format!(
                "{}\n  RSA {}, public key SHA-256 {sha256}\n",
                keyref,
                bits.map_or_else(|| "?".into(), |b| b.to_string())
            );
            match &certificate {
                Some(cert) => out.push_str(&format!(
                    "  certificate {} until {}\n    thumbprint {} (as the portal shows it)\n    x5t        {}\n    x5t#S256   {}\n",
                    cert.subject(),
                    rfc3339(cert.not_after()),
                    cert.thumbprint_hex(),
                    cert.x5t(),
                    cert.x5t_s256()
                )),
                None => out.push_str("  no certificate stored with the key (give one with --cert where it is used)\n"),
            }
            out.push_str(&pem);
            super::print(&out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
