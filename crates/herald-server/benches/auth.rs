//! Micro-benchmark: authenticating a send with a JWT the verifier has already verified
//! (the cache hit every request after the first pays). The verifier is the one a real
//! node builds: a node is prepared on a temporary data directory and its bootstrap key
//! signs the JWT.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use herald_client::sender::{JwtSigner, load_key_file};
use herald_server::{Config, Herald};

fn cache_hit(c: &mut Criterion) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (state, header, project) = runtime.block_on(async {
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .expect("a port");
        let herald = Herald::prepare_with_system_clock(listener, config)
            .await
            .expect("a node");
        let info = herald.bootstrap_info().expect("bootstrapped").clone();
        let key = load_key_file(&info.service_account_file).expect("the key file");
        let jwt = JwtSigner::new(&key)
            .expect("a signer")
            .token()
            .expect("a JWT");
        (herald.state(), format!("Bearer {jwt}"), info.project_id)
    });
    // The first call verifies the signature and fills the cache.
    runtime
        .block_on(state.jwt.authenticate(Some(&header), &project))
        .expect("the bootstrap key's JWT is valid");
    c.bench_function("jwt cache hit", |b| {
        b.iter(|| runtime.block_on(state.jwt.authenticate(black_box(Some(&header)), &project)))
    });
}

criterion_group!(benches, cache_hit);
criterion_main!(benches);
