//! Criterion benchmarks: one complete client assertion (header, claims, signature) with
//! a 2048-bit software key, RS256 and PS256. Run with `cargo bench --bench assertion`.

use certassert::assertion::{self, Params};
use certassert::cert::{self, Certificate};
use certassert::encoding::unix_now;
use certassert::entra::{self, EndpointVersion};
use certassert::signer::{generate_software_key, SoftwareSigner};
use certassert::Algorithm;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;

fn bench_assertions(c: &mut Criterion) {
    let pkcs8 = generate_software_key(2048).expect("generate a 2048-bit key");
    let signer = SoftwareSigner::from_pkcs8_der(&pkcs8).expect("load the generated key");
    let now = unix_now();
    let certificate: Certificate =
        cert::create_self_signed(&signer, Algorithm::Rs256, "CN=certassert-bench", 30, now)
            .expect("self-signed certificate");
    let chain = [certificate];
    let audience = entra::endpoint(
        entra::AUTHORITY_PUBLIC,
        Some("contoso.onmicrosoft.com"),
        None,
        EndpointVersion::V2,
    )
    .expect("token endpoint");

    for (name, alg) in [
        ("assertion_rs256_2048", Algorithm::Rs256),
        ("assertion_ps256_2048", Algorithm::Ps256),
    ] {
        let params = Params {
            client_id: "11111111-2222-3333-4444-555555555555",
            audience: &audience,
            alg,
            lifetime: assertion::DEFAULT_LIFETIME,
            x5c: false,
        };
        c.bench_function(name, |b| {
            b.iter(|| {
                assertion::build(&signer, &chain, black_box(&params), now).expect("assertion")
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = bench_assertions
}
criterion_main!(benches);
