//! People Nearby operations (contract §3 PeopleNearby, §4.3).

use std::{collections::HashSet, sync::Arc};

use tracing::instrument;

use h3o::CellIndex;

use super::{ServiceError, ServiceResult, Vicinity, limits::admitted};
use crate::{
    domain::{
        Deadlines, Feature, Gender, Location, Timestamp, UserId,
        nearby::{CellFilter, Hit, NearbyRequest, OrderContext, PageToken},
        user::GenderFilter,
    },
    places::Placement,
    storage::{
        Fence, LimitKey, Limited, LocationEntry, Position, StoreError, StoreErrorKind, UpdateLimits,
    },
};

/// How many times an update takes its fence and consent check after a clear of the same
/// user refused its write (each refusal changed nothing). The first fence may be one a single
/// Redis read before (`storage::redis::FENCE_REUSE`), refused for any clear of its shard since;
/// every later one is read afresh, three of them as before that store reused fences.
const FENCE_ATTEMPTS: usize = 4;

/// A validated ListNearby request.
#[derive(Debug, Clone)]
pub struct ListNearby {
    /// Who is looking.
    pub viewer: UserId,
    /// Page size, 1..=100.
    pub limit: usize,
    /// Radius in metres, 1..=50,000.
    pub max_distance_m: u32,
    /// Gender filter.
    pub gender_filter: GenderFilter,
    /// The caller's block list.
    pub exclude: HashSet<UserId>,
    /// The previous page's token, if any.
    pub page_token: Option<String>,
}

/// One page of People Nearby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearbyPage {
    /// Users with their bands, in order.
    pub users: Vec<Hit>,
    /// Present when another page follows.
    pub next_page_token: Option<String>,
}

impl ListNearby {
    /// The bytes a page token is bound to: the viewer and the filters that shape the order.
    fn token_binding(&self) -> Vec<u8> {
        let filter = match self.gender_filter {
            GenderFilter::Any => 0u8,
            GenderFilter::Female => 1,
            GenderFilter::Male => 2,
        };
        let mut binding = self.viewer.as_str().as_bytes().to_vec();
        binding.extend_from_slice(&self.max_distance_m.to_be_bytes());
        binding.push(filter);
        binding
    }
}

impl Vicinity {
    /// Stores the user's position (snapped) and renews their deadlines.
    ///
    /// The write is fenced (contract §4.1, docs/decisions.md "A write fenced by every clear since
    /// its consent check"): the user's clear mark is read first, then consent is checked,
    /// and the store writes only if no clear of the user ran since the mark was read. A
    /// withdrawal that lands after the consent check purges after that read, so this write
    /// either lands before the purge (which deletes it) or is refused by the store, without
    /// this node checking consent again (on a cluster, a node that dies mid-write can leave a
    /// member for its provisional hold: `storage::redis`). A fenced write changed nothing:
    /// the fence and the consent check are taken again, at most [`FENCE_ATTEMPTS`] times.
    /// The write runs in a task of its own, so a call cut off by its deadline or its client
    /// never leaves a write half done (on a cluster, a member without its record).
    ///
    /// The limits (contract §4.3) are part of the write: the user's update rate is counted and a
    /// move faster than the jump cap allows since the previous activity is refused, and a
    /// refusal counts and changes nothing (see [`Vicinity::write_limited`]). Two updates
    /// racing each other are each judged against the entry before both; the update rate
    /// bounds how far that lets a user get.
    #[instrument(skip_all)]
    pub async fn update_location(
        &self,
        user: &UserId,
        location: Location,
        gender: Gender,
    ) -> ServiceResult<Deadlines> {
        self.require_safe_location_store()?;
        let snapped = self.deps.grid.snap(location.coords);
        let placement = self.place(snapped);
        let cell = match placement {
            Placement::Exact(cell) | Placement::Coarse { cell, .. } => cell,
            // Not placed: nothing is written; the limits are counted and judged as for a
            // write, so a refusal does not tell a hidden place from another.
            Placement::Hidden(_) => {
                self.require_consent(user, Feature::PeopleNearby).await?;
                self.admit_update(user, (snapped, snapped)).await?;
                self.count_placed(placement);
                return Ok(self.deps.retention.deadlines(self.deps.clock.now()));
            }
        };
        let position = Position {
            user_id: user.clone(),
            feature: Feature::PeopleNearby,
            cell,
            gender,
        };
        for attempt in 0..FENCE_ATTEMPTS {
            let locations = &self.deps.locations;
            let fence = if attempt == 0 {
                locations.fence(user).await?
            } else {
                locations.fresh_fence(user).await?
            };
            self.require_consent_to_write(user, Feature::PeopleNearby, fence.seen)
                .await?;
            let (this, position) = (self.clone(), position.clone());
            // The jump cap judges the move to where the user really is (`snapped`): a
            // coarsened position is never more than the coarse parent's radius from it.
            let tasks = &self.deps.tasks;
            let write =
                tasks.spawn(async move { this.write_limited(position, snapped, fence).await });
            let written = write
                .await
                .map_err(|e| StoreError::unfinished(&e, "updating a location"))?;
            match written {
                Err(ServiceError::Store(e)) if e.kind == StoreErrorKind::Fenced => continue,
                Ok(deadlines) => {
                    self.count_placed(placement);
                    return Ok(deadlines);
                }
                refused => return refused,
            }
        }
        let raced = "updating a location while clears of the user kept racing it";
        Err(StoreError::new(StoreErrorKind::Unavailable, raced).into())
    }

    /// Writes `position` within its limits: in one store step where the store has one (a
    /// single Redis: one round trip), which hands back the previous entry only when it lies
    /// too far for the move to surely pass the jump cap; otherwise the entry is read, the jump
    /// judged, then the rate counted and the position written. A refusal counts nothing.
    async fn write_limited(
        &self,
        position: Position,
        snapped: CellIndex,
        fence: Fence,
    ) -> ServiceResult<Deadlines> {
        let policy = &self.deps.policy;
        let retention = self.deps.retention;
        // A move passes when the jump cap allows it to where the user is (`snapped`) or to
        // the cell stored for them (a coarsened parent's representative), on every path; the
        // fast path's surely allowed parents are those of the stored cell, so a user who stays
        // in a coarsened parent keeps the one-step write (docs/decisions.md, "Sensitive
        // places").
        let stored = position.cell;
        let to = (snapped, stored);
        let mut limits = UpdateLimits {
            rate: policy.updates,
            near: policy.jump.map(|_| {
                let epoch = OrderContext::epoch_at(self.deps.clock.now());
                self.surely_allowed.of(stored, epoch)
            }),
            starts: policy.jump.map(|_| policy.starts),
        };
        let locations = &self.deps.locations;
        for _ in 0..2 {
            let Some(outcome) = locations
                .upsert_limited(&position, retention, &limits, fence)
                .await?
            else {
                break;
            };
            match outcome {
                Limited::Written(deadlines) => return Ok(deadlines),
                Limited::Refused { limit, retry_after } => {
                    return Err(ServiceError::RateLimited { limit, retry_after });
                }
                Limited::Check { previous, now } => {
                    self.judge_jump(&previous, to, now)?;
                    limits.near = None;
                }
            }
        }
        self.admit_update(&position.user_id, to).await?;
        Ok(locations.upsert(position, retention, fence).await?)
    }

    /// The limits of an update in separate steps: the jump from the user's entry to `to`
    /// (where they are, where they are stored), then the update rate, then a fresh start.
    async fn admit_update(&self, user: &UserId, to: (CellIndex, CellIndex)) -> ServiceResult<()> {
        let policy = &self.deps.policy;
        let locations = &self.deps.locations;
        let mut fresh = false;
        if policy.jump.is_some() {
            let now = locations.now().await?;
            match locations.get(Feature::PeopleNearby, user).await? {
                Some(previous) => self.judge_jump(&previous, to, now)?,
                None => fresh = true,
            }
        }
        self.admit(LimitKey::Updates(user.clone()), policy.updates)
            .await?;
        if fresh {
            // Counted after the update rate admitted the call; a start refused here has used
            // one update (these steps are not one atomic step on this path).
            self.admit(LimitKey::Starts(user.clone()), policy.starts)
                .await?;
        }
        Ok(())
    }

    /// Refuses a move from `previous` at `now` that the jump cap allows neither to where the
    /// user is nor to where they are stored (`to`).
    fn judge_jump(
        &self,
        previous: &LocationEntry,
        (snapped, stored): (CellIndex, CellIndex),
        now: Timestamp,
    ) -> ServiceResult<()> {
        let Some(jump) = self.deps.policy.jump else {
            return Ok(());
        };
        let since = previous.deadlines.last_active;
        let from = previous.position.cell;
        if jump.allows(from, since, snapped, now) || jump.allows(from, since, stored, now) {
            Ok(())
        } else {
            Err(ServiceError::ImplausibleJump)
        }
    }

    /// Lists other users near the viewer: the viewer's list rate counted (each page counts),
    /// one round trip to the location store (the viewer's own entry and the search), then one to the consent store (the viewer and every listed
    /// user must hold GRANTED consent; the others are dropped).
    #[instrument(skip_all, fields(limit = list.limit))]
    pub async fn list_nearby(&self, list: &ListNearby) -> ServiceResult<NearbyPage> {
        // The list rate and the viewer's own entry in one round trip (one script on a single
        // Redis): the search starts from what it read.
        let lists = LimitKey::Lists(list.viewer.clone());
        let (admission, own) = self
            .deps
            .limits
            .admit_reading(
                &lists,
                self.deps.policy.lists,
                Feature::PeopleNearby,
                &list.viewer,
            )
            .await?;
        let now = admitted(admission, lists.limit())?;
        let binding = list.token_binding();
        let request = self.nearby_request(list, &binding)?;
        let pinned_epoch = request.page.as_ref().map(|t| t.epoch);
        let pinned_cell = request.page.as_ref().map(|t| t.viewer_cell);
        let Some(own) = own.filter(|e| !e.left) else {
            self.require_consent(&list.viewer, Feature::PeopleNearby)
                .await?;
            return Err(ServiceError::LocationRequired);
        };
        let own_cell = own.position.cell;
        // A token pins the cell its first page was listed around: once the viewer moved to
        // another, it would keep listing around where they were.
        if pinned_cell.is_some_and(|cell| cell != own_cell) {
            return Err(ServiceError::PageTokenExpired);
        }
        let result = self
            .deps
            .locations
            .nearby_at(&request, own_cell, now)
            .await?;
        // A token from before the previous epoch (by the store's clock) is refused: its
        // page would mix orders that no longer exist.
        if pinned_epoch.is_some_and(|epoch| epoch + 1 < result.current_epoch) {
            return Err(ServiceError::PageTokenExpired);
        }
        let next_page_token = match result.page.next {
            Some(cursor) => {
                let nonce = crate::random::bytes().map_err(StoreError::from)?;
                let token = PageToken {
                    epoch: result.epoch,
                    viewer_cell: result.viewer_cell,
                    cursor,
                };
                Some(token.encode(&self.deps.secret, &binding, nonce))
            }
            None => None,
        };
        let users = self.consented(&list.viewer, result.page.hits).await?;
        Ok(NearbyPage {
            users,
            next_page_token,
        })
    }

    /// The store's request for `list`, its page token checked against `binding`.
    fn nearby_request(&self, list: &ListNearby, binding: &[u8]) -> ServiceResult<NearbyRequest> {
        let page = match &list.page_token {
            Some(text) => Some(
                PageToken::decode(text, &self.deps.secret, binding)
                    .map_err(ServiceError::PageTokenInvalid)?,
            ),
            None => None,
        };
        Ok(NearbyRequest {
            viewer: list.viewer.clone(),
            max_distance_m: list.max_distance_m,
            limit: list.limit,
            gender_filter: list.gender_filter,
            exclude: list.exclude.clone(),
            secret: Arc::clone(&self.deps.secret),
            page,
            // Entries stored before the policy in force listed their place stay at their fine
            // cell until their next update: not listed meanwhile (docs/privacy.md).
            shown: self
                .deps
                .places
                .current()
                .map(|policy| CellFilter::new(move |cell| policy.stores_at(cell))),
        })
    }

    /// Keeps the hits whose users hold GRANTED consent, after checking the viewer's own.
    async fn consented(&self, viewer: &UserId, hits: Vec<Hit>) -> ServiceResult<Vec<Hit>> {
        let mut users = Vec::with_capacity(hits.len() + 1);
        users.push(viewer.clone());
        users.extend(hits.iter().map(|h| h.user_id.clone()));
        let granted = self
            .deps
            .consents
            .granted_to_show(Feature::PeopleNearby, &users)
            .await?;
        if !granted.first().copied().unwrap_or(false) {
            return Err(ServiceError::ConsentRequired(Feature::PeopleNearby));
        }
        Ok(hits
            .into_iter()
            .zip(granted.into_iter().skip(1))
            .filter_map(|(hit, ok)| ok.then_some(hit))
            .collect())
    }

    /// Leaves People Nearby: the entry stays until its new `purge_at` at the latest. `None`
    /// when the user was not in the feature. Renewing the deadlines uses the location, so it
    /// needs consent (contract §4.1); the store's leave creates nothing, so a withdrawal or Clear
    /// that lands after this check is never undone by it.
    #[instrument(skip_all)]
    pub async fn leave_nearby(&self, user: &UserId) -> ServiceResult<Option<Deadlines>> {
        self.require_consent(user, Feature::PeopleNearby).await?;
        // Detached, like an update: a cluster's two steps are never cut apart by the caller.
        let (locations, user, retention) = (
            self.deps.locations.clone(),
            user.clone(),
            self.deps.retention,
        );
        let leave = self.deps.tasks.spawn(async move {
            locations
                .leave(Feature::PeopleNearby, &user, retention)
                .await
        });
        let left = leave
            .await
            .map_err(|e| StoreError::unfinished(&e, "leaving"))??;
        Ok(left)
    }
}
