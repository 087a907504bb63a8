//! TLS with rustls, from MOSN's `tls_context` (MOSN `pkg/mtls`).
//!
//! - Certificates, keys and CAs are a file path or inline PEM. A key that does not match its
//!   certificate, an unreadable file, an unknown cipher or curve name are errors naming the
//!   context's JSON path.
//! - `cipher_suites` takes OpenSSL names and, as Go's crypto/tls (which MOSN uses) does, applies to
//!   TLS 1.2; TLS 1.3 keeps its suites. TLS 1.2 is the minimum: rustls has no 1.0 or 1.1.
//! - Several listener contexts (`tls_context_set`) are chosen by SNI: exact name, then wildcard,
//!   then the first. Names are the context's `server_name`, else the certificate's DNS names.
//! - Certificate files are watched (mtime, every [`RELOAD_EVERY`]); new handshakes use the new
//!   certificate, established connections keep theirs.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use mosn_config::TlsContext;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// How often certificate files are checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// A TLS setting that cannot be used; displayed as `PATH.KEY: message`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TlsError {
    /// JSON path of the key at fault.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn err(ctx: &TlsContext, key: &str, message: impl Into<String>) -> TlsError {
    TlsError {
        path: format!("{}.{key}", ctx.path),
        message: message.into(),
    }
}

/// The PEM text of a field: inline when it holds `-----BEGIN`, else read from the file.
fn pem(ctx: &TlsContext, key: &str, v: &str) -> Result<Vec<u8>, TlsError> {
    if v.contains("-----BEGIN") {
        Ok(v.as_bytes().to_vec())
    } else {
        std::fs::read(v).map_err(|e| err(ctx, key, format!("cannot read {v:?}: {e}")))
    }
}

fn certs(ctx: &TlsContext, key: &str, v: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = pem(ctx, key, v)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| err(ctx, key, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(err(ctx, key, "holds no certificate"));
    }
    Ok(certs)
}

fn private_key(ctx: &TlsContext, v: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = pem(ctx, "private_key", v)?;
    PrivateKeyDer::from_pem_slice(&text)
        .map_err(|e| err(ctx, "private_key", format!("not a PEM private key: {e}")))
}

fn roots(ctx: &TlsContext, v: &str) -> Result<RootCertStore, TlsError> {
    let mut r = RootCertStore::empty();
    for c in certs(ctx, "ca_cert", v)? {
        r.add(c)
            .map_err(|e| err(ctx, "ca_cert", format!("not a usable CA certificate: {e}")))?;
    }
    Ok(r)
}

/// The crypto provider a context asks for (cipher suites and curves).
fn provider(ctx: &TlsContext) -> Result<Arc<CryptoProvider>, TlsError> {
    use ring::cipher_suite as cs;
    let mut p = ring::default_provider();
    if !ctx.cipher_suites.is_empty() {
        let mut suites = vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
        ];
        for name in &ctx.cipher_suites {
            let s = match name.as_str() {
                "ECDHE-ECDSA-AES128-GCM-SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                "ECDHE-ECDSA-AES256-GCM-SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                "ECDHE-ECDSA-CHACHA20-POLY1305" => cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                "ECDHE-RSA-AES128-GCM-SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                "ECDHE-RSA-AES256-GCM-SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                "ECDHE-RSA-CHACHA20-POLY1305" => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                // TLS 1.3 names are accepted; those suites are always on.
                "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => continue,
                other => {
                    return Err(err(
                        ctx,
                        "cipher_suites",
                        format!("{other:?} is not a cipher suite mosn-rs offers (ECDHE-{{ECDSA,RSA}}-{{AES128-GCM-SHA256,AES256-GCM-SHA384,CHACHA20-POLY1305}}, TLS_AES_128_GCM_SHA256, ...)"),
                    ))
                }
            };
            suites.push(s);
        }
        p.cipher_suites = suites;
    }
    if !ctx.ecdh_curves.is_empty() {
        let mut groups = Vec::new();
        for name in &ctx.ecdh_curves {
            groups.push(match name.to_ascii_uppercase().replace('-', "").as_str() {
                "X25519" => ring::kx_group::X25519,
                "P256" | "PRIME256V1" | "SECP256R1" => ring::kx_group::SECP256R1,
                "P384" | "SECP384R1" => ring::kx_group::SECP384R1,
                _ => {
                    return Err(err(
                        ctx,
                        "ecdh_curves",
                        format!("{name:?} is not a curve mosn-rs offers (X25519, P256, P384)"),
                    ))
                }
            });
        }
        p.kx_groups = groups;
    }
    Ok(Arc::new(p))
}

fn version(ctx: &TlsContext, key: &str, v: &Option<String>) -> Result<Option<u8>, TlsError> {
    match v.as_deref() {
        None | Some("") | Some("TLS_AUTO") => Ok(None),
        Some("TLSv1_2") | Some("TLSv1.2") => Ok(Some(2)),
        Some("TLSv1_3") | Some("TLSv1.3") => Ok(Some(3)),
        Some(o @ ("TLSv1_0" | "TLSv1_1" | "TLSv1.0" | "TLSv1.1")) => Err(err(
            ctx,
            key,
            format!(
                "{o:?}: TLS 1.0 and 1.1 are not offered (insecure; rustls has TLS 1.2 and 1.3)"
            ),
        )),
        Some(o) => Err(err(
            ctx,
            key,
            format!("{o:?} is not a TLS version (TLSv1_2, TLSv1_3, TLS_AUTO)"),
        )),
    }
}

/// TLS versions from `min_version`/`max_version`; TLS 1.2 at least, as the default too.
fn versions(ctx: &TlsContext) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let lo = version(ctx, "min_version", &ctx.min_version)?.unwrap_or(2);
    let hi = version(ctx, "max_version", &ctx.max_version)?.unwrap_or(3);
    let v: Vec<_> = [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(n, _)| (lo..=hi).contains(n))
        .map(|(_, v)| v)
        .collect();
    if v.is_empty() {
        return Err(err(ctx, "min_version", "is above max_version"));
    }
    Ok(v)
}

/// Loads a context's certificate chain and key, checking that they match.
fn certified(ctx: &TlsContext, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certs(ctx, "cert_chain", ctx.cert_chain.as_deref().unwrap_or(""))?;
    let key = private_key(ctx, ctx.private_key.as_deref().unwrap_or(""))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| err(ctx, "private_key", format!("unusable key: {e}")))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| {
        err(
            ctx,
            "private_key",
            format!("does not match the certificate in cert_chain: {e}"),
        )
    })?;
    Ok(Arc::new(ck))
}

/// SNI names for an entry: `server_name`, else the certificate's DNS names.
fn names(ctx: &TlsContext, ck: &CertifiedKey) -> Vec<String> {
    if let Some(n) = &ctx.server_name {
        return vec![n.to_ascii_lowercase()];
    }
    ck.end_entity_cert()
        .ok()
        .and_then(|c| {
            webpki::EndEntityCert::try_from(c).ok().map(|e| {
                e.valid_dns_names()
                    .map(|n| n.to_ascii_lowercase())
                    .collect()
            })
        })
        .unwrap_or_default()
}

struct Entry {
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

/// Picks the certificate by SNI among a listener's contexts, and reloads changed files.
#[derive(Debug)]
struct SniResolver {
    entries: ArcSwap<Vec<Entry>>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Entry({:?})", self.names)
    }
}

impl SniResolver {
    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let entries = self.entries.load();
        if let Some(sni) = sni.map(|s| s.to_ascii_lowercase()) {
            if let Some(e) = entries.iter().find(|e| e.names.contains(&sni)) {
                return Some(e.key.clone());
            }
            if let Some((_, parent)) = sni.split_once('.') {
                let wild = format!("*.{parent}");
                if let Some(e) = entries.iter().find(|e| e.names.contains(&wild)) {
                    return Some(e.key.clone());
                }
            }
        }
        entries.first().map(|e| e.key.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

fn load_entries(
    contexts: &[TlsContext],
    provider: &CryptoProvider,
) -> Result<Vec<Entry>, TlsError> {
    contexts
        .iter()
        .map(|c| {
            let key = certified(c, provider)?;
            Ok(Entry {
                names: names(c, &key),
                key,
            })
        })
        .collect()
}

/// The bytes of every certificate and key file (inline PEM gives `None`). Contents, not mtimes,
/// are compared: a rewrite within one timestamp tick, or a symlink swap, still counts.
fn contents(contexts: &[TlsContext]) -> Vec<Option<Vec<u8>>> {
    contexts
        .iter()
        .flat_map(|c| [c.cert_chain.clone(), c.private_key.clone()])
        .map(|f| {
            f.filter(|f| !f.contains("-----BEGIN"))
                .and_then(|f| std::fs::read(PathBuf::from(f)).ok())
        })
        .collect()
}

/// Watches the files of `contexts` and swaps in new certificates when they change and load.
fn watch(resolver: Weak<SniResolver>, contexts: Vec<TlsContext>, provider: Arc<CryptoProvider>) {
    let mut seen = contents(&contexts);
    if seen.iter().all(Option::is_none) {
        return; // inline PEM only: nothing to watch
    }
    let _ = std::thread::Builder::new()
        .name("mosn-tls-reload".into())
        .spawn(move || loop {
            std::thread::sleep(RELOAD_EVERY);
            let Some(r) = resolver.upgrade() else { return };
            let now = contents(&contexts);
            if now == seen {
                continue;
            }
            match load_entries(&contexts, &provider) {
                Ok(e) => {
                    r.entries.store(Arc::new(e));
                    seen = now;
                    tracing::info!("TLS certificates reloaded");
                }
                // Files may be mid-write: keep the old certificates and try again next time.
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificates changed but do not load yet")
                }
            }
        });
}

/// A listener's rustls server config from its contexts (the first one sets client verification,
/// versions, suites and ALPN; all give certificates).
///
/// Errors: [`TlsError`] naming the JSON path.
pub fn server_config(contexts: &[TlsContext]) -> Result<Arc<ServerConfig>, TlsError> {
    let first = contexts.first().ok_or_else(|| TlsError {
        path: String::new(),
        message: "no TLS context".into(),
    })?;
    let provider = provider(first)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(first)?)
        .map_err(|e| err(first, "cipher_suites", e.to_string()))?;
    let builder = if first.verify_client || first.require_client_cert {
        let ca = first.ca_cert.as_deref().ok_or_else(|| {
            err(
                first,
                "ca_cert",
                "is required to verify client certificates",
            )
        })?;
        let mut v = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots(first, ca)?),
            provider.clone(),
        );
        if !first.require_client_cert {
            v = v.allow_unauthenticated();
        }
        let v = v
            .build()
            .map_err(|e| err(first, "ca_cert", e.to_string()))?;
        match SanList::of(first) {
            None => builder.with_client_cert_verifier(v),
            Some(names) => {
                builder.with_client_cert_verifier(Arc::new(ClientSanVerifier { inner: v, names }))
            }
        }
    } else {
        builder.with_no_client_auth()
    };
    let resolver = Arc::new(SniResolver {
        entries: ArcSwap::from_pointee(load_entries(contexts, &provider)?),
    });
    watch(Arc::downgrade(&resolver), contexts.to_vec(), provider);
    let mut cfg = builder.with_cert_resolver(resolver);
    cfg.alpn_protocols = first.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// A custom upstream certificate verifier. With `check` unset it accepts any certificate
/// (`insecure_skip`); with it set it verifies the chain against the roots, then the subject
/// alternative names (URI or DNS) against a list instead of the host name: Envoy's
/// `match_subject_alt_names`, by which Istio checks a SPIFFE identity
/// (`spiffe://cluster.local/ns/<ns>/sa/<account>`). Handshake signatures are always checked.
#[derive(Debug)]
struct UpstreamVerifier {
    check: Option<(Arc<rustls::RootCertStore>, SanList)>,
    algs: WebPkiSupportedAlgorithms,
}

/// Accepted subject alternative names: exact ones and prefixes.
#[derive(Debug, Clone)]
struct SanList {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl SanList {
    fn of(ctx: &TlsContext) -> Option<SanList> {
        (!ctx.subject_alt_names.is_empty() || !ctx.subject_alt_name_prefixes.is_empty()).then(
            || SanList {
                exact: ctx.subject_alt_names.clone(),
                prefixes: ctx.subject_alt_name_prefixes.clone(),
            },
        )
    }

    /// Checks a certificate's URI and DNS names.
    fn check(&self, der: &[u8]) -> Result<(), rustls::Error> {
        let got = subject_alt_names(der);
        let ok = got.iter().any(|n| {
            self.exact.contains(n) || self.prefixes.iter().any(|p| n.starts_with(p.as_str()))
        });
        if ok {
            Ok(())
        } else {
            tracing::debug!(?got, want = ?self, "peer certificate names no expected identity");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ))
        }
    }
}

/// Verifies client certificates with webpki, then their names against a [`SanList`].
#[derive(Debug)]
struct ClientSanVerifier {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    names: SanList,
}

impl rustls::server::danger::ClientCertVerifier for ClientSanVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let v = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.names.check(end_entity)?;
        Ok(v)
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The URI and DNS subject alternative names of a DER certificate.
fn subject_alt_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some((roots, names)) = &self.check else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        names.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A cluster's rustls client config: `ca_cert` verification (or `insecure_skip`), against
/// `subject_alt_names` when set, a client certificate when `cert_chain` and `private_key` are
/// set, ALPN.
///
/// Errors: [`TlsError`] naming the JSON path.
pub fn client_config(ctx: &TlsContext) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider(ctx)?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(ctx)?)
        .map_err(|e| err(ctx, "cipher_suites", e.to_string()))?;
    let builder = if ctx.insecure_skip {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(UpstreamVerifier {
                check: None,
                algs: provider.signature_verification_algorithms,
            }))
    } else {
        let ca = ctx.ca_cert.as_deref().ok_or_else(|| {
            err(
                ctx,
                "ca_cert",
                "is required to verify the upstream (or set insecure_skip)",
            )
        })?;
        match SanList::of(ctx) {
            None => builder.with_root_certificates(roots(ctx, ca)?),
            Some(names) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(UpstreamVerifier {
                    check: Some((Arc::new(roots(ctx, ca)?), names)),
                    algs: provider.signature_verification_algorithms,
                })),
        }
    };
    let mut cfg = match (&ctx.cert_chain, &ctx.private_key) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(certs(ctx, "cert_chain", c)?, private_key(ctx, k)?)
            .map_err(|e| err(ctx, "private_key", e.to_string()))?,
        _ => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = ctx.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(Arc::new(cfg))
}
