//! `vicinity.v1.Shake`: declared in the contract, not built yet. Every call is authorized,
//! then answered `UNIMPLEMENTED` without storing anything.

use tonic::{Request, Response, Status};

use super::{GrpcApi, Scope, pb};

const NOT_YET: &str = "Shake is not available in this version";

#[tonic::async_trait]
impl pb::shake_server::Shake for GrpcApi {
    async fn shake(
        &self,
        request: Request<pb::ShakeRequest>,
    ) -> Result<Response<pb::ShakeResponse>, Status> {
        self.auth.authorize(request.metadata(), &[Scope::App])?;
        Err(Status::unimplemented(NOT_YET))
    }

    async fn shake_history(
        &self,
        request: Request<pb::ShakeHistoryRequest>,
    ) -> Result<Response<pb::ShakeHistoryResponse>, Status> {
        self.auth.authorize(request.metadata(), &[Scope::App])?;
        Err(Status::unimplemented(NOT_YET))
    }

    async fn leave_shake(
        &self,
        request: Request<pb::LeaveShakeRequest>,
    ) -> Result<Response<pb::LeaveShakeResponse>, Status> {
        self.auth.authorize(request.metadata(), &[Scope::App])?;
        Err(Status::unimplemented(NOT_YET))
    }
}
