//! What libpq reads of a PostgreSQL server's certificate, read the same way: its dates, the
//! names it gives its host, and its public key. Parsed with x509-cert, which takes every X.509
//! version (webpki refuses version 1, which Citus and older tools generate).

use std::net::IpAddr;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, PeerMisbehaved};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

/// A certificate as x509-cert reads it.
pub(super) struct Parsed(Certificate);

fn refused(error: CertificateError) -> rustls::Error {
    rustls::Error::InvalidCertificate(error)
}

impl Parsed {
    pub fn from_der(der: &CertificateDer<'_>) -> Result<Parsed, rustls::Error> {
        Certificate::from_der(der.as_ref()).map(Parsed).map_err(|_| refused(CertificateError::BadEncoding))
    }

    /// Issued by itself (issuer and subject the same name): OpenSSL finds such a certificate
    /// as its own issuer in the trusted store, so it needs no other anchor.
    pub fn is_self_issued(&self) -> bool {
        let tbs = &self.0.tbs_certificate;
        tbs.issuer == tbs.subject
    }

    /// OpenSSL's test: valid from `notBefore` until before `notAfter`.
    pub fn check_dates(&self, now: UnixTime) -> Result<(), rustls::Error> {
        let validity = &self.0.tbs_certificate.validity;
        let at = |seconds: u64| UnixTime::since_unix_epoch(Duration::from_secs(seconds));
        let not_before = validity.not_before.to_unix_duration().as_secs();
        let not_after = validity.not_after.to_unix_duration().as_secs();
        if now.as_secs() < not_before {
            return Err(refused(CertificateError::NotValidYetContext {
                time: now,
                not_before: at(not_before),
            }));
        }
        if now.as_secs() >= not_after {
            return Err(refused(CertificateError::ExpiredContext { time: now, not_after: at(not_after) }));
        }
        Ok(())
    }

    /// libpq's host name check (`verify-full`): the subjectAltName entries (`dNSName`, and
    /// `iPAddress` for a host given as an address); the Common Name only when no entry of the
    /// host's kind exists. `*.example.com` stands for one label.
    pub fn check_host(&self, server_name: &ServerName<'_>) -> Result<(), rustls::Error> {
        let host = match server_name {
            ServerName::DnsName(name) => Host::Name(name.as_ref()),
            ServerName::IpAddress(ip) => Host::Address(IpAddr::from(*ip)),
            _ => Host::Name(""),
        };
        let mut presented = Vec::new();
        let mut check_common_name = true;
        for name in self.alt_names() {
            match name {
                GeneralName::DnsName(dns) => {
                    let dns = dns.to_string();
                    if matches!(host, Host::Name(_)) {
                        check_common_name = false;
                    }
                    if host.matches_name(&dns) {
                        return Ok(());
                    }
                    presented.push(dns);
                }
                GeneralName::IpAddress(bytes) => {
                    let address = ip_of(bytes.as_bytes());
                    if let Host::Address(ip) = host {
                        check_common_name = false;
                        if address == Some(ip) {
                            return Ok(());
                        }
                    }
                    presented.extend(address.map(|a| a.to_string()));
                }
                _ => {}
            }
        }
        if check_common_name {
            if let Some(common_name) = self.common_name() {
                if host.matches_name(&common_name) {
                    return Ok(());
                }
                presented.push(common_name);
            }
        }
        Err(refused(CertificateError::NotValidForNameContext { expected: server_name.to_owned(), presented }))
    }

    fn alt_names(&self) -> Vec<GeneralName> {
        match self.0.tbs_certificate.get::<SubjectAltName>() {
            Ok(Some((_, SubjectAltName(names)))) => names,
            _ => Vec::new(),
        }
    }

    /// The first Common Name of the subject, as OpenSSL's lookup returns it.
    fn common_name(&self) -> Option<String> {
        let subject = &self.0.tbs_certificate.subject;
        subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .find(|atv| atv.oid == x509_cert::der::oid::db::rfc4519::COMMON_NAME)
            // PrintableString, UTF8String, IA5String: the text as it is encoded.
            .and_then(|atv| std::str::from_utf8(atv.value.value()).ok())
            .map(str::to_owned)
    }

    fn public_key(&self) -> Result<SubjectPublicKeyInfoDer<'static>, rustls::Error> {
        let spki = &self.0.tbs_certificate.subject_public_key_info;
        spki.to_der().map(SubjectPublicKeyInfoDer::from).map_err(|_| refused(CertificateError::BadEncoding))
    }
}

enum Host<'a> {
    Name(&'a str),
    Address(IpAddr),
}

impl Host<'_> {
    /// libpq's `pq_verify_peer_name_matches_certificate_name`: equal ignoring case, or a
    /// `*.` pattern whose `*` covers exactly one leading label.
    fn matches_name(&self, name: &str) -> bool {
        let host = match self {
            Host::Name(host) => host.to_string(),
            Host::Address(ip) => ip.to_string(),
        };
        if name.contains('\0') {
            return false;
        }
        if name.eq_ignore_ascii_case(&host) {
            return true;
        }
        match name.strip_prefix('*') {
            Some(suffix) if suffix.len() >= 2 && suffix.starts_with('.') && host.len() >= name.len() => {
                let (label, rest) = host.split_at(host.len() - suffix.len());
                rest.eq_ignore_ascii_case(suffix) && !label.is_empty() && !label.contains('.')
            }
            _ => false,
        }
    }
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Checks a TLS 1.3 handshake signature with the public key `cert` carries, whatever else the
/// certificate holds (rustls' own check parses it with webpki, which refuses version 1).
pub(super) fn verify_tls13_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    provider: &CryptoProvider,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let spki = Parsed::from_der(cert)?.public_key()?;
    rustls::crypto::verify_tls13_signature_with_raw_key(
        message,
        &spki,
        dss,
        &provider.signature_verification_algorithms,
    )
}

/// The same for TLS 1.2, where a scheme names no single algorithm: any of its algorithms may
/// verify the signature (as rustls' own TLS 1.2 check tries them).
pub(super) fn verify_tls12_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    provider: &CryptoProvider,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let spki = Parsed::from_der(cert)?.public_key()?;
    let key =
        webpki::RawPublicKeyEntity::try_from(&spki).map_err(|_| refused(CertificateError::BadEncoding))?;
    let algorithms = provider
        .signature_verification_algorithms
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, algorithms)| *algorithms)
        .ok_or(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme)?;
    if algorithms.iter().any(|algorithm| key.verify_signature(*algorithm, message, dss.signature()).is_ok()) {
        Ok(HandshakeSignatureValid::assertion())
    } else {
        Err(refused(CertificateError::BadSignature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_as_libpq_matches_them() {
        let name = Host::Name("db.example.com");
        assert!(name.matches_name("db.example.com"));
        assert!(name.matches_name("DB.Example.COM"), "case does not matter");
        assert!(name.matches_name("*.example.com"));
        assert!(!name.matches_name("*.db.example.com"));
        assert!(!Host::Name("a.db.example.com").matches_name("*.example.com"), "one label only");
        assert!(!Host::Name("example.com").matches_name("*.example.com"));
        assert!(!name.matches_name("*"));
        assert!(!name.matches_name("db.example.com\0.evil"), "an embedded NUL never matches");
        assert!(Host::Address("127.0.0.1".parse().unwrap()).matches_name("127.0.0.1"));
    }

    #[test]
    fn addresses_of_both_families_are_read() {
        assert_eq!(ip_of(&[127, 0, 0, 1]), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(ip_of(&[0; 16]), Some("::".parse().unwrap()));
        assert_eq!(ip_of(&[1, 2, 3]), None);
    }
}
