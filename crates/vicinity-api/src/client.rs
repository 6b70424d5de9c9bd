//! A typed client for the vicinity API, used by the operator commands, the tests and the load
//! harness. Adds `authorization: Bearer <key>` to every call when a key is given; speaks TLS
//! (and mutual TLS, with a client certificate) to an `https://` address.

use std::{path::Path, time::Duration};

use tonic::{
    Request, Status,
    metadata::{AsciiMetadataValue, errors::InvalidMetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use tonic_health::pb::health_client::HealthClient;

use crate::pb::{
    self, consent_service_client::ConsentServiceClient, people_nearby_client::PeopleNearbyClient,
    privacy_service_client::PrivacyServiceClient, shake_client::ShakeClient,
};

/// Adds the API key to each request.
#[derive(Debug, Clone, Default)]
pub struct BearerAuth(Option<AsciiMetadataValue>);

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel authenticated with the channel of every service client.
type Authed = InterceptedService<Channel, BearerAuth>;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not a valid URI or the server cannot be reached.
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    /// The key has characters a header cannot carry.
    #[error("the API key is not a valid header value")]
    Key(#[from] InvalidMetadataValue),
    /// An `https://` address without the CA to check the server with, or TLS settings for a
    /// plaintext address.
    #[error("{0}")]
    Tls(&'static str),
    /// A certificate or key file could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// How a client checks the server and proves itself: the CA that signed the server's
/// certificate, and for mutual TLS the client's own certificate and key (all PEM).
#[derive(Debug, Clone)]
pub struct ClientTls {
    ca: Certificate,
    identity: Option<Identity>,
}

impl ClientTls {
    /// Reads the CA certificate and, if given, the client certificate and key.
    pub fn from_files(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Self, ClientError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| ClientError::File {
                path: path.display().to_string(),
                source,
            })
        };
        let identity = match identity {
            Some((cert, key)) => Some((read(cert)?, read(key)?)),
            None => None,
        };
        let identity = identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
        Ok(Self::from_pem(&read(ca)?, identity))
    }

    /// From PEM bytes already in memory.
    pub fn from_pem(ca: &[u8], identity: Option<(&[u8], &[u8])>) -> Self {
        Self {
            ca: Certificate::from_pem(ca),
            identity: identity.map(|(cert, key)| Identity::from_pem(cert, key)),
        }
    }

    fn config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(self.ca.clone());
        match &self.identity {
            Some(identity) => config.identity(identity.clone()),
            None => config,
        }
    }
}

/// A connection to a vicinity server.
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    auth: BearerAuth,
}

impl Client {
    /// Connects to `addr` (for example `http://127.0.0.1:50051`).
    pub async fn connect(addr: &str, api_key: Option<&str>) -> Result<Self, ClientError> {
        Self::connect_with(addr, api_key, None).await
    }

    /// Connects to `addr`; an `https://` address needs `tls` (the CA that signed the server's
    /// certificate, and a client certificate when the server requires one).
    pub async fn connect_with(
        addr: &str,
        api_key: Option<&str>,
        tls: Option<&ClientTls>,
    ) -> Result<Self, ClientError> {
        let mut endpoint = Endpoint::from_shared(addr.to_owned())?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let https = addr.starts_with("https://");
        match (https, tls) {
            (true, Some(tls)) => endpoint = endpoint.tls_config(tls.config())?,
            (true, None) => {
                return Err(ClientError::Tls(
                    "an https:// address needs the CA certificate that signed the server's (--ca-cert)",
                ));
            }
            (false, Some(_)) => {
                return Err(ClientError::Tls(
                    "TLS settings given for a plaintext address: use https://",
                ));
            }
            (false, None) => {}
        }
        let channel = endpoint.connect().await?;
        let auth = match api_key {
            Some(key) => BearerAuth(Some(format!("Bearer {key}").parse()?)),
            None => BearerAuth(None),
        };
        Ok(Self { channel, auth })
    }

    fn authed(&self) -> Authed {
        InterceptedService::new(self.channel.clone(), self.auth.clone())
    }

    /// The ConsentService client.
    pub fn consent(&self) -> ConsentServiceClient<Authed> {
        ConsentServiceClient::new(self.authed())
    }

    /// The PeopleNearby client.
    pub fn nearby(&self) -> PeopleNearbyClient<Authed> {
        PeopleNearbyClient::new(self.authed())
    }

    /// The Shake client.
    pub fn shake(&self) -> ShakeClient<Authed> {
        ShakeClient::new(self.authed())
    }

    /// The PrivacyService client.
    pub fn privacy(&self) -> PrivacyServiceClient<Authed> {
        PrivacyServiceClient::new(self.authed())
    }

    /// The standard health client.
    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }
}

/// Text renderings for the operator commands.
pub mod render {
    use super::pb;

    fn time(ts: Option<&prost_types::Timestamp>) -> String {
        ts.map_or_else(
            || "-".to_owned(),
            |t| {
                let at = std::time::UNIX_EPOCH
                    + std::time::Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32);
                humantime::format_rfc3339_millis(at).to_string()
            },
        )
    }

    fn feature(raw: i32) -> &'static str {
        pb::Feature::try_from(raw).map_or("?", |f| f.as_str_name())
    }

    /// One line per consent record.
    pub fn consent(record: &pb::ConsentRecord) -> String {
        let state = pb::ConsentState::try_from(record.state).map_or("?", |s| s.as_str_name());
        format!(
            "{} {} {} notice={} source={} at={} id={}",
            record.user_id,
            feature(record.feature),
            state,
            record.notice_version,
            record.source,
            time(record.changed_at.as_ref()),
            record.consent_id
        )
    }

    /// The whole export, as sections.
    pub fn export(export: &pb::ExportMyDataResponse) -> String {
        let mut out = format!("user {}\nconsents:\n", export.user_id);
        for c in &export.consents {
            out += &format!("  {}\n", consent(c));
        }
        out += "consent history:\n";
        for c in &export.consent_history {
            out += &format!("  {}\n", consent(c));
        }
        out += "locations:\n";
        for l in &export.locations {
            let (lat, lng) = l
                .location
                .as_ref()
                .map_or((0.0, 0.0), |p| (p.latitude, p.longitude));
            out += &format!(
                "  {} at {lat},{lng} (±{} m) left={} last_active={} visible_until={} purge_at={}\n",
                feature(l.feature),
                l.precision_m,
                l.left,
                time(l.last_active.as_ref()),
                time(l.visible_until.as_ref()),
                time(l.purge_at.as_ref())
            );
        }
        out += &format!("shake matches: {}\n", export.shake_history.len());
        out
    }
}
