//! `vicinity.v1.PrivacyService`.

use tonic::{Request, Response, Status};

use super::{
    GrpcApi, Scope, convert,
    deadline::{self, within},
    pb,
    status::invalid,
};

#[tonic::async_trait]
impl pb::privacy_service_server::PrivacyService for GrpcApi {
    async fn clear_location(
        &self,
        request: Request<pb::ClearLocationRequest>,
    ) -> Result<Response<pb::ClearLocationResponse>, Status> {
        self.admit(request.metadata(), &[Scope::App, Scope::Ops])?;
        let deadline = deadline::of(request.metadata());
        let pb::ClearLocationRequest { user_id, feature } = request.into_inner();
        let user = convert::user(&user_id, "user_id").map_err(invalid)?;
        let feature = convert::optional_feature(feature).map_err(invalid)?;
        let purged = within(deadline, self.svc.clear_location(&user, feature)).await?;
        Ok(Response::new(pb::ClearLocationResponse {
            purged_entries: purged,
        }))
    }

    async fn export_my_data(
        &self,
        request: Request<pb::ExportMyDataRequest>,
    ) -> Result<Response<pb::ExportMyDataResponse>, Status> {
        self.admit(request.metadata(), &[Scope::App, Scope::Ops])?;
        let deadline = deadline::of(request.metadata());
        let pb::ExportMyDataRequest { user_id } = request.into_inner();
        let user = convert::user(&user_id, "user_id").map_err(invalid)?;
        let export = within(deadline, self.svc.export(&user)).await?;
        Ok(Response::new(pb::ExportMyDataResponse {
            user_id: user.to_string(),
            consents: export
                .consents
                .iter()
                .map(convert::consent_record)
                .collect(),
            consent_history: export
                .consent_history
                .iter()
                .map(convert::consent_record)
                .collect(),
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
        self.admit(request.metadata(), &[Scope::Ops])?;
        let deadline = deadline::of(request.metadata());
        let pb::ForgetUserRequest { user_id } = request.into_inner();
        let user = convert::user(&user_id, "user_id").map_err(invalid)?;
        let (purged, events) = within(deadline, self.svc.forget(&user)).await?;
        Ok(Response::new(pb::ForgetUserResponse {
            purged_entries: purged,
            consent_events_deleted: events,
        }))
    }
}
