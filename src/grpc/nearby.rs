//! `vicinity.v1.PeopleNearby`.

use tonic::{Request, Response, Status};

use super::{
    GrpcApi, Scope, convert,
    deadline::{self, within},
    pb,
    status::invalid,
};
use crate::{domain::nearby, service::ListNearby};

#[tonic::async_trait]
impl pb::people_nearby_server::PeopleNearby for GrpcApi {
    async fn update_location(
        &self,
        request: Request<pb::UpdateLocationRequest>,
    ) -> Result<Response<pb::UpdateLocationResponse>, Status> {
        self.admit(request.metadata(), &[Scope::App])?;
        let deadline = deadline::of(request.metadata());
        let pb::UpdateLocationRequest {
            user_id,
            location,
            gender,
        } = request.into_inner();
        let user = convert::user(&user_id, "user_id").map_err(invalid)?;
        let location = convert::location(location).map_err(invalid)?;
        let gender = convert::gender(gender).map_err(invalid)?;
        let deadlines = within(deadline, self.svc.update_location(&user, location, gender)).await?;
        Ok(Response::new(pb::UpdateLocationResponse {
            visible_until: Some(convert::timestamp(deadlines.visible_until)),
            purge_at: Some(convert::timestamp(deadlines.purge_at)),
        }))
    }

    async fn list_nearby(
        &self,
        request: Request<pb::ListNearbyRequest>,
    ) -> Result<Response<pb::ListNearbyResponse>, Status> {
        self.admit(request.metadata(), &[Scope::App])?;
        let deadline = deadline::of(request.metadata());
        let pb::ListNearbyRequest {
            user_id,
            limit,
            max_distance_m,
            gender_filter,
            page_token,
            exclude_user_ids,
        } = request.into_inner();
        let list = ListNearby {
            viewer: convert::user(&user_id, "user_id").map_err(invalid)?,
            limit: nearby::parse_limit(limit),
            max_distance_m: nearby::parse_max_distance(max_distance_m).map_err(invalid)?,
            gender_filter: convert::gender_filter(gender_filter).map_err(invalid)?,
            exclude: nearby::parse_excluded(&exclude_user_ids).map_err(invalid)?,
            page_token: Some(page_token).filter(|t| !t.is_empty()),
        };
        let page = within(deadline, self.svc.list_nearby(&list)).await?;
        Ok(Response::new(pb::ListNearbyResponse {
            users: page.users.iter().map(convert::nearby_user).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn leave_nearby(
        &self,
        request: Request<pb::LeaveNearbyRequest>,
    ) -> Result<Response<pb::LeaveNearbyResponse>, Status> {
        self.admit(request.metadata(), &[Scope::App])?;
        let deadline = deadline::of(request.metadata());
        let pb::LeaveNearbyRequest { user_id } = request.into_inner();
        let user = convert::user(&user_id, "user_id").map_err(invalid)?;
        let left = within(deadline, self.svc.leave_nearby(&user)).await?;
        Ok(Response::new(pb::LeaveNearbyResponse {
            purge_at: left.map(|d| convert::timestamp(d.purge_at)),
        }))
    }
}
