//! The client-side subcommands of the `herald` binary: a simulated device, a sender, the
//! admin tool, the benchmark and the development certificates.

pub mod admin;
pub mod bench;
pub mod cert;
pub mod device;
pub mod revoke;
pub mod send;

/// `--ca-file`: the private CA to trust, read once.
pub fn load_ca(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<herald_client::tls::CaFile>> {
    Ok(path.map(herald_client::tls::CaFile::load).transpose()?)
}
