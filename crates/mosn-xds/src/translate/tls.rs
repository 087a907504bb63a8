//! Envoy TLS contexts → MOSN `tls_context` objects, with certificates inline or from SDS
//! secrets (`default`, `ROOTCA`) held in the store.

use envoy_types::pb::envoy::config::core::v3::{data_source::Specifier, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, secret, CertificateValidationContext,
    CommonTlsContext, Secret, TlsCertificate,
};
use serde_json::{json, Map, Value};

use crate::store::Store;
use crate::types;

/// Why a TLS context could not be made.
#[derive(Debug)]
pub(crate) enum TlsError {
    /// An SDS secret it names has not arrived (yet): hosts needing it wait, left out.
    Waiting(String),
    /// It cannot be expressed: a NACK.
    Bad(String),
}

fn data(d: &Option<DataSource>) -> Result<Option<String>, TlsError> {
    match d.as_ref().and_then(|d| d.specifier.as_ref()) {
        None => Ok(None),
        Some(Specifier::Filename(f)) => Ok(Some(f.clone())),
        Some(Specifier::InlineString(s)) => Ok(Some(s.clone())),
        Some(Specifier::InlineBytes(b)) => Ok(Some(String::from_utf8_lossy(b).into_owned())),
        Some(Specifier::EnvironmentVariable(_)) => Err(TlsError::Bad(
            "a data source from an environment variable is not supported".into(),
        )),
    }
}

fn secret(store: &Store, name: &str) -> Result<Secret, TlsError> {
    let e = store
        .get(types::SECRET, name)
        .ok_or_else(|| TlsError::Waiting(name.to_string()))?;
    super::decode(&e.body, types::SECRET).map_err(TlsError::Bad)
}

fn certificate(store: &Store, c: &CommonTlsContext) -> Result<Option<TlsCertificate>, TlsError> {
    if let Some(t) = c.tls_certificates.first() {
        return Ok(Some(t.clone()));
    }
    match c.tls_certificate_sds_secret_configs.first() {
        None => Ok(None),
        Some(s) => match secret(store, &s.name)?.r#type {
            Some(secret::Type::TlsCertificate(t)) => Ok(Some(t)),
            _ => Err(TlsError::Bad(format!(
                "SDS secret {:?} holds no tls_certificate",
                s.name
            ))),
        },
    }
}

// `match_subject_alt_names` is deprecated and still what Istio sends.
#[allow(deprecated)]
fn validation(
    store: &Store,
    c: &CommonTlsContext,
) -> Result<Option<CertificateValidationContext>, TlsError> {
    let from_sds = |name: &str| match secret(store, name)?.r#type {
        Some(secret::Type::ValidationContext(v)) => Ok(Some(v)),
        _ => Err(TlsError::Bad(format!(
            "SDS secret {name:?} holds no validation_context"
        ))),
    };
    match &c.validation_context_type {
        None => Ok(None),
        Some(ValidationContextType::ValidationContext(v)) => Ok(Some(v.clone())),
        Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => from_sds(&s.name),
        Some(ValidationContextType::CombinedValidationContext(cv)) => {
            match &cv.validation_context_sds_secret_config {
                Some(s) => {
                    let mut v = from_sds(&s.name)?.unwrap_or_default();
                    if let Some(d) = &cv.default_validation_context {
                        v.match_subject_alt_names = d.match_subject_alt_names.clone();
                        v.match_typed_subject_alt_names = d.match_typed_subject_alt_names.clone();
                    }
                    Ok(Some(v))
                }
                None => Ok(cv.default_validation_context.clone()),
            }
        }
        Some(_) => Err(TlsError::Bad(
            "certificate providers are not supported by mosn-rs".into(),
        )),
    }
}

/// The exact names and the prefixes of `match_subject_alt_names` and
/// `match_typed_subject_alt_names` (Istio's SPIFFE identities, and its trust domain as a prefix).
///
/// Errors: a suffix, contains or regex SAN matcher, or a case-insensitive one.
#[allow(deprecated)]
fn san_names(v: &CertificateValidationContext) -> Result<(Vec<String>, Vec<String>), TlsError> {
    use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
    let (mut exact, mut prefixes) = (Vec::new(), Vec::new());
    let matchers = v.match_subject_alt_names.iter().chain(
        v.match_typed_subject_alt_names
            .iter()
            .filter_map(|m| m.matcher.as_ref()),
    );
    for m in matchers {
        match &m.match_pattern {
            Some(MatchPattern::Exact(s)) if !m.ignore_case => exact.push(s.clone()),
            Some(MatchPattern::Prefix(s)) if !m.ignore_case => prefixes.push(s.clone()),
            _ => {
                return Err(TlsError::Bad(
                    "match_subject_alt_names: only exact and prefix names are supported by mosn-rs"
                        .into(),
                ))
            }
        }
    }
    Ok((exact, prefixes))
}

/// The SDS secret names a common TLS context refers to.
pub(crate) fn secret_names(c: &CommonTlsContext, out: &mut std::collections::BTreeSet<String>) {
    out.extend(
        c.tls_certificate_sds_secret_configs
            .iter()
            .map(|s| s.name.clone()),
    );
    match &c.validation_context_type {
        Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => {
            out.insert(s.name.clone());
        }
        Some(ValidationContextType::CombinedValidationContext(cv)) => {
            if let Some(s) = &cv.validation_context_sds_secret_config {
                out.insert(s.name.clone());
            }
        }
        _ => {}
    }
}

/// Envoy's `TLSv1_2`-style enum values (0 auto, 1 TLSv1_0, ... 4 TLSv1_3) as MOSN's strings.
fn version(v: i32) -> Option<&'static str> {
    match v {
        3 => Some("TLSv1_2"),
        4 => Some("TLSv1_3"),
        _ => None,
    }
}

/// A MOSN `tls_context` from an Envoy common context; `sni` is the upstream `sni`, `server` sets
/// the client-certificate keys of a downstream context.
pub(crate) fn context(
    store: &Store,
    c: &CommonTlsContext,
    sni: &str,
    require_client_cert: Option<bool>,
) -> Result<Value, TlsError> {
    let mut o = Map::new();
    o.insert("status".into(), json!(true));
    if let Some(cert) = certificate(store, c)? {
        if let Some(chain) = data(&cert.certificate_chain)? {
            o.insert("cert_chain".into(), json!(chain));
        }
        if let Some(key) = data(&cert.private_key)? {
            o.insert("private_key".into(), json!(key));
        }
    }
    match validation(store, c)? {
        Some(v) => {
            if let Some(ca) = data(&v.trusted_ca)? {
                o.insert("ca_cert".into(), json!(ca));
            }
            let (names, prefixes) = san_names(&v)?;
            if !names.is_empty() {
                o.insert("subject_alt_names".into(), json!(names));
            }
            if !prefixes.is_empty() {
                o.insert("subject_alt_name_prefixes".into(), json!(prefixes));
            }
        }
        // No validation context: Envoy does not verify the peer.
        None if require_client_cert.is_none() => {
            o.insert("insecure_skip".into(), json!(true));
        }
        None => {}
    }
    if !sni.is_empty() {
        o.insert("server_name".into(), json!(sni));
    }
    if !c.alpn_protocols.is_empty() {
        o.insert("alpn".into(), json!(c.alpn_protocols.join(",")));
    }
    if let Some(p) = &c.tls_params {
        if let Some(v) = version(p.tls_minimum_protocol_version) {
            o.insert("min_version".into(), json!(v));
        }
        if let Some(v) = version(p.tls_maximum_protocol_version) {
            o.insert("max_version".into(), json!(v));
        }
    }
    if let Some(req) = require_client_cert {
        o.insert("verify_client".into(), json!(o.contains_key("ca_cert")));
        o.insert("require_client_cert".into(), json!(req));
    }
    Ok(Value::Object(o))
}
