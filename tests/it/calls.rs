//! The API as the tests speak it: one method per behaviour, over the real tonic client.
//! Every position sent through here is remembered for the leak check first.

use tonic::{Response, Status};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use vicinity::grpc::pb::{self, Feature, Gender};

use crate::{capture, helpers::TestApp, places::Point};

/// A call's answer or its refusal.
pub type Reply<T> = Result<T, Status>;

/// The privacy notice version the tests grant under.
pub const NOTICE: &str = "2026-01";
/// The accuracy the tests report, in metres.
pub const ACCURACY_M: f32 = 7.5;

/// A Location message for `at`, remembered for the leak check.
pub fn location(at: Point) -> pb::Location {
    capture::remember(at.lat, at.lng);
    pb::Location {
        latitude: at.lat,
        longitude: at.lng,
        accuracy_m: ACCURACY_M,
    }
}

/// A ListNearby request with every option at its default.
pub fn list_request(viewer: &str) -> pb::ListNearbyRequest {
    pb::ListNearbyRequest {
        user_id: viewer.to_owned(),
        ..Default::default()
    }
}

impl TestApp {
    /// GrantConsent under [`NOTICE`].
    pub async fn grant(&self, user: &str, feature: Feature) -> Reply<pb::ConsentRecord> {
        let request = pb::GrantConsentRequest {
            user_id: user.to_owned(),
            feature: feature.into(),
            notice_version: NOTICE.to_owned(),
            source: "it/1.0".to_owned(),
        };
        let reply = self.client.consent().grant_consent(request).await;
        reply.map(Response::into_inner)
    }

    /// WithdrawConsent.
    pub async fn withdraw(
        &self,
        user: &str,
        feature: Feature,
    ) -> Reply<pb::WithdrawConsentResponse> {
        let request = pb::WithdrawConsentRequest {
            user_id: user.to_owned(),
            feature: feature.into(),
        };
        let reply = self.client.consent().withdraw_consent(request).await;
        reply.map(Response::into_inner)
    }

    /// GetConsent.
    pub async fn consent(&self, user: &str) -> Reply<pb::GetConsentResponse> {
        let request = pb::GetConsentRequest {
            user_id: user.to_owned(),
        };
        let reply = self.client.consent().get_consent(request).await;
        reply.map(Response::into_inner)
    }

    /// UpdateLocation at `at`.
    pub async fn update(
        &self,
        user: &str,
        at: Point,
        gender: Gender,
    ) -> Reply<pb::UpdateLocationResponse> {
        let request = pb::UpdateLocationRequest {
            user_id: user.to_owned(),
            location: Some(location(at)),
            gender: gender.into(),
        };
        self.update_location(request).await
    }

    /// UpdateLocation as given (the caller remembers what it sends).
    pub async fn update_location(
        &self,
        request: pb::UpdateLocationRequest,
    ) -> Reply<pb::UpdateLocationResponse> {
        let reply = self.client.nearby().update_location(request).await;
        reply.map(Response::into_inner)
    }

    /// Grants People Nearby consent and enters the feature at `at`; panics on a refusal.
    pub async fn join(&self, user: &str, at: Point, gender: Gender) {
        self.grant(user, Feature::PeopleNearby)
            .await
            .unwrap_or_else(|e| panic!("grant for {user}: {e:?}"));
        self.update(user, at, gender)
            .await
            .unwrap_or_else(|e| panic!("update for {user}: {e:?}"));
    }

    /// ListNearby with every option at its default.
    pub async fn list(&self, viewer: &str) -> Reply<pb::ListNearbyResponse> {
        self.list_with(list_request(viewer)).await
    }

    /// ListNearby as given.
    pub async fn list_with(&self, request: pb::ListNearbyRequest) -> Reply<pb::ListNearbyResponse> {
        let reply = self.client.nearby().list_nearby(request).await;
        reply.map(Response::into_inner)
    }

    /// The ids `viewer` sees on the first page, in order; panics on a refusal.
    pub async fn listed(&self, viewer: &str) -> Vec<String> {
        let page = self
            .list(viewer)
            .await
            .unwrap_or_else(|e| panic!("list for {viewer}: {e:?}"));
        page.users.into_iter().map(|u| u.user_id).collect()
    }

    /// LeaveNearby.
    pub async fn leave(&self, user: &str) -> Reply<pb::LeaveNearbyResponse> {
        let request = pb::LeaveNearbyRequest {
            user_id: user.to_owned(),
        };
        let reply = self.client.nearby().leave_nearby(request).await;
        reply.map(Response::into_inner)
    }

    /// ClearLocation for `feature` (UNSPECIFIED: every feature).
    pub async fn clear(&self, user: &str, feature: Feature) -> Reply<pb::ClearLocationResponse> {
        let request = pb::ClearLocationRequest {
            user_id: user.to_owned(),
            feature: feature.into(),
        };
        let reply = self.client.privacy().clear_location(request).await;
        reply.map(Response::into_inner)
    }

    /// ExportMyData.
    pub async fn export(&self, user: &str) -> Reply<pb::ExportMyDataResponse> {
        let request = pb::ExportMyDataRequest {
            user_id: user.to_owned(),
        };
        let reply = self.client.privacy().export_my_data(request).await;
        reply.map(Response::into_inner)
    }

    /// ForgetUser.
    pub async fn forget(&self, user: &str) -> Reply<pb::ForgetUserResponse> {
        let request = pb::ForgetUserRequest {
            user_id: user.to_owned(),
        };
        let reply = self.client.privacy().forget_user(request).await;
        reply.map(Response::into_inner)
    }

    /// The grpc.health.v1 status of `service` ("" for the whole server).
    pub async fn health(&self, service: &str) -> Reply<ServingStatus> {
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        let reply = self.client.health().check(request).await?.into_inner();
        Ok(ServingStatus::try_from(reply.status).unwrap_or(ServingStatus::Unknown))
    }

    /// Waits until `service` ("" for the whole server) reports SERVING; see [`await_serving`].
    pub async fn await_serving(&self, service: &str) -> Reply<()> {
        await_serving(&self.client, service).await
    }
}

/// Waits, on a health Watch (an event, not a poll), until `service` reports SERVING.
/// A server starts NOT_SERVING until its first store check; a test that asserted SERVING
/// at once would depend on that check having won the race. Gives up after [`AWAIT_SERVING`]
/// (a hung server, not a slow one) or when the stream ends.
pub async fn await_serving(client: &vicinity::client::Client, service: &str) -> Reply<()> {
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    let watch = async {
        let mut stream = client.health().watch(request).await?.into_inner();
        while let Some(reply) = stream.message().await? {
            if reply.status() == ServingStatus::Serving {
                return Ok(());
            }
        }
        Err(Status::unavailable("the health watch ended before SERVING"))
    };
    tokio::time::timeout(AWAIT_SERVING, watch)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("never SERVING")))
}

/// How long [`await_serving`] waits: far beyond any store check on a loaded machine.
pub const AWAIT_SERVING: std::time::Duration = std::time::Duration::from_secs(20);

/// Milliseconds since the epoch of a wire timestamp.
pub fn millis(at: Option<&prost_types::Timestamp>) -> i64 {
    let at = at.expect("a timestamp");
    at.seconds * 1_000 + i64::from(at.nanos) / 1_000_000
}
