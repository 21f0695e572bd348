//! `herald cert create`: a local certificate authority and a server certificate signed by
//! it, for serving Herald over HTTPS during development (rcgen, ECDSA P-256).
//!
//! The CA's private key is never written: it signs the server certificate and is dropped,
//! so trusting `ca.pem` trusts nothing but this one server certificate. Run the command
//! again (with `--force`) for a new set.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// The CA certificate's file name in `--out`.
pub const CA_FILE: &str = "ca.pem";
/// The server certificate's file name in `--out`.
pub const SERVER_CERT_FILE: &str = "server.pem";
/// The server key's file name in `--out` (mode 0600).
pub const SERVER_KEY_FILE: &str = "server-key.pem";
/// The names a certificate gets when no `--host` is given.
pub const DEFAULT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// The CA is valid this long.
const CA_DAYS: i64 = 3650;
/// The server certificate is valid this long (Apple's limit for TLS server certificates).
const SERVER_DAYS: i64 = 397;

/// Arguments of `herald cert`.
#[derive(Debug, clap::Args)]
pub struct CertArgs {
    #[command(subcommand)]
    pub command: CertCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CertCommand {
    /// Make a local CA (`ca.pem`) and a server certificate (`server.pem`,
    /// `server-key.pem`) for the given host names and IP addresses.
    Create(CreateArgs),
}

/// Arguments of `herald cert create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// A DNS name or IP address the server is reached at (repeat, or list several after
    /// one flag). Without any: localhost, 127.0.0.1 and ::1.
    #[arg(long = "host", value_name = "NAME", num_args = 1..)]
    pub hosts: Vec<String>,
    /// Where to write ca.pem, server.pem and server-key.pem.
    #[arg(long, value_name = "DIR", default_value = "./herald-certs")]
    pub out: PathBuf,
    /// Replace the files of an earlier run (clients trusting the old CA must trust the new one).
    #[arg(long)]
    pub force: bool,
}

/// The three PEM files of a run.
#[derive(Debug)]
pub struct DevCertificates {
    pub ca_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
}

pub async fn run(args: CertArgs) -> anyhow::Result<ExitCode> {
    let CertCommand::Create(args) = args.command;
    let hosts = if args.hosts.is_empty() {
        DEFAULT_HOSTS.iter().map(|h| h.to_string()).collect()
    } else {
        args.hosts.clone()
    };
    let files = [CA_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE].map(|f| args.out.join(f));
    if !args.force
        && let Some(existing) = files.iter().find(|f| f.exists())
    {
        bail!(
            "{} exists; pass --force to replace the set (and trust the new ca.pem)",
            existing.display()
        );
    }
    let certs = create(&hosts, jiff::Timestamp::now())?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_file(&files[0], &certs.ca_pem, 0o644)?;
    write_file(&files[1], &certs.server_pem, 0o644)?;
    write_file(&files[2], &certs.server_key_pem, 0o600)?;
    print!("{}", instructions(&args.out, &hosts));
    Ok(ExitCode::SUCCESS)
}

/// A CA and a server certificate for `hosts` (DNS names or IP addresses), valid from a
/// day before `now`.
pub fn create(hosts: &[String], now: jiff::Timestamp) -> anyhow::Result<DevCertificates> {
    let sans = hosts
        .iter()
        .map(|h| subject_alt_name(h))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name(&format!("Herald development CA ({})", hosts[0]));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut ca, now, CA_DAYS)?;
    let ca_cert = ca.self_signed(&ca_key).context("signing the CA")?;
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate().context("generating the server key")?;
    let mut server = CertificateParams::default();
    server.distinguished_name = name(&hosts[0]);
    server.subject_alt_names = sans;
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Strict verifiers (Python 3.13's VERIFY_X509_STRICT) want the authority key id.
    server.use_authority_key_identifier_extension = true;
    set_validity(&mut server, now, SERVER_DAYS)?;
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .context("signing the server certificate")?;

    Ok(DevCertificates {
        ca_pem: ca_cert.pem(),
        server_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    })
}

fn subject_alt_name(host: &str) -> anyhow::Result<SanType> {
    let host = host.trim();
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let valid = !name.is_empty() && host.len() <= 253 && name.split('.').all(is_dns_label);
    if !valid {
        bail!("--host {host:?} is neither a DNS name nor an IP address");
    }
    Ok(SanType::DnsName(host.to_owned().try_into()?))
}

/// 1 to 63 letters, digits and hyphens, not starting or ending with a hyphen.
fn is_dns_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Herald development");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Valid from a day before `now` (clocks differ a little) for `days`.
fn set_validity(
    params: &mut CertificateParams,
    now: jiff::Timestamp,
    days: i64,
) -> anyhow::Result<()> {
    let ymd = |t: jiff::Timestamp| {
        let d = jiff::tz::TimeZone::UTC.to_datetime(t).date();
        rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    let day = jiff::SignedDuration::from_hours(24);
    params.not_before = ymd(now.checked_sub(day)?);
    params.not_after = ymd(now.checked_add(jiff::SignedDuration::from_hours(24 * days))?);
    Ok(())
}

/// Writes `text` to `path` with `mode` (set before any byte is written).
fn write_file(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(mode);
        // An existing file keeps its mode on open; set it explicitly.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("setting the mode of {}", path.display()))?;
        }
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// What to do with the files: serve with them, and trust the CA in each client.
fn instructions(out: &Path, hosts: &[String]) -> String {
    let dir = out.display();
    let ca = out.join(CA_FILE);
    let ca = ca.display();
    format!(
        "\
Wrote {dir}/{CA_FILE} (the CA), {dir}/{SERVER_CERT_FILE} and {dir}/{SERVER_KEY_FILE} (mode 0600)
for: {hosts}. The CA's private key was not kept: it signed this certificate only.

Serve over HTTPS:
  herald serve --tls-cert {dir}/{SERVER_CERT_FILE} --tls-key {dir}/{SERVER_KEY_FILE}

Trust the CA in the clients:
  herald send|revoke|admin|device:  --ca-file {ca}   (or HERALD_CA_FILE={ca})
  system store (Debian/Ubuntu):     sudo cp {ca} /usr/local/share/ca-certificates/herald-dev-ca.crt && sudo update-ca-certificates
  Java (keytool):                   keytool -importcert -noprompt -alias herald-dev-ca -file {ca} -keystore herald-truststore.p12 -storepass changeit
                                    then run java with -Djavax.net.ssl.trustStore=herald-truststore.p12 -Djavax.net.ssl.trustStorePassword=changeit
                                    (or import into $JAVA_HOME/lib/security/cacerts with -cacerts)
  Python (ssl, urllib):             SSL_CERT_FILE={ca}
  Python requests:                  REQUESTS_CA_BUNDLE={ca}   (or requests.post(..., verify=\"{ca}\"))
  Node.js:                          NODE_EXTRA_CA_CERTS={ca}
  curl:                             curl --cacert {ca} …
",
        hosts = hosts.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_become_dns_names_and_ip_addresses() {
        assert!(matches!(
            subject_alt_name("push.example.test").unwrap(),
            SanType::DnsName(_)
        ));
        assert!(matches!(
            subject_alt_name("127.0.0.1").unwrap(),
            SanType::IpAddress(_)
        ));
        assert!(matches!(
            subject_alt_name("[::1]").unwrap(),
            SanType::IpAddress(_)
        ));
        assert!(matches!(
            subject_alt_name("*.example.test").unwrap(),
            SanType::DnsName(_)
        ));
        for bad in ["", "a b", "-x.test", "x..test", "exa_mple.test"] {
            assert!(subject_alt_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_set_is_three_pem_files() {
        let hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let c = create(&hosts, jiff::Timestamp::now()).unwrap();
        assert!(c.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(c.server_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(c.server_key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_ne!(c.ca_pem, c.server_pem);
    }
}
