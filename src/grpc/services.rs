//! The handlers of the four `vicinity.v1` services: each admits the call, converts its
//! message, runs the service within the call's time and converts the answer back.

use tonic::{Request, Response, Status};

use super::{GrpcApi, Scope, convert, pb, status::invalid};
use crate::{
    domain::{NoticeVersion, Source, nearby},
    service::ListNearby,
    telemetry::metrics,
};

#[tonic::async_trait]
impl pb::people_nearby_server::PeopleNearby for GrpcApi {
    async fn update_location(
        &self,
        request: Request<pb::UpdateLocationRequest>,
    ) -> Result<Response<pb::UpdateLocationResponse>, Status> {
        let (call, message) = self.accept(request, &[Scope::App])?;
        let user = convert::user_id(&message.user_id)?;
        let location = convert::location(message.location).map_err(invalid)?;
        let gender = convert::gender(message.gender).map_err(invalid)?;
        let deadlines = call
            .run(self.svc.update_location(&user, location, gender))
            .await?;
        Ok(Response::new(pb::UpdateLocationResponse {
            visible_until: Some(convert::timestamp(deadlines.visible_until)),
            purge_at: Some(convert::timestamp(deadlines.purge_at)),
        }))
    }

    async fn list_nearby(
        &self,
        request: Request<pb::ListNearbyRequest>,
    ) -> Result<Response<pb::ListNearbyResponse>, Status> {
        let (call, message) = self.accept(request, &[Scope::App])?;
        let list = ListNearby {
            viewer: convert::user_id(&message.user_id)?,
            limit: nearby::parse_limit(message.limit),
            max_distance_m: nearby::parse_max_distance(message.max_distance_m).map_err(invalid)?,
            gender_filter: convert::gender_filter(message.gender_filter).map_err(invalid)?,
            exclude: nearby::parse_excluded(&message.exclude_user_ids).map_err(invalid)?,
            page_token: Some(message.page_token).filter(|t| !t.is_empty()),
        };
        let page = call.run(self.svc.list_nearby(&list)).await?;
        Ok(Response::new(pb::ListNearbyResponse {
            users: page.users.iter().map(convert::nearby_user).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn leave_nearby(
        &self,
        request: Request<pb::LeaveNearbyRequest>,
    ) -> Result<Response<pb::LeaveNearbyResponse>, Status> {
        let (call, message) = self.accept(request, &[Scope::App])?;
        let user = convert::user_id(&message.user_id)?;
        let left = call.run(self.svc.leave_nearby(&user)).await?;
        Ok(Response::new(pb::LeaveNearbyResponse {
            purge_at: left.map(|d| convert::timestamp(d.purge_at)),
        }))
    }
}

#[tonic::async_trait]
impl pb::shake_server::Shake for GrpcApi {
    async fn shake(
        &self,
        request: Request<pb::ShakeRequest>,
    ) -> Result<Response<pb::ShakeResponse>, Status> {
        let (call, message) = self.accept(request, &[Scope::App])?;
        let user = convert::user_id(&message.user_id)?;
        let location = convert::location(message.location).map_err(invalid)?;
        let shake = self.svc.shake(&call.caller, &user, location, call.time);
        let (result, outcome) = match call.run(shake).await? {
            Some(m) => (
                pb::shake_response::Result::Match(convert::shake_match(&m)),
                "matched",
            ),
            None => (
                pb::shake_response::Result::NoMatch(pb::NoMatch {}),
                "no_match",
            ),
        };
        metrics::get()
            .shake_outcomes
            .with_label_values(&[outcome])
            .inc();
        Ok(Response::new(pb::ShakeResponse {
            result: Some(result),
        }))
    }

    async fn shake_history(
        &self,
        request: Request<pb::ShakeHistoryRequest>,
    ) -> Result<Response<pb::ShakeHistoryResponse>, Status> {
        let (call, message) = self.accept(request, &[Scope::App])?;
        let user = convert::user_id(&message.user_id)?;
        let matches = call.run(self.svc.shake_history(&user)).await?;
        let matches = matches.iter().map(convert::shake_match).collect();
        Ok(Response::new(pb::ShakeHistoryResponse { matches }))
    }

    async fn leave_shake(
        &self,
        request: Request<pb::LeaveShakeRequest>,
    ) -> Result<Response<pb::LeaveShakeResponse>, Status> {
        let (call, message) = self.accept(request, &[Scope::App])?;
        let user = convert::user_id(&message.user_id)?;
        let purge_at = call.run(self.svc.leave_shake(&user)).await?;
        let purge_at = purge_at.map(convert::timestamp);
        Ok(Response::new(pb::LeaveShakeResponse { purge_at }))
    }
}

#[tonic::async_trait]
impl pb::consent_service_server::ConsentService for GrpcApi {
    async fn grant_consent(
        &self,
        request: Request<pb::GrantConsentRequest>,
    ) -> Result<Response<pb::ConsentRecord>, Status> {
        let (call, message) = self.accept(request, &[Scope::App])?;
        let user = convert::user_id(&message.user_id)?;
        let feature = convert::feature(message.feature).map_err(invalid)?;
        let notice = NoticeVersion::parse(&message.notice_version).map_err(invalid)?;
        let source = Source::parse(&message.source).map_err(invalid)?;
        let grant = self.svc.grant_consent(&user, feature, &notice, &source);
        let record = call.run(grant).await?;
        Ok(Response::new(convert::consent_record(&record)))
    }

    async fn withdraw_consent(
        &self,
        request: Request<pb::WithdrawConsentRequest>,
    ) -> Result<Response<pb::WithdrawConsentResponse>, Status> {
        let (call, message) = self.accept(request, &[Scope::App])?;
        let user = convert::user_id(&message.user_id)?;
        let feature = convert::feature(message.feature).map_err(invalid)?;
        let (record, purged) = call.run(self.svc.withdraw_consent(&user, feature)).await?;
        Ok(Response::new(pb::WithdrawConsentResponse {
            record: Some(convert::consent_record(&record)),
            purged_entries: purged,
        }))
    }

    async fn get_consent(
        &self,
        request: Request<pb::GetConsentRequest>,
    ) -> Result<Response<pb::GetConsentResponse>, Status> {
        let (call, message) = self.accept(request, &[Scope::App, Scope::Ops])?;
        let user = convert::user_id(&message.user_id)?;
        let (current, history) = call.run(self.svc.get_consent(&user)).await?;
        Ok(Response::new(pb::GetConsentResponse {
            current: convert::consent_records(&current),
            history: convert::consent_records(&history),
        }))
    }
}

#[tonic::async_trait]
impl pb::privacy_service_server::PrivacyService for GrpcApi {
    async fn clear_location(
        &self,
        request: Request<pb::ClearLocationRequest>,
    ) -> Result<Response<pb::ClearLocationResponse>, Status> {
        let (call, message) = self.accept(request, &[Scope::App, Scope::Ops])?;
        let user = convert::user_id(&message.user_id)?;
        let feature = convert::optional_feature(message.feature).map_err(invalid)?;
        let purged_entries = call.run(self.svc.clear_location(&user, feature)).await?;
        Ok(Response::new(pb::ClearLocationResponse { purged_entries }))
    }

    async fn export_my_data(
        &self,
        request: Request<pb::ExportMyDataRequest>,
    ) -> Result<Response<pb::ExportMyDataResponse>, Status> {
        let (call, message) = self.accept(request, &[Scope::App, Scope::Ops])?;
        let user = convert::user_id(&message.user_id)?;
        let export = call.run(self.svc.export(&user)).await?;
        Ok(Response::new(pb::ExportMyDataResponse {
            user_id: user.to_string(),
            consents: convert::consent_records(&export.consents),
            consent_history: convert::consent_records(&export.consent_history),
            locations: export
                .locations
                .iter()
                .map(convert::stored_location)
                .collect(),
            shake_history: export
                .shake_history
                .iter()
                .map(convert::shake_match)
                .collect(),
        }))
    }

    async fn forget_user(
        &self,
        request: Request<pb::ForgetUserRequest>,
    ) -> Result<Response<pb::ForgetUserResponse>, Status> {
        let (call, message) = self.accept(request, &[Scope::Ops])?;
        let user = convert::user_id(&message.user_id)?;
        let (purged_entries, consent_events_deleted) = call.run(self.svc.forget(&user)).await?;
        Ok(Response::new(pb::ForgetUserResponse {
            purged_entries,
            consent_events_deleted,
        }))
    }
}
