//! Certificates and keys for one local control plane, and kubeconfig rendering.
//!
//! Every key is ECDSA P-256 (rcgen's default). Certificates keep rcgen's default validity
//! (1975 to 4096), because they are discarded with their control plane and never expire in use.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// OID of the X.520 organizationName attribute, which Kubernetes reads as a group name.
const ORGANIZATION_NAME_OID: [u64; 4] = [2, 5, 4, 10];

/// Cluster, context and (for the admin) user name written into kubeconfigs.
const KUBECONFIG_CLUSTER_NAME: &str = "y360-local";

/// A client certificate and its private key, in both PEM and DER encoding.
pub(crate) struct ClientCredentials {
    pub(crate) user: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) cert_der: Vec<u8>,
    pub(crate) key_der: Vec<u8>,
}

/// The CAs and keys that one kube-apiserver is started with.
pub(crate) struct Pki {
    serving_ca: CertifiedIssuer<'static, KeyPair>,
    serving_cert_pem: String,
    serving_key_pem: String,
    client_ca: CertifiedIssuer<'static, KeyPair>,
    service_account_key: KeyPair,
    pub(crate) admin: ClientCredentials,
}

/// Paths of the PEM files passed to kube-apiserver.
pub(crate) struct PkiFiles {
    pub(crate) serving_cert: PathBuf,
    pub(crate) serving_key: PathBuf,
    pub(crate) client_ca: PathBuf,
    pub(crate) service_account_public_key: PathBuf,
    pub(crate) service_account_private_key: PathBuf,
}

impl Pki {
    /// Generates the serving CA and certificate, the client CA, the service-account signing
    /// key and the admin client certificate (CN=admin, O=system:masters).
    pub(crate) fn generate() -> Result<Pki> {
        let serving_ca = generate_ca("y360 local serving CA")?;
        let (serving_cert_pem, serving_key_pem) = issue_serving_cert(&serving_ca)?;
        let client_ca = generate_ca("y360 local client CA")?;
        let admin = issue_client_cert(&client_ca, "admin", &["system:masters"])?;
        let service_account_key =
            KeyPair::generate().context("failed to generate the service-account signing key")?;

        Ok(Pki {
            serving_ca,
            serving_cert_pem,
            serving_key_pem,
            client_ca,
            service_account_key,
            admin,
        })
    }

    pub(crate) fn serving_ca_pem(&self) -> String {
        self.serving_ca.pem()
    }

    pub(crate) fn serving_ca_der(&self) -> Vec<u8> {
        self.serving_ca.der().to_vec()
    }

    /// Issues a client certificate signed by the client CA, with CN=`user` and one O per group.
    pub(crate) fn issue_client(&self, user: &str, groups: &[&str]) -> Result<ClientCredentials> {
        issue_client_cert(&self.client_ca, user, groups)
    }

    /// Writes the PEM files that kube-apiserver reads into `dir`. Private keys get mode 0600.
    pub(crate) fn write_files(&self, dir: &Path) -> Result<PkiFiles> {
        let files = PkiFiles {
            serving_cert: dir.join("serving.crt"),
            serving_key: dir.join("serving.key"),
            client_ca: dir.join("client-ca.crt"),
            service_account_public_key: dir.join("service-account.pub"),
            service_account_private_key: dir.join("service-account.key"),
        };

        write_file(&files.serving_cert, &self.serving_cert_pem)?;
        write_file(&files.serving_key, &self.serving_key_pem)?;
        write_file(&files.client_ca, &self.client_ca.pem())?;
        write_file(
            &files.service_account_public_key,
            &self.service_account_key.public_key_pem(),
        )?;
        write_file(
            &files.service_account_private_key,
            &self.service_account_key.serialize_pem(),
        )?;
        Ok(files)
    }
}

fn generate_ca(common_name: &str) -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];

    let key = KeyPair::generate()
        .with_context(|| format!("failed to generate a key for {common_name}"))?;
    CertifiedIssuer::self_signed(params, key)
        .with_context(|| format!("failed to self-sign {common_name}"))
}

/// Issues the kube-apiserver serving certificate for `localhost` and `127.0.0.1`.
fn issue_serving_cert(ca: &CertifiedIssuer<'static, KeyPair>) -> Result<(String, String)> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let mut params = CertificateParams::new(names)
        .context("invalid subject alternative names for kube-apiserver")?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];

    let key = KeyPair::generate().context("failed to generate the kube-apiserver serving key")?;
    let cert = params
        .signed_by(&key, ca)
        .context("failed to sign the kube-apiserver serving certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn issue_client_cert(
    ca: &CertifiedIssuer<'static, KeyPair>,
    user: &str,
    groups: &[&str],
) -> Result<ClientCredentials> {
    let params = client_cert_params(user, groups)?;
    let key =
        KeyPair::generate().with_context(|| format!("failed to generate a key for user {user}"))?;
    let cert = params
        .signed_by(&key, ca)
        .with_context(|| format!("failed to sign the client certificate for user {user}"))?;

    Ok(ClientCredentials {
        user: user.to_string(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    })
}

/// Builds the subject CN=`user`, O=group... for a client certificate.
///
/// rcgen's `DistinguishedName` keeps one value per attribute type, so the first group goes in
/// as `OrganizationName` and the second as a custom attribute with the same OID. Go's x509
/// parser (and so kube-apiserver) reads both as organization entries.
fn client_cert_params(user: &str, groups: &[&str]) -> Result<CertificateParams> {
    if groups.len() > 2 {
        bail!(
            "client certificate for user {user} requests {} groups ({groups:?}), but at most 2 \
             are supported; impersonate the identity with the admin kubeconfig instead",
            groups.len()
        );
    }

    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, user);
    if let Some(group) = groups.first() {
        params
            .distinguished_name
            .push(DnType::OrganizationName, *group);
    }
    if let Some(group) = groups.get(1) {
        let attribute = DnType::CustomDnType(ORGANIZATION_NAME_OID.to_vec());
        params.distinguished_name.push(attribute, *group);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

/// Renders a kubeconfig with one cluster, one user and one context, all data embedded.
pub(crate) fn render_kubeconfig(
    server_url: &str,
    ca_pem: &str,
    credentials: &ClientCredentials,
) -> String {
    // A JSON string is also a valid YAML double-quoted scalar, which keeps user names such
    // as `system:serviceaccount:ns:name` intact.
    let user = serde_json::Value::from(credentials.user.as_str()).to_string();
    let ca = BASE64.encode(ca_pem);
    let cert = BASE64.encode(&credentials.cert_pem);
    let key = BASE64.encode(&credentials.key_pem);
    let name = KUBECONFIG_CLUSTER_NAME;

    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {name}
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {name}
  context:
    cluster: {name}
    user: {user}
current-context: {name}
"
    )
}

/// Writes `contents` to `path` with mode 0600, because most of these files contain private keys.
pub(crate) fn write_file(path: &Path, contents: &str) -> Result<()> {
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(contents.as_bytes())
    };
    write().with_context(|| format!("failed to write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_cert_rejects_three_groups() {
        let result = client_cert_params("bob", &["a", "b", "c"]);
        let message = result
            .expect_err("three groups must be rejected")
            .to_string();
        assert!(message.contains("at most 2"), "unexpected error: {message}");
    }

    #[test]
    fn kubeconfig_quotes_user_name() {
        let pki = Pki::generate().expect("PKI generation failed");
        let user = "system:serviceaccount:ns:operator";
        let credentials = pki.issue_client(user, &["system:serviceaccounts"]).unwrap();
        let yaml = render_kubeconfig("https://127.0.0.1:1", &pki.serving_ca_pem(), &credentials);
        assert!(
            yaml.contains("- name: \"system:serviceaccount:ns:operator\""),
            "{yaml}"
        );
        assert!(yaml.contains("server: https://127.0.0.1:1\n"), "{yaml}");
    }
}
