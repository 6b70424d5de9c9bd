//! `vicinity.v1.ConsentService`.

use tonic::{Request, Response, Status};

use super::{
    GrpcApi, Scope, convert,
    deadline::{self, within},
    pb,
    status::invalid,
};
use crate::domain::{NoticeVersion, Source};

#[tonic::async_trait]
impl pb::consent_service_server::ConsentService for GrpcApi {
    async fn grant_consent(
        &self,
        request: Request<pb::GrantConsentRequest>,
    ) -> Result<Response<pb::ConsentRecord>, Status> {
        self.admit(request.metadata(), &[Scope::App])?;
        let deadline = deadline::of(request.metadata());
        let pb::GrantConsentRequest {
            user_id,
            feature,
            notice_version,
            source,
        } = request.into_inner();
        let user = convert::user(&user_id, "user_id").map_err(invalid)?;
        let feature = convert::feature(feature).map_err(invalid)?;
        let notice = NoticeVersion::parse(&notice_version).map_err(invalid)?;
        let source = Source::parse(&source).map_err(invalid)?;
        let record = within(
            deadline,
            self.svc.grant_consent(&user, feature, &notice, &source),
        )
        .await?;
        Ok(Response::new(convert::consent_record(&record)))
    }

    async fn withdraw_consent(
        &self,
        request: Request<pb::WithdrawConsentRequest>,
    ) -> Result<Response<pb::WithdrawConsentResponse>, Status> {
        self.admit(request.metadata(), &[Scope::App])?;
        let deadline = deadline::of(request.metadata());
        let pb::WithdrawConsentRequest { user_id, feature } = request.into_inner();
        let user = convert::user(&user_id, "user_id").map_err(invalid)?;
        let feature = convert::feature(feature).map_err(invalid)?;
        let (record, purged) = within(deadline, self.svc.withdraw_consent(&user, feature)).await?;
        Ok(Response::new(pb::WithdrawConsentResponse {
            record: Some(convert::consent_record(&record)),
            purged_entries: purged,
        }))
    }

    async fn get_consent(
        &self,
        request: Request<pb::GetConsentRequest>,
    ) -> Result<Response<pb::GetConsentResponse>, Status> {
        self.admit(request.metadata(), &[Scope::App, Scope::Ops])?;
        let deadline = deadline::of(request.metadata());
        let pb::GetConsentRequest { user_id } = request.into_inner();
        let user = convert::user(&user_id, "user_id").map_err(invalid)?;
        let (current, history) = within(deadline, self.svc.get_consent(&user)).await?;
        Ok(Response::new(pb::GetConsentResponse {
            current: current.iter().map(convert::consent_record).collect(),
            history: history.iter().map(convert::consent_record).collect(),
        }))
    }
}
