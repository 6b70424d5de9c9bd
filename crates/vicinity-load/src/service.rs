//! The service's RPCs as driver targets: populating (GrantConsent + UpdateLocation per user),
//! ListNearby (W1, W2), the UpdateLocation churn stream (W3) and Shake (W4).

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt;

use super::{
    driver::Target,
    record::Outcome,
    workload::{ChurnStep, Population, Viewers, user_id},
};
use vicinity_api::{
    client::{Client, ClientError, ClientTls},
    pb,
};

/// The notice version the harness grants consent under.
pub const NOTICE_VERSION: &str = "vicinity-load-1";
/// The consent source the harness records.
pub const SOURCE: &str = "vicinity-load";
/// The page size of every ListNearby (contract §7).
pub const LIST_LIMIT: u32 = 50;
/// The radius of every ListNearby (contract §7).
pub const LIST_MAX_DISTANCE_M: u32 = 5_000;
/// How long past the call's own deadline the harness waits before giving up on an answer.
const CLIENT_SLACK: Duration = Duration::from_secs(1);

/// Connections to one service and the population it is driven with.
#[derive(Debug, Clone)]
pub struct Service {
    clients: Arc<[Client]>,
    population: Population,
    timeout: Duration,
}

impl Service {
    /// Opens `connections` HTTP/2 connections to `addr`; every call carries `timeout` as its
    /// deadline.
    pub async fn connect(
        addr: &str,
        api_key: Option<&str>,
        tls: Option<&ClientTls>,
        connections: usize,
        population: Population,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let mut clients = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            clients.push(Client::connect_with(addr, api_key, tls).await?);
        }
        Ok(Service {
            clients: clients.into(),
            population,
            timeout,
        })
    }

    /// The population driven.
    pub fn population(&self) -> Population {
        self.population
    }

    /// The connection for request `i` (round robin).
    fn client(&self, i: u64) -> &Client {
        &self.clients[(i % self.clients.len() as u64) as usize]
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        request
    }
}

/// Runs `call` bounded by the deadline plus some slack, and labels what it returned.
async fn outcome<T>(
    rpc: &'static str,
    timeout: Duration,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Outcome {
    match tokio::time::timeout(timeout + CLIENT_SLACK, call).await {
        Ok(Ok(_)) => Outcome::ok(rpc),
        Ok(Err(status)) => Outcome::failed(rpc, label(&status)),
        Err(_) => Outcome::failed(rpc, "CLIENT_TIMEOUT"),
    }
}

/// `UNAVAILABLE`, or `FAILED_PRECONDITION/LOCATION_REQUIRED` when an ErrorInfo says why, or
/// `RESOURCE_EXHAUSTED/RATE_LIMITED/updates` when it also names the limit (a server whose
/// per-user limits a workload runs into: see the README).
pub fn label(status: &Status) -> String {
    let code = code_name(status.code());
    match status.get_error_details().error_info() {
        Some(info) => match info.metadata.get("limit") {
            Some(limit) => format!("{code}/{}/{limit}", info.reason),
            None => format!("{code}/{}", info.reason),
        },
        None => code.to_owned(),
    }
}

/// The canonical name of a gRPC status code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Loads user `i`: consent for `feature`, then (People Nearby) their home position; one
/// outcome, `Populate`, whose error names the step that failed.
#[derive(Debug, Clone)]
pub struct Populate {
    /// The service.
    pub service: Service,
    /// The feature consented to; People Nearby users also get a position.
    pub feature: pb::Feature,
}

impl Target for Populate {
    fn primary(&self) -> &'static str {
        "Populate"
    }

    fn call(&self, i: u64) -> BoxFuture<'static, Outcome> {
        let svc = &self.service;
        let user = svc.population.user(i);
        let grant = svc.request(pb::GrantConsentRequest {
            user_id: user.id(),
            feature: self.feature.into(),
            notice_version: NOTICE_VERSION.into(),
            source: SOURCE.into(),
        });
        let update = (self.feature == pb::Feature::PeopleNearby).then(|| {
            svc.request(pb::UpdateLocationRequest {
                user_id: user.id(),
                location: Some(user.location()),
                gender: user.gender.into(),
            })
        });
        let (mut consent, mut nearby) = (svc.client(i).consent(), svc.client(i).nearby());
        let timeout = svc.timeout;
        Box::pin(async move {
            let granted = outcome("GrantConsent", timeout, consent.grant_consent(grant)).await;
            let error = match (granted.error, update) {
                (Some(e), _) => Some(format!("GrantConsent {e}")),
                (None, Some(update)) => {
                    outcome("UpdateLocation", timeout, nearby.update_location(update))
                        .await
                        .error
                        .map(|e| format!("UpdateLocation {e}"))
                }
                (None, None) => None,
            };
            Outcome {
                rpc: "Populate",
                error,
            }
        })
    }
}

/// ListNearby from random users of the population (limit 50, 5 km).
#[derive(Debug, Clone)]
pub struct ListNearby {
    /// The service.
    pub service: Service,
    /// Who asks.
    pub viewers: Viewers,
    /// Salts the choice of viewers (the same salt asks from the same users in the same order).
    pub salt: u64,
}

impl Target for ListNearby {
    fn primary(&self) -> &'static str {
        "ListNearby"
    }

    fn call(&self, i: u64) -> BoxFuture<'static, Outcome> {
        let svc = &self.service;
        let viewer = svc.population.viewer(self.viewers, self.salt, i);
        let request = svc.request(pb::ListNearbyRequest {
            user_id: user_id(viewer),
            limit: LIST_LIMIT,
            max_distance_m: LIST_MAX_DISTANCE_M,
            ..Default::default()
        });
        let mut client = svc.client(i).nearby();
        let timeout = svc.timeout;
        Box::pin(async move { outcome("ListNearby", timeout, client.list_nearby(request)).await })
    }
}

/// W3: UpdateLocation over the city users in a seeded permutation, with some LeaveNearby and
/// ClearLocation (the user's next update enters again).
#[derive(Debug, Clone)]
pub struct Churn {
    /// The service.
    pub service: Service,
    /// Salts the permutation and the moves.
    pub salt: u64,
}

impl Target for Churn {
    fn primary(&self) -> &'static str {
        "UpdateLocation"
    }

    fn call(&self, i: u64) -> BoxFuture<'static, Outcome> {
        let svc = &self.service;
        let (user, step) = svc.population.churn(self.salt, i);
        let (user, gender) = (user_id(user), svc.population.user(user).gender);
        let client = svc.client(i);
        let timeout = svc.timeout;
        match step {
            ChurnStep::Update(location) => {
                let request = svc.request(pb::UpdateLocationRequest {
                    user_id: user,
                    location: Some(location),
                    gender: gender.into(),
                });
                let mut c = client.nearby();
                Box::pin(async move {
                    outcome("UpdateLocation", timeout, c.update_location(request)).await
                })
            }
            ChurnStep::Leave => {
                let request = svc.request(pb::LeaveNearbyRequest { user_id: user });
                let mut c = client.nearby();
                Box::pin(
                    async move { outcome("LeaveNearby", timeout, c.leave_nearby(request)).await },
                )
            }
            ChurnStep::Clear => {
                let request = svc.request(pb::ClearLocationRequest {
                    user_id: user,
                    feature: pb::Feature::PeopleNearby.into(),
                });
                let mut c = client.privacy();
                Box::pin(async move {
                    outcome("ClearLocation", timeout, c.clear_location(request)).await
                })
            }
        }
    }
}

/// W4: Shake from anywhere in the box or near a hot spot. Each call may wait for the whole
/// shake window, so the number in flight is about rate × window.
#[derive(Debug, Clone)]
pub struct Shake {
    /// The service.
    pub service: Service,
    /// Salts the users and places.
    pub salt: u64,
}

impl Target for Shake {
    fn primary(&self) -> &'static str {
        "Shake"
    }

    fn call(&self, i: u64) -> BoxFuture<'static, Outcome> {
        let svc = &self.service;
        let (user, location) = svc.population.shake(self.salt, i);
        let request = svc.request(pb::ShakeRequest {
            user_id: user_id(user),
            location: Some(location),
        });
        let mut client = svc.client(i).shake();
        let timeout = svc.timeout;
        Box::pin(async move { outcome("Shake", timeout, client.shake(request)).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal with `code` and an ErrorInfo of `reason` and `metadata`.
    fn refusal(code: Code, reason: &str, metadata: &[(&str, &str)]) -> Status {
        let metadata: std::collections::HashMap<String, String> = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let info = tonic_types::ErrorDetails::with_error_info(reason, "vicinity", metadata);
        Status::with_error_details(code, "refused", info)
    }

    #[test]
    fn labels_name_the_code_and_the_reason() {
        assert_eq!(label(&Status::unavailable("x")), "UNAVAILABLE");
        let status = refusal(Code::FailedPrecondition, "LOCATION_REQUIRED", &[]);
        assert_eq!(label(&status), "FAILED_PRECONDITION/LOCATION_REQUIRED");
        let limited = refusal(
            Code::ResourceExhausted,
            "RATE_LIMITED",
            &[("limit", "updates")],
        );
        assert_eq!(label(&limited), "RESOURCE_EXHAUSTED/RATE_LIMITED/updates");
    }
}
