//! `vicinity.v1.Shake`.

use tonic::{Request, Response, Status};

use crate::telemetry::metrics;

use super::{
    GrpcApi, Scope, convert,
    deadline::{self, within},
    pb,
    status::invalid,
};

#[tonic::async_trait]
impl pb::shake_server::Shake for GrpcApi {
    async fn shake(
        &self,
        request: Request<pb::ShakeRequest>,
    ) -> Result<Response<pb::ShakeResponse>, Status> {
        let caller = self.admit(request.metadata(), &[Scope::App])?;
        let deadline = deadline::of(request.metadata());
        let pb::ShakeRequest { user_id, location } = request.into_inner();
        let user = convert::user(&user_id, "user_id").map_err(invalid)?;
        let location = convert::location(location).map_err(invalid)?;
        let shake = self.svc.shake(&caller, &user, location, deadline);
        let matched = within(deadline, shake).await?;
        let (result, outcome) = match matched {
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
        self.admit(request.metadata(), &[Scope::App])?;
        let deadline = deadline::of(request.metadata());
        let pb::ShakeHistoryRequest { user_id } = request.into_inner();
        let user = convert::user(&user_id, "user_id").map_err(invalid)?;
        let matches = within(deadline, self.svc.shake_history(&user)).await?;
        Ok(Response::new(pb::ShakeHistoryResponse {
            matches: matches.iter().map(convert::shake_match).collect(),
        }))
    }

    async fn leave_shake(
        &self,
        request: Request<pb::LeaveShakeRequest>,
    ) -> Result<Response<pb::LeaveShakeResponse>, Status> {
        self.admit(request.metadata(), &[Scope::App])?;
        let deadline = deadline::of(request.metadata());
        let pb::LeaveShakeRequest { user_id } = request.into_inner();
        let user = convert::user(&user_id, "user_id").map_err(invalid)?;
        let purge_at = within(deadline, self.svc.leave_shake(&user)).await?;
        Ok(Response::new(pb::LeaveShakeResponse {
            purge_at: purge_at.map(convert::timestamp),
        }))
    }
}
