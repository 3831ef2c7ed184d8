//! Certificates made by `openssl` for a test (a CA, a server certificate it signs for
//! `localhost`, a client certificate, and a second CA that signed nothing of the broker's), and
//! a Mosquitto with a plain listener beside a TLS one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The files of one test's small PKI.
#[derive(Debug)]
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    /// Make one, or `None` when `openssl` is missing (see `super::require`).
    pub fn make() -> Option<Self> {
        if !super::require("openssl", "apt-get install -y openssl") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        self_signed_ca(&p("ca"), "iot2mqtt test CA");
        self_signed_ca(&p("other-ca"), "a CA nobody asked for");
        signed(dir.path(), "ca", "server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1");
        signed(dir.path(), "ca", "client", "iot2mqtt-host", "extendedKeyUsage=clientAuth");
        // Mosquitto started as root reads its files as the user `mosquitto`.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::set_permissions(entry.unwrap().path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        Some(Self {
            ca: p("ca.pem"),
            other_ca: p("other-ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
            _dir: dir,
        })
    }
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

fn self_signed_ca(stem: &Path, name: &str) {
    let dir = stem.parent().unwrap();
    let stem = stem.file_name().unwrap().to_str().unwrap();
    let (key, cert, subject) = (format!("{stem}.key"), format!("{stem}.pem"), format!("/CN={name}"));
    let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", &subject, "-keyout", &key, "-out", &cert];
    args.extend(EC);
    args.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
    openssl(&args, dir);
}

fn signed(dir: &Path, ca: &str, stem: &str, name: &str, extension: &str) {
    let (key, csr, cert, subject) =
        (format!("{stem}.key"), format!("{stem}.csr"), format!("{stem}.pem"), format!("/CN={name}"));
    let mut args = vec!["req", "-nodes", "-subj", &subject, "-keyout", &key, "-out", &csr];
    args.extend(EC);
    openssl(&args, dir);
    let ext = format!("{stem}.ext");
    std::fs::write(dir.join(&ext), format!("basicConstraints=CA:FALSE\n{extension}\n")).unwrap();
    let (ca_cert, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
        dir,
    );
}

/// Mosquitto with a plain listener (for the test's own observer) and a TLS listener (for the
/// client under test). Stopped when dropped.
#[derive(Debug)]
pub struct TlsMosquitto {
    _dir: tempfile::TempDir,
    child: Child,
    /// The plain listener.
    pub port: u16,
    /// The TLS listener.
    pub tls_port: u16,
}

impl TlsMosquitto {
    /// Start one serving `pki`'s server certificate; with `client_certificates`, the TLS
    /// listener refuses clients without a certificate signed by `pki`'s CA.
    pub async fn start(pki: &Pki, client_certificates: bool) -> Option<Self> {
        if !super::require("mosquitto", "apt-get install -y mosquitto") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (port, tls_port) = (super::free_port(), super::free_port());
        let config = dir.path().join("mosquitto.conf");
        let text = format!(
            "per_listener_settings false\nallow_anonymous true\npersistence false\n\
             listener {port} 127.0.0.1\n\
             listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {client_certificates}\n",
            pki.ca.display(),
            pki.server_cert.display(),
            pki.server_key.display(),
        );
        std::fs::write(&config, text).unwrap();
        let child = super::broker::mosquitto(&config, &[port, tls_port]).await;
        Some(Self { _dir: dir, child, port, tls_port })
    }
}

impl Drop for TlsMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
