//! The client-side subcommands of the `herald` binary: a simulated device, a sender, the
//! admin tool and the development certificates (the load generator is its own binary,
//! `herald-bench`).

pub mod admin;
pub mod cert;
pub mod device;
pub mod migrate;
pub mod revoke;
pub mod send;

/// `--ca-file`: the private CA to trust, read once.
pub fn load_ca(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<herald_client::tls::CaFile>> {
    Ok(path.map(herald_client::tls::CaFile::load).transpose()?)
}
